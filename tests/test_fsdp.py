"""trainer.strategy fsdp: what is sharded, the refusal on the CPU, and the final evaluation's
reload of the full checkpoint (the run itself needs GPUs: scripts/gpu_check.py)."""
import torch
from timm.models.vision_transformer import Block

from support import TINY, tiny_built_cfg, tiny_method_cfg
from selfsup.cli import main
from selfsup.engine.module import PretrainModule
from selfsup.engine.train import fsdp_strategy, reloaded


def test_fsdp_shards_each_backbone_region_and_keeps_full_checkpoints():
    for method, unit in [("mae", Block), ("byol", torch.nn.Sequential)]:
        module = PretrainModule(tiny_built_cfg(method))
        strategy = fsdp_strategy(module)
        assert strategy.kwargs["auto_wrap_policy"]._module_classes == {unit}
        assert strategy._state_dict_type == "full" and strategy.kwargs["use_orig_params"]


def test_fsdp_on_the_cpu_is_refused_before_the_run_directory_is_made(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["pretrain", "--method", "simclr", "--out", str(out), "--accelerator", "cpu",
                 "--set", "trainer.strategy=fsdp", *TINY]) == 2
    assert "trainer.strategy fsdp needs GPUs" in capsys.readouterr().err
    assert not out.exists()


def test_the_final_evaluation_can_reload_the_full_checkpoint(tmp_path):
    from selfsup.engine.train import pretrain

    cfg = tiny_method_cfg("byol", epochs=1)
    cfg["online_probe"]["enabled"] = True
    pretrain(cfg, tmp_path / "run")
    checkpoint = tmp_path / "run" / "checkpoints" / "last.ckpt"
    saved = torch.load(checkpoint, weights_only=True)["state_dict"]
    module = PretrainModule(dict(torch.load(checkpoint, weights_only=True)["hyper_parameters"]["cfg"]))
    fresh = reloaded(module, checkpoint)
    assert fresh is not module and fresh.state_dict().keys() == saved.keys()
    assert all(torch.equal(value, saved[key]) for key, value in fresh.state_dict().items())

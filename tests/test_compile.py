"""trainer.compile: which networks are compiled, and a compiled run trains as the eager one does."""
import pytest
import torch

from support import TINY_VIT, tiny, tiny_method_cfg
from selfsup.engine.module import compile_networks
from selfsup.engine.train import pretrain


def compiled(module: torch.nn.Module) -> bool:
    return getattr(module, "_compiled_call_impl", None) is not None


def test_compile_networks_compiles_backbone_regions_and_heads_in_place():
    method = tiny("byol")
    keys = list(method.state_dict())
    # 4 stages of each of the two backbones, projector, predictor, target projector; two graphs each may be cached
    assert compile_networks(method) == 11 and torch._dynamo.config.recompile_limit >= 22
    assert list(method.state_dict()) == keys  # checkpoints unchanged
    for backbone in (method.backbone, method.target_backbone):
        assert all(compiled(stage) for stage in (backbone.layer1, backbone.layer2, backbone.layer3, backbone.layer4))
        assert not compiled(backbone)
    assert compiled(method.projector) and compiled(method.predictor)
    vit = tiny("mae")
    compile_networks(vit)
    assert all(compiled(block) for block in vit.backbone.vit.blocks)


@pytest.mark.slow
def test_a_compiled_run_trains_as_the_eager_run(tmp_path):
    def run(name, compile_):
        cfg = tiny_method_cfg("simclr", epochs=1)
        cfg["backbone"].update(TINY_VIT)
        cfg["trainer"]["compile"] = compile_
        return pretrain(cfg, tmp_path / name)
    from torch._dynamo.utils import counters

    eager = run("eager", False)
    counters.clear()
    fast = run("compiled", True)
    assert counters["stats"]["unique_graphs"] > 0  # Dynamo captured graphs: compiled code ran
    assert fast["final_loss"] == pytest.approx(eager["final_loss"], rel=1e-3)

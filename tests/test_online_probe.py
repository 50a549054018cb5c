"""The online linear probe (``online_probe``): it learns, it never changes what the method
trains, it is evaluated per epoch and at the end, and unlabelled data refuses it."""

import pytest
import torch
from PIL import Image

from support import TINY, tiny_built_cfg, tiny_method_cfg
from selfsup.cli import main
from selfsup.config import resolve
from selfsup.engine.train import pretrain
from selfsup.report import write_report


EPOCHS = 6  # 48 steps: the probe follows a network that changes fast (0.59 at the end; 0.36 after 24 steps)


def probe_cfg(enabled: bool, **probe):
    assignments = [TINY[i + 1] for i, arg in enumerate(TINY) if arg == "--set"]
    return resolve("simclr", flags={"dataset": "synthetic", "epochs": EPOCHS, "batch_size": 64, "backbone": {"width": 8}},
                   assignments=assignments + [f"online_probe.enabled={str(enabled).lower()}"]
                   + [f"online_probe.{k}={v}" for k, v in probe.items()])


def test_online_probe_learns_and_leaves_the_method_untouched(tmp_path):
    probed = pretrain(probe_cfg(True, lr=0.01), tmp_path / "probed")  # 48 Adam steps: 10x the default rate
    plain = pretrain(probe_cfg(False), tmp_path / "plain")
    # 6 balanced classes: chance is 1/6
    assert probed["online_linear_top1"] > 1 / 6 + 0.25
    curve = [h["online_top1"] for h in probed["knn_history"]]
    assert [h["epoch"] for h in probed["knn_history"]] == list(range(1, EPOCHS + 1))
    assert curve[-1] > curve[0] + 0.2  # it learned during the run (measured: 0.19 -> 0.59)
    assert "online_linear_top1" not in plain and "online_top1" not in plain["knn_history"][0]
    # detached features of the clean batch in eval mode: the method trains exactly as without the probe
    weights = [torch.load(tmp_path / name / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
               for name in ("probed", "plain")]
    assert {"online_probe.1.weight", "online_probe.1.bias"} < set(weights[0])
    method = {k: v for k, v in weights[0].items() if not k.startswith("online_probe.")}
    assert method.keys() == weights[1].keys()
    for key, value in method.items():
        assert torch.equal(value, weights[1][key]), key
    assert probed["knn_history"][-1]["knn_top1"] == plain["knn_history"][-1]["knn_top1"]
    log = next((tmp_path / "probed" / "logs" / "csv").glob("version_*/metrics.csv")).read_text()
    assert "online/train_top1" in log and "online_top1" in log
    report = tmp_path / "report"
    write_report([tmp_path / "probed"], report)
    assert "online linear top-1" in (report / "report.md").read_text()


def test_online_probe_rate_is_fixed_and_follows_the_optimiser(tmp_path):
    from selfsup.engine.module import PretrainModule
    cfg = tiny_built_cfg("simclr")
    cfg["online_probe"]["enabled"] = True

    class Trainer:
        world_size, estimated_stepping_batches = 1, 24

    for optimizer, rate, expected in [("adam", None, 1e-3), ("lars", None, 0.1), ("sgd", 0.05, 0.05)]:
        cfg["optimizer"]["name"], cfg["online_probe"]["lr"] = optimizer, rate
        module = PretrainModule(cfg)
        module.trainer = Trainer()
        configured = module.configure_optimizers()
        group = configured["optimizer"].param_groups[-1]
        assert group["params"] == list(module.online_probe.parameters())  # the linear layer's two
        assert group["lr"] == pytest.approx(expected) and group["weight_decay"] == 0.0
        schedule = configured["lr_scheduler"]["scheduler"]
        for _ in range(5):
            schedule.step()
        assert group["lr"] == pytest.approx(expected)  # no warm-up, no decay


def test_online_probe_on_unlabelled_images_is_refused(tmp_path, capsys):
    for i in range(8):
        Image.new("RGB", (20, 20), (30 * i, 10, 200 - 20 * i)).save(tmp_path / f"{i}.png")
    out = tmp_path / "run"
    code = main(["pretrain", "--method", "simclr", "--dataset", "imagefolder", "--data-dir", str(tmp_path), "--epochs", "1",
                 "--batch-size", "4", "--width", "8", "--out", str(out), "--online-probe",
                 "--set", "trainer.progress_bar=false"])
    assert code == 2
    assert "online_probe.enabled needs class labels" in capsys.readouterr().err
    assert not (out / "checkpoints").exists()


def test_online_probe_refuses_batches_of_another_structure(tmp_path, monkeypatch):
    import toy_methods
    from selfsup.errors import SelfSupError

    toy_methods.register(monkeypatch.setitem)
    cfg = tiny_method_cfg("toy-semisup", epochs=1)
    cfg["online_probe"]["enabled"] = True
    with pytest.raises(SelfSupError, match="the online probe needs batches of inputs and labels"):
        pretrain(cfg, tmp_path / "run")

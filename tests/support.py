"""Helpers the test modules share (no test module imports another): the tiny run's options,
tiny methods built without the engine, the crash-and-resume harness, and runs restated as made in
another precision."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from selfsup.build import build_method
from selfsup.config import expand_hosted, resolve
from selfsup.engine.train import pretrain
from selfsup.methods import METHODS
from selfsup.models.backbones import STACKED_SERIES_BACKBONES
from selfsup.models.vit import VIT_BACKBONES

# Options for a seconds-long run on the synthetic dataset, with the methods' paper settings (the
# tests were calibrated on them; the short recipe's are tested in test_config and test_speedrun).
TINY = ["--dataset", "synthetic", "--batch-size", "64", "--width", "8", "--set", "trainer.progress_bar=false",
        "--set", "recipe=paper",
        "--set", "optimizer.name=adam", "--set", "optimizer.lr=0.008", "--set", "optimizer.lr_scaling=none",
        "--set", "schedule.warmup_epochs=0",
        "--set", "knn.k=20"]
# The tiny run's network for methods whose own is a vision transformer.
TINY_VIT = {"name": "vit", "width": 16, "depth": 2, "heads": 2}


def series_only(method: str) -> bool:
    return "image" not in METHODS[method].modalities


def tiny_method_cfg(method: str, epochs: int = 2) -> dict:
    """``method``'s resolved config for a tiny run (TINY's settings, no kNN monitor; series-only
    methods on the synthetic series, with a 3-block dilated encoder where theirs is one)."""
    assignments = [TINY[i + 1] for i, arg in enumerate(TINY) if arg == "--set"]
    cfg = resolve(method)
    backbone = TINY_VIT if cfg["backbone"]["name"] in VIT_BACKBONES else {"width": 8}
    if cfg["backbone"]["name"] in STACKED_SERIES_BACKBONES:
        backbone = {"width": 8, "depth": 3}
    dataset = "synthetic-series" if series_only(method) else "synthetic"
    return resolve(method, flags={"dataset": dataset, "epochs": epochs, "batch_size": 64, "backbone": backbone},
                   assignments=assignments + ["knn.every_n_epochs=0"])


def tiny_built_cfg(method: str, backbone: dict | None = None, **params) -> dict:
    """``method``'s tiny config with the facts a run fills in: a width-8 ResNet (a tiny ViT for
    methods whose own is one; or ``backbone``), 16-px colour images in 6 classes."""
    cfg = tiny_method_cfg(method)
    cfg["backbone"].update(backbone or {})
    if series_only(method):
        cfg["data"].update(channels=1, image_size=32, num_classes=3, mean=[0.0], std=[1.0], modality="series")
    else:
        cfg["data"].update(channels=3, image_size=16, num_classes=6, mean=[0.5] * 3, std=[0.25] * 3, modality="image")
    cfg["backbone"]["small_stem"] = True
    cfg["run"] = {"train_size": 512, "world_size": 1, "batches_per_epoch": 8}
    cfg["params"].update(params)
    expand_hosted(cfg)  # as resolving the config would: hosted methods' full params
    return cfg


def tiny(method: str, backbone: dict | None = None, **params):
    """``method`` of ``tiny_built_cfg`` built without the engine."""
    cfg = tiny_built_cfg(method, backbone, **params)
    torch.manual_seed(0)
    return build_method(cfg)


@torch.no_grad()
def perturb(*modules: torch.nn.Module, scale: float = 0.2) -> None:
    """Seeded noise on every parameter of ``modules``: a method's target networks start as copies
    of its online ones, so a test that reads targets must first make them differ (else targets
    taken from the online networks would pass)."""
    generator = torch.Generator().manual_seed(1)
    for module in modules:
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=generator))


class SimulatedCrash(RuntimeError):
    pass


def assert_same_state(a: dict, b: dict, atol: float = 1e-6) -> None:
    """Two checkpoints at the same step with the same parameters and buffers, within ``atol``."""
    assert a["global_step"] == b["global_step"]
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, value in a["state_dict"].items():
        assert torch.allclose(value.float(), b["state_dict"][key].float(), atol=atol), key


def crash_and_resume(name, tmp_path, monkeypatch, make_cfg):
    """Train ``make_cfg()`` straight, and again with a crash at the start of epoch 2 then resumed:
    (both runs' metrics, both last checkpoints)."""
    straight = pretrain(make_cfg(), tmp_path / "straight")
    cls = METHODS[name]
    original = cls.on_epoch_start

    def crash_in_second_epoch(self, epoch, embed):
        if epoch == 1:
            raise SimulatedCrash
        return original(self, epoch, embed)

    monkeypatch.setattr(cls, "on_epoch_start", crash_in_second_epoch)
    with pytest.raises(SimulatedCrash):
        pretrain(make_cfg(), tmp_path / "resumed")
    monkeypatch.setattr(cls, "on_epoch_start", original)
    resumed = pretrain(make_cfg(), tmp_path / "resumed", resume=True)
    return (straight, resumed), [torch.load(tmp_path / run / "checkpoints" / "last.ckpt", weights_only=True)
                                 for run in ("straight", "resumed")]


def interrupt_after_second_epoch(monkeypatch, module_class) -> None:
    """Make the runs of ``module_class`` (a LightningModule) raise RuntimeError("interrupted") at
    the end of their second epoch, after the epoch's checkpoint was written."""
    def stop(self):
        if self.current_epoch == 1:
            raise RuntimeError("interrupted")
    monkeypatch.setattr(module_class, "on_train_epoch_end", stop, raising=False)


def as_if_made_in(run_dir: Path, precision: str) -> None:
    """Rewrite a finished 32-true run's config.yaml and metrics.json as if ``auto`` had chosen
    ``precision`` on the machine that made it."""
    for name, written in (("config.yaml", "precision: {}"), ("metrics.json", '"precision": "{}"')):
        file = Path(run_dir) / name
        file.write_text(file.read_text().replace(written.format("32-true"), written.format(precision)))


def replay(method, step):
    """``step()``'s output, with ``method.generator`` put back to its state before it, so that a
    test draws the step's masks, crops and negatives again."""
    drawn = method.generator.get_state()
    out = step()
    method.generator.set_state(drawn)
    return out

"""Throughput suite: training images per second of

(a) our engine (``pretrain``: Lightning, batch augmentation on the device, channels_last),
(b) a plain PyTorch loop as commonly written: torchvision transforms per image in
    DataLoader workers, NCHW, the same model, optimiser and NT-Xent loss,
(c) the model-only ceiling: training steps on views augmented beforehand, in the faster of
    NCHW and channels_last,

all in one process run, on Fashion-MNIST with ResNet-18 (small stem, width 16), batch 256,
over the same number of steps.  Ratios a/b and a/c are what to compare across machines.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from ..config import merge, resolve
from ..data.datasets import dataset_info, load_split
from ..data.views import make_views
from ..engine.module import PretrainModule
from ..engine.optim import build_optimizer
from ..engine.train import pretrain
from . import FMNIST_QUICK
from .report import bar_plot, write_table

STEPS = 40
BATCH = 256
# fmnist-quick's data and model, one epoch of STEPS batches, no evaluation
SETTINGS = dict(FMNIST_QUICK, epochs=1, batch_size=BATCH, subset=STEPS * BATCH,
                knn={"every_n_epochs": 0, "final": False})


class TwoViewPerImage(Dataset):
    """The plain loop's dataset: each item is two views made by torchvision transforms."""

    def __init__(self, images: torch.Tensor, transform):
        self.images, self.transform = images, transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        image = self.images[i]
        return self.transform(image), self.transform(image)


def _torchvision_pipeline(cfg: dict):
    """SimCLR's augmentation with torchvision's per-image transforms (same parameters)."""
    from torchvision.transforms import v2

    aug, data = cfg["params"]["augment"], cfg["data"]
    s = aug["jitter_strength"]
    return v2.Compose([
        v2.RandomResizedCrop(data["image_size"], scale=tuple(aug["crop_scale"]), ratio=tuple(aug["crop_ratio"]),
                             antialias=True),
        v2.RandomHorizontalFlip(aug["flip_p"]),
        v2.RandomApply([v2.ColorJitter(0.8 * s, 0.8 * s)], p=aug["jitter_p"]),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(data["mean"], data["std"]),
    ])


def _time_steps(module: PretrainModule, batches, steps: int) -> float:
    """Seconds for ``steps`` optimiser steps of ``module`` over ``batches`` (an iterable of
    lists of views)."""
    optimizer = build_optimizer(module.method.parameter_groups(), module.cfg["optimizer"], BATCH)
    module.train()
    start = time.perf_counter()
    for step, views in zip(range(steps), batches):
        loss = module.method.training_step({"views": views}, step)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def plain_loop(cfg: dict, train) -> float:
    torch.manual_seed(0)
    module = PretrainModule(merge(cfg, {"trainer": {"channels_last": False}}))
    loader = DataLoader(TwoViewPerImage(train.images, _torchvision_pipeline(cfg)), batch_size=BATCH, shuffle=True,
                        num_workers=2, drop_last=True, persistent_workers=False)
    seconds = _time_steps(module, (list(views) for views in loader), STEPS)
    return STEPS * BATCH / seconds


def model_ceiling(cfg: dict, train) -> dict:
    """Images/s of training steps alone on pre-made views, per memory format."""
    results = {}
    for channels_last in (False, True):
        torch.manual_seed(0)
        module = PretrainModule(merge(cfg, {"trainer": {"channels_last": channels_last}}))
        generator = torch.Generator().manual_seed(0)
        batches = [make_views(train.images[i * BATCH:(i + 1) * BATCH], module.method.views, module.norm, generator,
                              channels_last) for i in range(4)]
        seconds = _time_steps(module, (batches[i % 4] for i in range(STEPS)), STEPS)
        results["channels_last" if channels_last else "nchw"] = STEPS * BATCH / seconds
    return results


def throughput_suite(out: Path, data_dir: str | None) -> list[dict]:
    settings = dict(SETTINGS, **({"data_dir": data_dir} if data_dir else {}))
    cfg = merge(resolve("simclr"), settings)
    run_dir = out / "runs" / "engine"
    shutil.rmtree(run_dir, ignore_errors=True)
    engine = pretrain(cfg, run_dir)["samples_per_second"]  # fills cfg's data facts
    train = load_split(cfg["dataset"], dataset_info(cfg["dataset"]).pretrain_split, cfg["data_dir"],
                       STEPS * BATCH, cfg["seed"], cfg["data"])
    plain = plain_loop(cfg, train)
    ceiling = model_ceiling(cfg, train)
    best_format = max(ceiling, key=ceiling.get)
    rows = [
        {"loop": "(a) selfsup engine", "images_per_second": engine, "ratio_to_a": 1.0},
        {"loop": "(b) plain PyTorch loop, per-image torchvision transforms, 2 workers", "images_per_second": plain,
         "ratio_to_a": engine / plain},
        {"loop": f"(c) model only, pre-augmented views, {best_format}", "images_per_second": ceiling[best_format],
         "ratio_to_a": engine / ceiling[best_format]},
    ] + [{"loop": f"    model only, {fmt}", "images_per_second": v, "ratio_to_a": engine / v}
         for fmt, v in ceiling.items() if fmt != best_format]
    notes = [f"Fashion-MNIST, ResNet-18 small stem width 16, SimCLR two views, LARS, batch {BATCH}, {STEPS} steps "
             f"each; {torch.get_num_threads()} torch threads.",
             f"a/b = {engine / plain:.2f}, a/c = {engine / ceiling[best_format]:.2f}. ratio_to_a is a divided by "
             "the row's images/s.",
             "(b) applies crop, flip and brightness/contrast jitter per image (the grey-image subset of the pipeline).",
             "Each image counts once, though it yields two views."]
    write_table(out, "throughput", "Training throughput (images/s)", rows, notes)
    bar_plot(out / "throughput.png", ["engine (a)", "plain loop (b)", "model only (c)"],
             [engine, plain, ceiling[best_format]], "images / s", "SimCLR training throughput")
    return rows

"""Throughput suite: training images per second of

(a) our engine (``pretrain``: Lightning, batch augmentation on the device, channels_last),
(c) the model-only ceiling: the method's own steps (and hooks) on views made beforehand,

for each method asked for, and for SimCLR also (b) a plain PyTorch loop as commonly written
(torchvision transforms per image in DataLoader workers, NCHW, the same model, optimiser and
NT-Xent loss) and the NCHW ceiling.  All in one process run, on Fashion-MNIST with ResNet-18
(small stem, width 16), batch 256, over the same number of steps.  The ratios a/c and a/b are
what to compare across machines.
"""
from __future__ import annotations

import functools
import itertools
import json
import shutil
import time
from pathlib import Path

import torch
import yaml
from torch.utils.data import DataLoader, Dataset

from ..config import merge, resolve
from ..data.datasets import dataset_info, load_split
from ..data.views import make_views
from ..engine.module import PretrainModule
from ..optim import build_optimizer
from ..engine.train import pretrain
from ..errors import SelfSupError
from ..io import write_json
from ..precision import device_description, uses_gpu
from .definitions import BF16, FMNIST_QUICK, FMNIST_QUICK_VIT, VIT_ROWS
from .report import bar_plot, write_table
from .suites import run_slug

STEPS = 40
BATCH = 256
WARMUP_STEPS = 3  # steps a compiled model runs before it is timed: the compilation, and recompilations
COMPILED = ("simclr", "byol", "mae")  # methods measured with trainer.compile as well (MAE on the ViT)
# fmnist-quick's data and model (each method's own optimiser, as its paper trains), one epoch of STEPS batches,
# no evaluation
SETTINGS = dict(FMNIST_QUICK, epochs=1, recipe="paper", batch_size=BATCH, subset=STEPS * BATCH,
                knn={"every_n_epochs": 0, "final": False}, trainer={"progress_bar": False, "precision": "32-true"})


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


def _time_steps(module: PretrainModule, batches, steps: int, epoch_start: bool = False) -> float:
    """Seconds for ``steps`` optimiser steps of ``module``'s method over ``batches`` (prepared
    batch dicts): its epoch-start hook (``epoch_start``), ``training_step``, backward, its
    pre-step hook, the optimiser step and its post-step hook, i.e. the method's own work
    without the engine's."""
    method = module.method
    optimizer = build_optimizer(method.parameter_groups(), module.cfg["optimizer"], module.cfg["batch_size"])
    module.train()
    start = time.perf_counter()
    if epoch_start:
        method.on_epoch_start(0, module.embed_training_set)
    bf16 = module.cfg["trainer"]["precision"] == "bf16-mixed"
    for step, batch in zip(range(steps), batches):
        with torch.autocast(module.device.type, dtype=torch.bfloat16, enabled=bf16):  # as the engine's precision
            loss = method.training_step(dict(batch), step)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        method.on_before_optimizer_step(0, step)
        optimizer.step()
        method.on_step_end(step + 1, steps)
    return time.perf_counter() - start


def plain_loop(cfg: dict, train) -> float:
    torch.manual_seed(0)
    module = PretrainModule(merge(cfg, {"trainer": {"channels_last": False}}))
    loader = DataLoader(TwoViewPerImage(train.images, _torchvision_pipeline(cfg)), batch_size=BATCH, shuffle=True,
                        num_workers=2, drop_last=True, persistent_workers=False)
    seconds = _time_steps(module, ({"views": list(views)} for views in loader), STEPS)
    return STEPS * BATCH / seconds


def model_ceiling(cfg: dict, train, channels_last: bool, compile_: bool = False) -> tuple[float, float]:
    """(images/s of the method's own steps on views made beforehand (4 batches, reused), seconds
    of the first ``WARMUP_STEPS`` steps beyond what they take once warm: the compile time);
    with ``compile_``, the networks compiled (``trainer.compile``) and timed after the warm-up;
    at ``cfg``'s batch size and training precision."""
    batch_size = cfg["batch_size"]
    torch.manual_seed(0)
    module = PretrainModule(merge(cfg, {"trainer": {"channels_last": channels_last, "compile": compile_}}))
    module.train_set = train
    generator = torch.Generator().manual_seed(0)
    make = functools.partial(make_views, norm=module.norm, generator=generator, channels_last=channels_last)
    batches = module.method.train_batches(train, batch_size, module.cfg["seed"])  # the method's own sampling, if any
    if batches is None:
        raw = [train.__getitems__(list(range(i * batch_size, (i + 1) * batch_size))) for i in range(4)]
    else:
        dataset, sampler = batches
        sampler.set_epoch(0)
        raw = [dataset.__getitems__(indices) for indices in itertools.islice(sampler, 4)]
    batches = [module.method.prepare_batch(batch, make) for batch in raw]
    warmup = _time_steps(module, (batches[i % 4] for i in range(WARMUP_STEPS)), WARMUP_STEPS) if compile_ else 0.0
    seconds = _time_steps(module, (batches[i % 4] for i in range(STEPS)), STEPS, epoch_start=True)
    return STEPS * batch_size / seconds, max(0.0, warmup - WARMUP_STEPS * seconds / STEPS)


def throughput_config(method: str, data_dir: str | None, vit: bool = False) -> dict:
    """``method``'s config in the suite: colour-only tasks get the images repeated to 3 channels
    (the compute of colour images of this size; the task itself is moot on grey ones); methods
    that read patch tokens (and any with ``vit``) train fmnist-quick's ViT."""
    from ..methods import method_class

    settings = dict(SETTINGS, **({"data_dir": data_dir} if data_dir else {}))
    if method_class(method).colour_only:
        settings["data"] = {"channels": 3}
    cfg = merge(resolve(method), settings)
    return merge(cfg, FMNIST_QUICK_VIT) if vit or method_class(method).needs_tokens else cfg


def engine_speed(cfg: dict, run_dir: Path) -> tuple[float, dict]:
    """(the engine's images/s for ``cfg``, trained afresh in ``run_dir``; the config as that run wrote
    it, with the data facts pretrain filled in)."""
    shutil.rmtree(run_dir, ignore_errors=True)
    speed = pretrain(cfg, run_dir)["samples_per_second"]
    return speed, yaml.safe_load((run_dir / "config.yaml").read_text())


def timed_slice(cfg: dict):
    """The ``STEPS`` batches of training images the engine run of ``cfg`` trained on."""
    return load_split(cfg["dataset"], dataset_info(cfg["dataset"]).pretrain_split, cfg["data_dir"],
                      STEPS * cfg["batch_size"], cfg["seed"], cfg["data"])


def method_throughput(method: str, out: Path, data_dir: str | None, vit: bool = False) -> dict:
    """(a) the engine in fp32 and in bf16 mixed precision, and (c) the fp32 model-only ceiling
    (channels_last, the engine's format) for ``method`` (on the ViT with ``vit``)."""
    cfg = throughput_config(method, data_dir, vit)
    name = method + ("-vit" if vit else "")
    engine, written = engine_speed(cfg, out / "runs" / name)
    engine_bf16, _ = engine_speed(merge(cfg, BF16), out / "runs" / f"{name}-bf16")
    train = timed_slice(written)
    return {"cfg": written, "train": train, "engine": engine, "engine_bf16": engine_bf16,
            "ceiling": model_ceiling(written, train, True)[0]}


def measure(method: str, out: Path, data_dir: str | None, vit: bool = False) -> dict:
    """Images/s of ``method``'s loops, kept in ``out/results/LABEL.json`` (the row's label: the
    method, or "METHOD, vit" for its run on the ViT)."""
    measured = method_throughput(method, out, data_dir, vit)
    result = {"engine": measured["engine"], "engine_bf16": measured["engine_bf16"], "ceiling": measured["ceiling"],
              "date": time.strftime("%Y-%m-%d %H:%M"), "device": device_description(uses_gpu("auto"))}
    if method == "simclr":
        result["plain"] = plain_loop(measured["cfg"], measured["train"])
        result["nchw"] = model_ceiling(measured["cfg"], measured["train"], False)[0]
    if method in COMPILED:
        result["compiled"], result["compile_seconds"] = model_ceiling(measured["cfg"], measured["train"], True, True)
    write_json(out / "results" / f"{method}{', vit' if vit else ''}.json", result)
    return result


def measure_recipe(name: str, out: Path, data_dir: str | None) -> dict:
    """Images/s of speedrun recipe ``name``: the engine and the model-only ceiling, both at the
    recipe's batch size and precision, over ``STEPS`` steps; kept in ``out/results/recipe NAME.json``."""
    from .definitions import SPEEDRUN_RECIPES
    from .speedrun import speedrun_config

    recipes = dict(SPEEDRUN_RECIPES)
    if name not in recipes:
        raise SelfSupError(f"no speedrun recipe '{name}'; its recipes: {', '.join(recipes)}")
    cfg = speedrun_config(recipes[name], 0, data_dir)
    cfg = merge(cfg, {"epochs": 1, "subset": STEPS * cfg["batch_size"], "trainer": {"progress_bar": False},
                      "knn": {"every_n_steps": 0, "target_knn": None, "target_linear": None}})
    engine, cfg = engine_speed(cfg, out / "runs" / f"recipe-{run_slug(name)}")
    result = {"engine": engine, "ceiling": model_ceiling(cfg, timed_slice(cfg), cfg["trainer"]["channels_last"])[0],
              "precision": cfg["trainer"]["precision"], "batch_size": cfg["batch_size"],
              "date": time.strftime("%Y-%m-%d %H:%M"), "device": device_description(uses_gpu("auto"))}
    write_json(out / "results" / f"recipe {name}.json", result)
    return result


def compile_note(method: str, eager: float, compiled: float, compile_seconds: float) -> str:
    """What ``trainer.compile`` did for ``method``'s model-only loop, and whether its compilation pays back."""
    pays = "pays back on a long enough run" if compiled > eager else "never pays back"
    return (f"{method}: trainer.compile runs the model-only loop at {compiled / eager:.2f}x the eager speed "
            f"({compiled:.0f} against {eager:.0f} images/s); its {compile_seconds:.0f} s of compilation (with "
            "Inductor's on-disk cache of earlier compilations on this machine; a first compilation takes longer) "
            f"{pays}.")


def throughput_suite(out: Path, data_dir: str | None, methods: list[str], recipes: list[str] | None = None
                     ) -> list[dict]:
    """Measure ``methods`` (those of ``VIT_ROWS`` on the ResNet and on the ViT) and the speedrun
    ``recipes``, then tabulate everything measured so far (methods in registry order, then the
    recipes), so that one can be re-measured alone."""
    from ..methods import METHODS
    from .definitions import SPEEDRUN_RECIPES

    for name in recipes or []:
        measure_recipe(name, out, data_dir)
    skipped = []
    for method in methods:
        for vit in (False, True) if method in VIT_ROWS else (False,):
            try:
                measure(method, out, data_dir, vit)
            except SelfSupError as exc:  # e.g. a colour-only task on Fashion-MNIST
                print(f"{method}: skipped ({exc})")
                skipped.append(f"{method} ({exc})")
    rows, notes = [], [f"Not measured here: {'; '.join(skipped)}."] if skipped else []
    labels = [label for m in METHODS for label in (m, f"{m}, vit")] + [f"recipe {name}" for name, _ in SPEEDRUN_RECIPES]
    for method in [label for label in labels if (out / "results" / f"{label}.json").exists()]:
        measured = json.loads((out / "results" / f"{method}.json").read_text())
        engine, ceiling = measured["engine"], measured["ceiling"]
        when = {"measured": measured["date"], "device": measured.get("device", "")}
        if method.startswith("recipe "):
            notes.append(f"{method}: the speedrun recipe at its own batch ({measured['batch_size']}) and precision "
                         f"({measured['precision']}), engine and model-only ceiling alike.")
        rows.append({"method": method, "loop": "(a) selfsup engine", "images_per_second": engine, "a_over_row": 1.0,
                     **when})
        rows.append({"method": method, "loop": "(c) model only, pre-made views, channels_last",
                     "images_per_second": ceiling, "a_over_row": engine / ceiling, **when})
        if "engine_bf16" in measured:
            rows.append({"method": method, "loop": "    selfsup engine, bf16-mixed precision",
                         "images_per_second": measured["engine_bf16"], "a_over_row": engine / measured["engine_bf16"],
                         **when})
        if "compiled" in measured:
            rows.append({"method": method, "loop": "    model only, channels_last, trainer.compile",
                         "images_per_second": measured["compiled"], "a_over_row": engine / measured["compiled"],
                         **when})
            notes.append(compile_note(method, ceiling, measured["compiled"], measured["compile_seconds"]))
        if "plain" in measured:
            plain, nchw = measured["plain"], measured["nchw"]
            rows.append({"method": method, "loop": "(b) plain PyTorch loop, per-image torchvision transforms, 2 workers",
                         "images_per_second": plain, "a_over_row": engine / plain, **when})
            rows.append({"method": method, "loop": "    model only, NCHW", "images_per_second": nchw,
                         "a_over_row": engine / nchw, **when})
            notes.append(f"simclr: a/b = {engine / plain:.2f} against a plain PyTorch loop (crop, flip and "
                         "brightness/contrast jitter per image in 2 DataLoader workers, NCHW).")
    summary = ", ".join(f"{r['method']} {r['a_over_row']:.2f}" for r in rows if r["loop"].startswith("(c)"))
    notes = [f"Fashion-MNIST, ResNet-18 small stem width 16 (the methods that read patch tokens, and the rows "
             f"labelled `, vit`: fmnist-quick's ViT, {FMNIST_QUICK_VIT['backbone']}), each method's own views, "
             f"optimiser and loss, batch "
             f"{BATCH}, {STEPS} steps per loop; {torch.get_num_threads()} torch threads.",
             f"a/c (engine over the model-only ceiling) per method: {summary}. a_over_row is (a) divided by the "
             "row's images/s.",
             "(c) runs the method's own epoch-start hook (DeepCluster's clustering of the 10k images), "
             "training_step, backward, pre-step hook, optimiser step and post-step hook on views made beforehand; "
             "(a) adds the engine: data loading, view making on the batch, logging, the progress of Lightning.",
             "Each image counts once, however many views it yields.",
             "Colour-only tasks (colorization, split-brain) run on Fashion-MNIST repeated to 3 channels: the compute "
             "of colour images of this size, although their task is moot on grey ones.",
             "(a) and (c) train in fp32 (a recipe's rows: in its precision); the bf16-mixed row is the engine again "
             "with autocast to bfloat16 (on a CPU with AVX-512 BF16 or AMX; fmnist-quick trains so since "
             "2026-11-29): its a_over_row is the fp32 engine's speed over its own, so 1 / a_over_row is the speed-up.",
             "Each method's rows come from its own measurement (`measured`, on `device`: the GPU, or the CPU's model "
             "and whether it computes bfloat16 natively; empty for measurements made before 2026-12-06, when it began "
             "to be recorded); `--method M` re-measures M alone and keeps the other rows."] + notes
    write_table(out, "throughput", "Training throughput (images/s)", rows, notes,
                command=f"selfsup benchmark --suite throughput --method all --out {out}")
    labels = [f"{r['method']} {r['loop'][:3]}" for r in rows if r["loop"][:3] in ("(a)", "(c)")]
    bar_plot(out / "throughput.png", labels, [r["images_per_second"] for r in rows if r["loop"][:3] in ("(a)", "(c)")],
             "images / s", "Training throughput: engine (a) vs model-only ceiling (c)")
    return rows

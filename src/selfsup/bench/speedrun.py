"""The speedrun: training time until the features of unlabelled Fashion-MNIST pretraining
reach kNN ≥ 0.85 and a linear probe ≥ 0.88 on the full test split (the standardised pixels
score 0.818 / 0.844, five epochs of supervised training 0.901 / 0.908).

Each recipe (``definitions.SPEEDRUN_RECIPES``) trains with the kNN monitor on the full splits
every few hundred steps (``knn.every_n_steps``): a check whose kNN reaches the target also
trains the linear probe on the same features (as does a run's last check, so a miss says how
far its probe got), and the first check that reaches both stops the
run (``knn.target_knn``, ``knn.target_linear``).  The time is the run's wall time up to that
check less the time of every check (``KNNMonitor``), so it counts training only: data, views,
steps, checkpoints.  Each recipe runs with three training seeds; the leaderboard gives the
median and the range of the three times, and for a recipe that missed, how far it got.  Time is
the machine's: run the suite alone on it (the table names the threads each run had).
"""
from __future__ import annotations

import statistics
from pathlib import Path

from ..errors import SelfSupError
from ..plots import curve_plot
from ..rundir import RunDirectory
from .definitions import SPEEDRUN_RECIPES, SPEEDRUN_SEEDS, SPEEDRUN_TARGETS
from .report import bf16_views_notes, write_table
from .suites import claimed_run, finished_run, pretrain_row, run_slug, suite_config

SPEEDRUN = {"dataset": "fashion-mnist",
            "knn": {"monitor_train_size": 0, "monitor_test_size": 0, "final": False, "every_n_epochs": 0,
                    "target_knn": SPEEDRUN_TARGETS[0], "target_linear": SPEEDRUN_TARGETS[1]},
            "trainer": {"progress_bar": False}}


def speedrun_config(settings: dict, seed: int, data_dir: str | None = None) -> dict:
    return suite_config(SPEEDRUN, {**settings, "seed": seed}, settings["method"], data_dir)


def optimizer_summary(cfg: dict) -> str:
    """The optimiser and schedule as trained: the warm-up is at most a tenth of the run (``PretrainModule``)."""
    o, s = cfg["optimizer"], cfg["schedule"]
    return (f"{o['name']} lr {o['lr']:g} ({o['lr_scaling']}), wd {o['weight_decay']:g}, "
            f"warm-up {min(s['warmup_epochs'], cfg['epochs'] / 10):g} ep, {s['shape']}")


def augment_summary(params: dict, image_size: int) -> str:
    """The view pipeline's main settings as applied to ``image_size``-px images (no blur below
    ``blur_min_size``), or "the method's" for a method with its own."""
    a = params.get("augment")
    if not isinstance(a, dict):
        return "the method's"
    blurred = image_size >= a.get("blur_min_size", 0)
    parts = [f"crop {a['crop_scale'][0]:g}-{a['crop_scale'][1]:g}" if "crop_scale" in a else None,
             *(f"{name} {a[key]:g}" for name, key in (("flip", "flip_p"), ("jitter", "jitter_p"),
                                                      ("grey", "grayscale_p"), ("blur", "blur_p"),
                                                      ("solarize", "solarize_p")) if a.get(key)
               and (key != "blur_p" or blurred))]
    return ", ".join(p for p in parts if p)


def recipe_row(name: str, cfg: dict, runs: list[dict]) -> dict:
    """The leaderboard row of recipe ``name`` (resolved config ``cfg``) from its finished runs."""
    reached = [m["target"]["reached"] for m in runs if m["target"]["reached"]]
    times = [r["train_seconds"] for r in reached]
    checks = [h for m in runs for h in m["knn_history"]]
    b = cfg["backbone"]
    row = {"recipe": name, "method": cfg["method"], "network": f"{b['name']} w{b['width']}",
           "batch": cfg["batch_size"], "image": cfg["data"].get("image_size") or "", "optimizer": optimizer_summary(cfg),
           "augmentations": augment_summary(cfg["params"], cfg["data"].get("image_size") or 0),
           "precision": cfg["trainer"]["precision"],
           "compile": cfg["trainer"]["compile"], "max_epochs": cfg["epochs"], "threads": runs[0].get("threads"),
           "device": " / ".join(sorted({m.get("device", "") for m in runs})),
           "seeds_reached": f"{len(reached)}/{len(runs)}",
           "median_seconds": statistics.median(times) if len(reached) == len(runs) else None,
           "min_seconds": min(times) if times else None, "max_seconds": max(times) if times else None,
           "median_epochs": statistics.median(r["epoch"] for r in reached) if len(reached) == len(runs) else None,
           "median_last_knn": statistics.median(m["knn_history"][-1]["knn_top1"] for m in runs),
           "best_knn": max(h["knn_top1"] for h in checks),
           "best_linear": max((h["linear_top1"] for h in checks if "linear_top1" in h), default=None)}
    return row


def ranked(rows: list[dict]) -> list[dict]:
    """The leaderboard's order: the recipes whose every seed reached the targets by median time,
    then the others by their best kNN."""
    return sorted(rows, key=lambda r: (r["median_seconds"] is None, r["median_seconds"] or 0, -r["best_knn"]))


def speedrun_suite(out: Path, data_dir: str | None, methods: list[str] | None,
                   row: list[str] | None = None) -> list[dict]:
    """Run every recipe (those named in ``row``; whose method is in ``methods``) with each
    seed of ``SPEEDRUN_SEEDS`` not finished yet, then write the leaderboard of every finished
    recipe (``speedrun.md``/``.csv``) and the kNN against training time of each recipe's
    first seed (``speedrun_knn.png``)."""
    names = [name for name, _ in SPEEDRUN_RECIPES]
    unknown = [r for r in row or [] if r not in names and r not in map(run_slug, names)]
    if unknown:
        raise SelfSupError(f"the speedrun suite has no recipe '{unknown[0]}'; its recipes: {', '.join(names)}")
    for name, settings in SPEEDRUN_RECIPES:
        if (methods is not None and settings["method"] not in methods) or (
                row is not None and not {name, run_slug(name)} & set(row)):
            continue
        for seed in SPEEDRUN_SEEDS:
            cfg, run_dir = speedrun_config(settings, seed, data_dir), out / "runs" / f"{run_slug(name)}-seed{seed}"
            label = f"{name}, seed {seed}"
            claimed_run(run_dir, cfg, label, lambda: pretrain_row(label, cfg, run_dir))
    rows, curves = [], {}
    for name, settings in SPEEDRUN_RECIPES:
        cfg = speedrun_config(settings, SPEEDRUN_SEEDS[0], data_dir)
        dirs = [out / "runs" / f"{run_slug(name)}-seed{seed}" for seed in SPEEDRUN_SEEDS]
        runs = [m for seed, d in zip(SPEEDRUN_SEEDS, dirs)
                if (m := finished_run(d, speedrun_config(settings, seed, data_dir), redo=False)) is not None]
        if not runs:
            continue
        cfg = RunDirectory(dirs[0]).saved_config() if (dirs[0] / "config.yaml").exists() else cfg
        rows.append(recipe_row(name, cfg, runs))
        history = runs[0]["knn_history"]
        curves[name] = ([h["train_seconds"] for h in history], [h["knn_top1"] for h in history])
    rows = ranked(rows)
    knn, linear = SPEEDRUN_TARGETS
    notes = [f"Targets on the full test split: kNN (k 200, T 0.1, bank: the 60,000 training images) ≥ {knn} and "
             f"a linear probe (Adam, 100 epochs, standardised features) ≥ {linear}; both checked every "
             "`knn.every_n_steps` steps (the probe once the kNN has reached its target, and at the last check).",
             "median_seconds: training time to the first check that reached both targets, the checks' "
             "own time excluded, over the seeds " + ", ".join(map(str, SPEEDRUN_SEEDS)) + "; empty where a seed "
             "missed within max_epochs (seeds_reached); min_seconds and max_seconds over the seeds that reached them. median_last_knn: the median over the seeds of the last "
             "check's kNN (where a run stopped, or its last epoch); best_knn / best_linear: the best any check of "
             "any seed reached (the probe runs at checks that reached the kNN target and, since 2026-12-05, at a "
             "run's last check; runs made before have no probe where they missed).",
             "threads: the CPU threads PyTorch trained with; times hold for a machine that ran nothing else. device: "
             "the GPU, or the CPU's model and whether it computes bfloat16 natively (empty for runs made before "
             "2026-12-06, when it began to be recorded).",
             "Each recipe's settings (laid over its method's defaults, then the suite's "
             f"`{SPEEDRUN}`) are in `selfsup.bench.definitions.SPEEDRUN_RECIPES`, each run's in `runs/RECIPE-seedS/config.yaml`; "
             "what was tried and did not help is in `../tuning-speedrun.md`.", *bf16_views_notes(r["precision"] for r in rows)]
    write_table(out, "speedrun", "Speedrun: time to kNN ≥ 0.85 and linear ≥ 0.88 on Fashion-MNIST, from unlabelled images",
                rows, notes, command=f"selfsup benchmark --suite speedrun --out {out}")
    curve_plot(out / "speedrun_knn.png", {"kNN on the full test split, first seed": curves}, "training seconds",
               "kNN top-1", "Speedrun recipes: kNN against training time", {f"target {knn}": knn})
    return rows


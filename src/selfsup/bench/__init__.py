"""Benchmark suites (``selfsup benchmark --suite NAME --out DIR``)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import SelfSupError
from ..io import ensure_writable_dir
from .definitions import (ABLATION_BUDGET, FMNIST_LONG, FMNIST_QUICK, MULTITASK, MULTITASK_BUDGET, ablation_findings,
                          ablation_runs, fmnist_long_runs, fmnist_quick_runs)
from .forecast import forecast_suite


@dataclass(frozen=True)
class Suite:
    description: str
    run: Callable[..., object]  # (out, data_dir, methods, **options)
    options: tuple[str, ...] = ()  # the suite's own keyword options (benchmark flags), if any
    rows: Callable[[], list[tuple[str, str, dict]]] | None = None  # an accuracy suite's fixed rows (label, method, settings)


def _smoke(out: Path, data_dir: str | None, methods: list[str] | None):
    from .suites import accuracy_suite
    overrides = {"dataset": "synthetic", "epochs": 6, "recipe": "paper", "batch_size": 64, "backbone": {"width": 8},
                 "optimizer": {"name": "adam", "lr": 0.008, "lr_scaling": "none"}, "schedule": {"warmup_epochs": 0},
                 "trainer": {"progress_bar": False}, "knn": {"k": 20}}
    return accuracy_suite(out, "smoke", "Smoke: synthetic textures (6 epochs, ResNet-18 width 8)",
                          [(m, m, {}) for m in methods or ["simclr"]], overrides, probe_epochs=20, data_dir=data_dir)


def _fmnist_quick(out: Path, data_dir: str | None, methods: list[str] | None, row: list[str] | None = None):
    from .suites import accuracy_suite
    return accuracy_suite(out, "fmnist-quick", "Fashion-MNIST quick: ResNet-18 (small stem, width 16), batch 256, 5 epochs",
                          fmnist_quick_runs(), FMNIST_QUICK, probe_epochs=100,
                          data_dir=data_dir, selected=methods, probe_layers=True, selected_rows=row)


def _fmnist_long(out: Path, data_dir: str | None, methods: list[str] | None, row: list[str] | None = None):
    from .suites import accuracy_suite
    return accuracy_suite(out, "fmnist-long", "Fashion-MNIST long: ResNet-18 (small stem, width 16), batch 256, 50 epochs",
                          fmnist_long_runs(), FMNIST_LONG, probe_epochs=100, data_dir=data_dir, selected=methods,
                          selected_rows=row, finetune_fraction=0.01)


def _ablations(out: Path, data_dir: str | None, methods: list[str] | None, row: list[str] | None = None):
    from .suites import accuracy_suite
    return accuracy_suite(out, "ablations", "Ablations: ResNet-18 width 16 (MAE, I-JEPA: fmnist-quick's ViT), batch 256, 3 epochs (BYOL, "
                          "'moco-v2 10 ep', InstDisc's 10-epoch row: 10) on 20k Fashion-MNIST training images", ablation_runs(), ABLATION_BUDGET, probe_epochs=100, data_dir=data_dir, selected=methods,
                          findings=ablation_findings, selected_rows=row)


def _multitask(out: Path, data_dir: str | None, methods: list[str] | None, row: list[str] | None = None):
    from .suites import accuracy_suite
    return accuracy_suite(out, "multitask", "Multitask vs single pretext tasks: ResNet-18 width 16, batch 256, 3 epochs "
                          "on 20k Fashion-MNIST training images", MULTITASK, MULTITASK_BUDGET, probe_epochs=100,
                          data_dir=data_dir, selected=methods, probe_layers=True, selected_rows=row)


def _evaluations(out: Path, data_dir: str | None, methods: list[str] | None):
    from .evaluations import evaluations_suite
    return evaluations_suite(out, out.parent / "fmnist-quick" / "runs", methods)


def _semisup(out: Path, data_dir: str | None, methods: list[str] | None, labels_per_class: list[int] | None = None,
             label_seed: list[int] | None = None):
    from .semisup import LABEL_SEEDS, LABELS_PER_CLASS, semisup_suite
    return semisup_suite(out, data_dir, methods, labels=tuple(labels_per_class or LABELS_PER_CLASS),
                         seeds=tuple(label_seed or LABEL_SEEDS))


def _series_ssl(out: Path, data_dir: str | None, methods: list[str] | None):
    from .series import series_ssl_suite
    return series_ssl_suite(out, data_dir, methods)


def _fidelity(out: Path, data_dir: str | None, methods: list[str] | None):
    from .fidelity import fidelity_table
    return fidelity_table(out)


def _speedrun(out: Path, data_dir: str | None, methods: list[str] | None, row: list[str] | None = None):
    from .speedrun import speedrun_suite
    return speedrun_suite(out, data_dir, methods, row)


def _recipes(out: Path, data_dir: str | None, methods: list[str] | None):
    from .recipes import recipes_suite
    return recipes_suite(out, data_dir, methods)


def _throughput(out: Path, data_dir: str | None, methods: list[str] | None, row: list[str] | None = None):
    from .throughput import throughput_suite
    return throughput_suite(out, data_dir, methods or ([] if row else ["simclr"]), row)


SUITES: dict[str, Suite] = {
    "smoke": Suite("SimCLR on synthetic data, a minute on 2 CPU cores (used by the tests)", _smoke),
    "fmnist-quick": Suite("Fashion-MNIST 60k/10k, ResNet-18 width 16, batch 256, 5 epochs: kNN, linear, baselines",
                          _fmnist_quick, options=("row",), rows=fmnist_quick_runs),
    "fmnist-long": Suite("SimCLR, MoCo v2, BYOL, SimSiam, Barlow Twins, SwAV, DeepCluster-v2, DARe, VICReg, DINO and "
                         "supervised at fmnist-quick's settings for 50 epochs, then the queue-size, multi-crop and "
                         "BYOL-target ablations: kNN, linear, 1%-label fine-tuning, diagnostics, kNN curves",
                         _fmnist_long, options=("row",), rows=fmnist_long_runs),
    "ablations": Suite("one setting changed per row, 3 epochs on 20k Fashion-MNIST images: predictors, targets, "
                       "stop-gradient, multi-crop, k, lambdas, temperatures, dictionaries, noise samples", _ablations,
                       options=("row",), rows=ablation_runs),
    "multitask": Suite("rotation and jigsaw alone vs one trunk trained on both (fixed and learned weights), "
                       "per-stage linear probes, the ablations' budget", _multitask, options=("row",),
                       rows=lambda: MULTITASK),
    "evaluations": Suite("fine-tuning on 1% and 10% of the labels vs from scratch, transfer to digits, retrieval, "
                         "t-SNE/UMAP, on the fmnist-quick checkpoints in OUT/../fmnist-quick; a report page",
                         _evaluations),
    "semisup": Suite("supervised-only, pseudo-label, self-training, FixMatch (with and without balancing), FROST "
                     "from the fmnist-quick SimCLR checkpoint, FlexMatch, FreeMatch, SoftMatch, UDA, Mean Teacher, "
                     "MixMatch and ReMixMatch, 1/4/25 labels per class, 3 label seeds, beside a linear probe of that "
                     "checkpoint on the same labels", _semisup,
                     options=("labels_per_class", "label_seed")),
    "series-ssl": Suite("CPC, TS2Vec, T-Loss, TS-TCC, and SimCLR, BYOL and VICReg on series views, on every UCR/UEA "
                        "problem shipped with aeon: SVM, kNN and linear probes vs MiniRocket, the raw series and the "
                        "random-init encoders; mean accuracy and rank",
                        _series_ssl),
    "fidelity": Suite("before and after the fidelity fixes: every run they changed (OUT/before.json) beside the same "
                      "run made again in its suite (OUT/../SUITE/runs); trains nothing", _fidelity),
    "speedrun": Suite("training time to kNN >= 0.85 and linear >= 0.88 on the full Fashion-MNIST test split from "
                      "unlabelled images, 3 seeds per recipe (--row RECIPE); the leaderboard of recipes", _speedrun,
                      options=("row",)),
    "recipes": Suite("every method that learns without labels at 1 and 5 epochs under its paper and its short recipe "
                     "(kNN against its random-init network; the 5-epoch short runs are fmnist-quick's)", _recipes),
    "throughput": Suite("training images/s of --method M (or all) and of speedrun recipes (--row RECIPE): our "
                        "engine vs the model-only ceiling (and, for simclr, a plain PyTorch loop)", _throughput,
                        options=("row",)),
    "forecast": Suite("self-boosted time-series forecasting (EEMD; mtl, mtv) vs the plain network, the classical "
                      "models (persistence, seasonal naive, AR, ETS, ARIMA, linear) and TS2Vec + ridge on six series "
                      "at lags 3, 6, 12, all from the same first origin: NRMSE per lag, the winning family, plots, "
                      "EEMD cost", forecast_suite),
}


def rows_not_begun(out: Path) -> tuple[str, int, list[str]] | None:
    """For the ``--out`` folder of a suite with fixed rows (known by its table, ``out/NAME.md``): the
    suite's name, its number of rows and the labels of those with no run folder yet; else None."""
    from .suites import run_slug

    for name, suite in SUITES.items():
        if suite.rows is not None and (out / f"{name}.md").is_file():
            labels = [label for label, _, _ in suite.rows()]
            return name, len(labels), [label for label in labels if not (out / "runs" / run_slug(label)).is_dir()]
    return None


def run_suite(name: str, out: Path, data_dir: str | None = None, methods: list[str] | None = None, **options):
    """Run suite ``name``; ``methods`` (registry names, or ["all"]) replaces the suite's own
    list; ``options`` (those not None) go to a suite that has them."""
    from ..methods import METHODS, method_class

    if name not in SUITES:
        raise SelfSupError(f"unknown benchmark suite '{name}'; choose one of: {', '.join(SUITES)}")
    if methods == ["all"]:
        methods = list(METHODS)
    for method in methods or []:
        method_class(method)  # a clear error for an unknown name, before any work
    options = {key: value for key, value in options.items() if value is not None}
    foreign = [key for key in options if key not in SUITES[name].options]
    if foreign:
        raise SelfSupError(f"--{foreign[0].replace('_', '-')} is not an option of the {name} suite"
                           + (f" (its options: {', '.join('--' + o.replace('_', '-') for o in SUITES[name].options)})"
                              if SUITES[name].options else ""))
    ensure_writable_dir(out)
    return SUITES[name].run(out, data_dir, methods, **options)

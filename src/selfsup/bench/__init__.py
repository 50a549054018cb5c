"""Benchmark suites (``selfsup benchmark --suite NAME --out DIR``)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..config import merge
from ..errors import SelfSupError
from ..io import ensure_writable_dir


@dataclass(frozen=True)
class Suite:
    description: str
    run: Callable[[Path, str | None, list[str] | None], object]


def _smoke(out: Path, data_dir: str | None, methods: list[str] | None):
    from .suites import accuracy_suite
    overrides = {"dataset": "synthetic", "epochs": 6, "batch_size": 64, "backbone": {"width": 8},
                 "optimizer": {"name": "adam", "lr": 0.008, "lr_scaling": "none"}, "schedule": {"warmup_epochs": 0},
                 "trainer": {"progress_bar": False}, "knn": {"k": 20}}
    return accuracy_suite(out, "smoke", "Smoke: synthetic textures (6 epochs, ResNet-18 width 8)",
                          [(m, m, {}) for m in methods or ["simclr"]], overrides, probe_epochs=20, data_dir=data_dir)


# The fixed budget every method gets on Fashion-MNIST.
FMNIST_QUICK = {"dataset": "fashion-mnist", "epochs": 5, "batch_size": 256,
                "backbone": {"name": "resnet18", "width": 16, "small_stem": True}, "trainer": {"progress_bar": False}}
# Beyond it, per method, settings tuned for 5-epoch runs (1-epoch kNN monitor; the tuning
# files in benchmarks/ say why): the papers' defaults assume hundreds of epochs.
FMNIST_QUICK_TUNED = {
    "simclr": {"optimizer": {"lr": 0.15}, "params": {"temperature": 0.2}},
    "moco-v2": {"optimizer": {"lr": 0.3}, "params": {"key_momentum": 0.99, "queue_size": 32768, "head_batch_norm": True}},
    "swav": {"params": {"queue_size": 3840, "queue_start_epoch": 0, "num_prototypes": 100, "small_crops": 0}},
}


def _fmnist_quick(out: Path, data_dir: str | None, methods: list[str] | None):
    from .suites import accuracy_suite
    from ..methods import METHODS
    return accuracy_suite(out, "fmnist-quick", "Fashion-MNIST quick: ResNet-18 (small stem, width 16), batch 256, 5 epochs",
                          [(m, m, FMNIST_QUICK_TUNED.get(m, {})) for m in METHODS], FMNIST_QUICK, probe_epochs=100,
                          data_dir=data_dir, selected=methods)


# Ablations of the non-contrastive and clustering methods on the fmnist-quick budget: each row
# changes one setting of the method's fmnist-quick configuration.
ABLATIONS = [
    ("byol", "byol", {}),
    ("byol, no predictor", "byol", {"params": {"use_predictor": False}}),
    ("byol, frozen target (tau 1)", "byol", {"params": {"base_momentum": 1.0, "final_momentum": 1.0}}),
    ("simsiam", "simsiam", {}),
    ("simsiam, no stop-gradient", "simsiam", {"params": {"stop_gradient": False}}),
    ("swav", "swav", {}),
    ("swav, multi-crop 2 + 6", "swav", {"params": {"small_crops": 6}}),
    ("swav, 3000 prototypes", "swav", {"params": {"num_prototypes": 3000}}),
    ("deepcluster, k 30", "deepcluster", {"params": {"num_clusters": 30}}),
    ("deepcluster, k 100", "deepcluster", {"params": {"num_clusters": 100}}),
    ("deepcluster, k 300", "deepcluster", {"params": {"num_clusters": 300}}),
    ("barlow-twins, lambda 0.0051", "barlow-twins", {}),
    ("barlow-twins, lambda 0.0005", "barlow-twins", {"params": {"lambd": 0.0005}}),
    ("barlow-twins, lambda 0.05", "barlow-twins", {"params": {"lambd": 0.05}}),
]


def _ablations(out: Path, data_dir: str | None, methods: list[str] | None):
    from .suites import accuracy_suite
    runs = [(label, m, merge(FMNIST_QUICK_TUNED.get(m, {}), change, strict=False)) for label, m, change in ABLATIONS]
    return accuracy_suite(out, "ablations", "Ablations on the Fashion-MNIST quick budget (5 epochs, ResNet-18 width 16)",
                          runs, FMNIST_QUICK, probe_epochs=100, data_dir=data_dir, selected=methods)


def _throughput(out: Path, data_dir: str | None, methods: list[str] | None):
    from .throughput import throughput_suite
    return throughput_suite(out, data_dir, methods or ["simclr"])


SUITES: dict[str, Suite] = {
    "smoke": Suite("SimCLR on synthetic data, a minute on 2 CPU cores (used by the tests)", _smoke),
    "fmnist-quick": Suite("Fashion-MNIST 60k/10k, ResNet-18 width 16, batch 256, 5 epochs: kNN, linear, baselines",
                          _fmnist_quick),
    "ablations": Suite("fmnist-quick runs with one setting changed: BYOL's predictor and target, SimSiam's "
                       "stop-gradient, SwAV's multi-crop, DeepCluster's k, Barlow Twins' lambda", _ablations),
    "throughput": Suite("training images/s of --method M (or all): our engine vs the model-only ceiling "
                        "(and, for simclr, a plain PyTorch loop)", _throughput),
}


def run_suite(name: str, out: Path, data_dir: str | None = None, methods: list[str] | None = None):
    """Run suite ``name``; ``methods`` (registry names, or ["all"]) replaces the suite's own list."""
    from ..methods import METHODS, method_class

    if name not in SUITES:
        raise SelfSupError(f"unknown benchmark suite '{name}'; choose one of: {', '.join(SUITES)}")
    if methods == ["all"]:
        methods = list(METHODS)
    for method in methods or []:
        method_class(method)  # a clear error for an unknown name, before any work
    ensure_writable_dir(out)
    return SUITES[name].run(out, data_dir, methods)

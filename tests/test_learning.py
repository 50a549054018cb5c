"""Every registered method learns from real data: a short, seeded run on a slice of
Fashion-MNIST must move its network beyond its own random initialisation on the measure
that fits it — kNN top-1 on the backbone features for representation methods, test top-1 for
the methods that train a classifier — by a margin well above the run-to-run noise of this
budget.  A method whose loss is wired wrong, whose gradients never arrive or whose targets
carry no signal fails here.  Slow (about ten seconds a method on 2 cores): marked ``slow``, and
run in CI (``scripts/test.sh`` installs the data set)."""
import copy
import functools
import os
import time
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import yaml

from selfsup.bench import FMNIST_QUICK_TUNED
from selfsup.config import merge, resolve
from selfsup.data.views import make_views
from selfsup.engine.checkpoint import load_pretrained
from selfsup.engine.module import build_method, run_normalization
from selfsup.engine.train import load_datasets, pretrain
from selfsup.eval.features import classifier_top1, method_features
from selfsup.methods import METHODS

FMNIST = Path("/usr/share/datasets/fashion-mnist")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not (FMNIST / "train-images-idx3-ubyte.gz").exists() and not os.environ.get("CI"),
    reason="needs Fashion-MNIST (apt-get install dataset-fashion-mnist; scripts/test.sh installs it)")]

# 4,000 training images, ResNet-18 of width 16 with the ImageNet stem (a 7 px map after it: a
# tenth of the small stem's cost), fp32, 8 epochs of 31 steps with one of warm-up.  The bank of
# the final kNN and probe is the same 4,000 labelled images; the queries are the full test split.
BUDGET = {"dataset": "fashion-mnist", "subset": 4000, "epochs": 8, "batch_size": 128,
          "backbone": {"name": "resnet18", "width": 16, "small_stem": False},
          "knn": {"every_n_epochs": 0, "k": 20}, "schedule": {"warmup_epochs": 1},
          "trainer": {"progress_bar": False, "precision": "32-true"}}
# Beyond the fmnist-quick settings, what a method needs to show learning at this budget.
SEMI = {"params": {"labels_per_class": 25, "ema": 0.9}}  # an EMA that forgets the initial weights in 250 steps
LEARNING = {
    "cpc": {"epochs": 1},  # 49 patch encodings per image: a step costs about 8 of the others'
    **{name: SEMI for name in ("supervised-only", "pseudo-label", "self-training", "fixmatch", "frost")},
}
PROBE_EPOCHS = 100
# Methods whose backbone features, at any budget a test can afford, stay at or below their
# random initialisation's kNN and linear probe (measured at this budget, 2026-12-02: BYOL −6.7 /
# −6.2 points, Barlow Twins −0.3 / +0.7, counting −14.5 / −14.0, the context encoder +0.5 / −0.2,
# DARe −0.6 / −2.9, SimSiam −1.0 / −5.0; CPC on images +1.3 / +1.7 and costs 49 patch encodings an
# image; in benchmarks/fmnist-quick, 1,170 steps, counting is still 1.6 kNN points below): for them
# the measure that fits is their own objective on images they never trained on, which must fall
# by OBJECTIVE_MARGIN of its value at initialisation without the features collapsing (measured:
# it fell by 48% (DARe) to 99% (counting)).  CPC on series has its own test below.
OBJECTIVE = {"byol", "barlow-twins", "count", "context-encoder", "cpc", "dare", "simsiam"}
# Not yet shown to learn at this budget by either measure (measured 2026-12-02): MoCo v1 +1.8
# kNN, MoCo v2 +0.5 (their held-out loss depends on the queue, which differs between a trained and
# an initial network), relative patch +1.7; SwAV −7.0 kNN and its held-out loss fell 6.5%, in ten
# minutes of training.  Strict: the test errors once they pass, so the list cannot go stale.
NOT_YET = {"moco-v1": "+1.8 kNN points", "moco-v2": "+0.5 kNN points", "relative-patch": "+1.7 kNN points",
           "swav": "-7.0 kNN points"}
OBJECTIVE_MARGIN = 0.1
# The least gain over the random-initialised network that counts as learning (fractions).
MARGIN = 0.02
CLASSIFIER_MARGIN = 0.3  # test top-1 of a trained classifier against its random initialisation (about 0.1)


def budget(method: str) -> dict:
    cfg = merge(merge(resolve(method), copy.deepcopy(BUDGET)), FMNIST_QUICK_TUNED.get(method, {}))
    return merge(cfg, LEARNING.get(method, {}), strict=False)


def learning_run(method: str, out: Path) -> dict:
    """Train ``method`` on the budget; returns the measure, its random-init value and the seconds."""
    start = time.perf_counter()
    metrics = pretrain(budget(method), out, baselines=True, probe_epochs=PROBE_EPOCHS)
    seconds = time.perf_counter() - start
    if "test_top1" in metrics:  # a classifier: its test top-1 against the same network at its initialisation
        resolved = yaml.safe_load((out / "config.yaml").read_text())
        L.seed_everything(resolved["seed"], verbose=False)
        random_method = build_method(resolved)
        _, _, test = load_datasets(resolved)
        random_top1 = classifier_top1(random_method, random_method.predict, test, run_normalization(resolved))
        return {"measure": "test_top1", "trained": metrics["test_top1"], "random_init": random_top1,
                "seconds": seconds, "margin": CLASSIFIER_MARGIN}
    base = metrics["baselines"]
    gains = {"knn_top1": metrics["knn_top1"] - base["random_init_knn_top1"],
             "linear_top1": metrics["linear_top1"] - base["random_init_linear_top1"]}
    measure = max(gains, key=gains.get)
    return {"measure": measure, "trained": metrics[measure], "random_init": base[f"random_init_{measure}"],
            "gains": gains, "seconds": seconds, "margin": MARGIN}


def heldout_objective(method, dataset, norm, seed: int = 0, images: int = 256) -> float:
    """The method's own loss on the first ``images`` of ``dataset`` (images it never trained
    on), with views from a fixed seed, BatchNorm on batch statistics as in training, on a copy
    (queues, banks and counters of the method stay as they were)."""
    method = copy.deepcopy(method).train()
    method.generator = torch.Generator().manual_seed(seed)
    batch = dataset.__getitems__(list(range(images)))
    make = functools.partial(make_views, norm=norm, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return float(method.training_step(method.prepare_batch(batch, make), 0)["loss"])


def objective_run(method: str, out: Path) -> dict:
    """Train ``method`` on the budget (no final evaluation); its held-out objective after training
    and at its random initialisation, and the spread of its features on 1,000 test images (the
    mean per-dimension std of the L2-normalised features: near 0 when they collapse)."""
    start = time.perf_counter()
    pretrain(merge(budget(method), {"knn": {"final": False}}), out)
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    _, _, test = load_datasets(resolved)
    norm = run_normalization(resolved)
    trained = load_pretrained(out / "checkpoints" / "last.ckpt").method
    L.seed_everything(resolved["seed"], verbose=False)
    result = {"seconds": time.perf_counter() - start}
    for name, network in (("trained", trained), ("random_init", build_method(resolved))):
        result[f"objective_{name}"] = heldout_objective(network, test, norm)
        features, _ = method_features(network.eval(), test.subset(np.arange(1000)), norm)
        result[f"spread_{name}"] = float(torch.nn.functional.normalize(features, dim=1).std(0).mean())
    return result


@pytest.mark.parametrize("method", [pytest.param(name, marks=pytest.mark.xfail(
    strict=True, run=name != "swav", reason=f"not yet shown to learn at the test budget ({NOT_YET[name]})"))
    if name in NOT_YET else name for name in sorted(METHODS) if not METHODS[name].colour_only and name not in OBJECTIVE])
def test_every_method_moves_its_network_beyond_its_random_initialisation(method, tmp_path):
    result = learning_run(method, tmp_path / method)
    assert result["trained"] >= result["random_init"] + result["margin"], (
        f"{method}: {result['measure']} {result['trained']:.4f} after training against {result['random_init']:.4f} at "
        f"its random initialisation (needs +{result['margin']})")


@pytest.mark.parametrize("method", sorted(OBJECTIVE))
def test_slow_starters_learn_their_objective_on_unseen_images_without_collapsing(method, tmp_path):
    result = objective_run(method, tmp_path / method)
    assert result["objective_trained"] <= result["objective_random_init"] - OBJECTIVE_MARGIN * abs(
        result["objective_random_init"]), (f"{method}: held-out loss {result['objective_trained']:.4f} after training "
                                           f"against {result['objective_random_init']:.4f} at its random initialisation")
    assert result["spread_trained"] >= 0.5 * result["spread_random_init"], f"{method}: its features collapsed"


def test_cpc_on_a_real_series_problem_beats_its_random_initialisation(tmp_path):
    # GunPoint (UCR, shipped inside aeon): 50 training series of 150 steps; the series-ssl suite's
    # settings, a third of its 300 epochs
    pytest.importorskip("aeon")
    cfg = merge(resolve("cpc"), {"dataset": "gunpoint", "epochs": 100, "batch_size": 16, "optimizer": {"lr": 0.001},
                                 "backbone": {"name": "conv1d", "width": 32}, "knn": {"k": 5, "every_n_epochs": 0},
                                 "trainer": {"progress_bar": False}})
    metrics = pretrain(cfg, tmp_path / "gunpoint", baselines=True, probe_epochs=PROBE_EPOCHS)
    gain = max(metrics["knn_top1"] - metrics["baselines"]["random_init_knn_top1"],
               metrics["linear_top1"] - metrics["baselines"]["random_init_linear_top1"])
    assert gain >= MARGIN, f"CPC on GunPoint: {metrics['knn_top1']:.3f} kNN / {metrics['linear_top1']:.3f} linear " \
                           f"against {metrics['baselines']}"

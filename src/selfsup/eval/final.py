"""The final evaluation of a pretraining run, which ``pretrain`` and the suites call: kNN and
linear-probe top-1 of the trained features (per stage too), and the same on raw and standardised
pixels and on the network at its random initialisation (the baselines)."""
from __future__ import annotations

from pathlib import Path

import lightning as L
import torch

from ..build import build_method, run_normalization
from ..data.views import Normalization
from ..io import cached_json, content_hash
from .baselines import pixel_features, raw_pixel_knn
from .features import evaluated_network, method_features
from .knn import knn_top1
from .linear import linear_probe, train_linear_probe


def knn_and_probe(method, cfg: dict, bank, test, norm: Normalization, probe_epochs: int = 0, layers: bool = False,
                  device="cpu", channels_last: bool = False, progress: bool = False) -> dict:
    """kNN top-1 (``cfg['knn']``'s k and T) of ``method.features`` and, with ``probe_epochs``,
    the linear probe's (``layers``: also one per stage, ``linear_layers``), from as few
    embeddings of ``bank`` and ``test`` as possible: one, when the last stage of
    ``feature_layers`` is ``features`` itself (checked bit for bit on a few images)."""
    common = dict(device=device, channels_last=channels_last, progress=progress)
    stages = layers and probe_epochs
    bank_x = test_x = None
    if stages:
        bank_layers, bank_y = method_features(method, bank, norm, layers=True, desc="bank stages", **common)
        test_layers, test_y = method_features(method, test, norm, layers=True, desc="test stages", **common)
        few = bank.subset(range(min(8, len(bank))))
        if torch.equal(method_features(method, few, norm, **common)[0],
                       method_features(method, few, norm, layers=True, **common)[0][-1]):
            bank_x, test_x = bank_layers[-1], test_layers[-1]
    if bank_x is None:
        bank_x, bank_y = method_features(method, bank, norm, desc="bank features", **common)
        test_x, test_y = method_features(method, test, norm, desc="test features", **common)
    classes, probe = cfg["data"]["num_classes"], dict(epochs=probe_epochs, seed=cfg["seed"])
    scores = {"knn_top1": knn_top1(bank_x, bank_y, test_x, test_y, classes, cfg["knn"]["k"], cfg["knn"]["temperature"])}
    if probe_epochs:
        scores["linear_top1"] = train_linear_probe(bank_x, bank_y, test_x, test_y, classes, **probe)["test_top1"]
    if stages:
        scores["linear_layers"] = {name: train_linear_probe(tr, bank_y, te, test_y, classes, **probe)["test_top1"]
                                   for name, tr, te in zip(method.layer_names, bank_layers, test_layers)}
    return scores


def layer_probes(method, cfg: dict, bank, test, probe_epochs: int, device="cpu", channels_last: bool = False) -> dict:
    """Test top-1 of a linear probe on each stage's pooled features ({"conv1": ..., ...})."""
    probes = linear_probe(method, bank, test, run_normalization(cfg), cfg["data"]["num_classes"], layers=True,
                          device=device, channels_last=channels_last, epochs=probe_epochs, seed=cfg["seed"])
    return {name: probe["test_top1"] for name, probe in probes.items()}


def run_baselines(cfg: dict, bank, test, probe_epochs: int = 0, layers: bool = False,
                  cache: Path | None = None) -> dict:
    """kNN on raw pixel values in [0, 1], on pixels standardised with the dataset's mean and
    std (what the network sees; centring changes cosine similarity), and on the same
    backbone at its random initialisation; with ``probe_epochs``, the linear probe on the
    standardised pixels and on the random-init backbone too (``layers``: per stage).  With
    ``cache`` (a folder), the result is kept there under a hash of all it follows from (the
    random-init network, data, settings), so a suite's runs of one network compute it once."""
    norm = run_normalization(cfg)
    identity = Normalization((0.0,) * len(norm.mean), (1.0,) * len(norm.std))
    k, temperature = cfg["knn"]["k"], cfg["knn"]["temperature"]
    L.seed_everything(cfg["seed"], verbose=False)
    random_method = build_method(cfg)
    where, backbone = evaluated_network(random_method)
    key = content_hash([where, probe_epochs, layers, k, temperature, cfg["seed"], list(norm.mean), list(norm.std)],
                       backbone, *bank.content_key(), *test.content_key()) if cache is not None else ""
    return cached_json(cache, key, lambda: _baselines(cfg, random_method, bank, test, norm, identity, probe_epochs,
                                                      layers))


def _baselines(cfg: dict, random_method, bank, test, norm, identity, probe_epochs: int, layers: bool) -> dict:
    k, temperature, classes = cfg["knn"]["k"], cfg["knn"]["temperature"], cfg["data"]["num_classes"]
    random_init = knn_and_probe(random_method, cfg, bank, test, norm, probe_epochs, layers)
    result = {
        "raw_pixels_knn_top1": raw_pixel_knn(bank, test, identity, classes, k, temperature),
        "standardized_pixels_knn_top1": raw_pixel_knn(bank, test, norm, classes, k, temperature),
        "random_init_knn_top1": random_init["knn_top1"],
    }
    if probe_epochs:
        pixels = [pixel_features(split, norm) for split in (bank, test)]
        result["standardized_pixels_linear_top1"] = train_linear_probe(
            *pixels[0], *pixels[1], classes, epochs=probe_epochs, seed=cfg["seed"])["test_top1"]
        result["random_init_linear_top1"] = random_init["linear_top1"]
    if probe_epochs and layers:
        result["random_init_linear_layers"] = random_init["linear_layers"]
    return result

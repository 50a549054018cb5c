"""Collapse diagnostics against hand-computed values and brute-force formulas, and the
`evaluate diagnostics` command."""
import json
import math

import numpy as np
import pytest
import torch

from selfsup.build import load_pretrained
from selfsup.cli import main
from selfsup.data.datasets import balanced_subset_indices
from selfsup.engine.train import load_datasets
from selfsup.eval.diagnostics import (alignment, effective_rank, embedding_diagnostics, normalized_std, rankme,
                                     uniformity)
from selfsup.eval.features import method_features

AXES = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])


def test_normalized_std_hand_computed_and_collapse():
    # each dimension holds 1, -1, 0, 0: mean 0, unbiased variance 2/3
    assert normalized_std(AXES * 5) == pytest.approx(math.sqrt(2 / 3))
    assert normalized_std(torch.ones(10, 4) * 3) == pytest.approx(0.0)
    spread = normalized_std(torch.randn(20000, 64))
    assert spread == pytest.approx(1 / math.sqrt(64), rel=0.02)


def test_effective_rank_from_isotropic_to_one_direction():
    assert effective_rank(AXES * 3 + 1) == pytest.approx(2.0)  # centred inside: the shift does not matter
    line = torch.linspace(-1, 1, 50)[:, None] * torch.tensor([[1.0, 2.0, -1.0]])
    assert effective_rank(line) == pytest.approx(1.0, abs=1e-6)
    # covariance eigenvalues 4 and 1 (dimensions scaled 2 and 1): p = (0.8, 0.2)
    expected = math.exp(-(0.8 * math.log(0.8) + 0.2 * math.log(0.2)))
    assert effective_rank(AXES * torch.tensor([2.0, 1.0])) == pytest.approx(expected)


def test_rankme_against_hand_computed_singular_values():
    # rows (3, 0), (0, 1): singular values 3 and 1, p = (0.75 + ε, 0.25 + ε); uncentred, unlike effective_rank
    p = [0.75 + 1e-7, 0.25 + 1e-7]
    assert rankme(torch.tensor([[3.0, 0.0], [0.0, 1.0]])) == pytest.approx(math.exp(-sum(q * math.log(q) for q in p)))
    assert rankme(torch.ones(10, 4)) == pytest.approx(1.0, abs=1e-5)  # collapsed: one direction
    q = torch.linalg.qr(torch.randn(64, 64, dtype=torch.float64))[0]
    assert rankme(q) == pytest.approx(64.0, rel=1e-4)  # an orthogonal matrix: every direction used equally


def test_alignment_and_uniformity_hand_computed():
    a = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    assert alignment(a, a * 2) == pytest.approx(0.0)
    assert alignment(a, -a) == pytest.approx(4.0)  # antipodal pairs: squared distance 4
    assert uniformity(torch.tensor([[1.0, 0.0], [-2.0, 0.0]])) == pytest.approx(-8.0)


def test_uniformity_matches_a_double_loop():
    x = torch.randn(7, 3, dtype=torch.float64)
    unit = x / x.norm(dim=1, keepdim=True)
    terms = [math.exp(-2 * (unit[i] - unit[j]).pow(2).sum().item()) for i in range(7) for j in range(i + 1, 7)]
    assert uniformity(x) == pytest.approx(math.log(sum(terms) / len(terms)))


def test_evaluate_diagnostics_command(capsys, tmp_path, simclr_run):
    out = simclr_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"normalized_std", "effective_rank", "rankme", "alignment", "uniformity"} <= set(metrics["diagnostics"])
    assert {"effective_rank", "rankme"} <= set(metrics["knn_history"][-1])  # each monitored epoch
    capsys.readouterr()
    assert main(["evaluate", "diagnostics", "--checkpoint", str(out / "checkpoints" / "last.ckpt"),
                 "--images", "100"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["images"] == 100 and 1 <= result["effective_rank"] <= result["feature_dim"]
    assert 1 <= result["rankme"] <= min(100, result["feature_dim"]) + 1e-3
    assert 0 < result["normalized_std"] <= 1 and 0 <= result["alignment"] <= 4 and -4 <= result["uniformity"] <= 0
    assert json.loads((out / "eval_diagnostics.json").read_text())["effective_rank"] == result["effective_rank"]
    # the same figures from the library call on the seeded, class-balanced 100 test images
    module = load_pretrained(str(out / "checkpoints" / "last.ckpt"))
    _, _, test = load_datasets(module.cfg)
    seed = module.cfg["seed"]
    images = test.subset(balanced_subset_indices(test.labels.numpy(), 100, seed))
    expected = embedding_diagnostics(module.method, images, module.norm, seed=seed)
    for name in ("normalized_std", "effective_rank", "rankme", "alignment", "uniformity"):
        assert result[name] == pytest.approx(expected[name], rel=1e-5), name


def test_diagnostics_take_the_callers_clean_features_instead_of_embedding_them_again(tiny_simclr_run):
    module = load_pretrained(str(tiny_simclr_run / "checkpoints" / "last.ckpt"))
    method, (_, _, test) = module.method, load_datasets(module.cfg)
    images = test.subset(np.arange(100))
    clean, _ = method_features(method, images, module.norm)
    embedded, features = [], method.features
    method.features = lambda x: embedded.append(len(x)) or features(x)
    own = embedding_diagnostics(method, images, module.norm)
    calls = len(embedded)
    given = embedding_diagnostics(method, images, module.norm, clean=clean)
    assert sum(embedded[:calls]) == 300 and sum(embedded[calls:]) == 200  # the clean images only once
    assert given == pytest.approx(own, rel=1e-5)
    assert given["alignment"] > 0 and own["uniformity"] != embedding_diagnostics(
        method, images, module.norm, clean=clean.flip(1).exp())["uniformity"]  # the given features are used

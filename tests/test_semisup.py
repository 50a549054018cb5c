"""Semi-supervised learning: labelled subsets, mixed batches, FixMatch's strong view, the
`selfsup semisup` command (tiny runs beat chance), --init and its errors."""
import json

import numpy as np
import pytest
import torch

from selfsup.cli import main
from selfsup.data.randaugment import OPERATIONS, cutout, rand_augment
from selfsup.data.samplers import LabelledUnlabelledBatchSampler
from selfsup.methods.semisup import labelled_indices

SEMI = ["--dataset", "synthetic", "--width", "8", "--batch-size", "16", "--labels-per-class", "10",
        "--set", "trainer.progress_bar=false", "--set", "knn.k=20", "--set", "params.unlabelled_ratio=2",
        "--set", "params.ema=0.9", "--set", "optimizer.lr=0.05"]


def test_labelled_indices_per_class_and_seeded():
    labels = np.repeat(np.arange(3), 20)
    a = labelled_indices(labels, 4, seed=0)
    assert np.bincount(labels[a.numpy()]).tolist() == [4, 4, 4]
    assert torch.equal(a, labelled_indices(labels, 4, seed=0))
    assert not torch.equal(a, labelled_indices(labels, 4, seed=1))


def test_mixed_batches_start_with_labelled_images_and_pass_over_the_pool():
    labelled = torch.tensor([3, 7, 11])
    sampler = LabelledUnlabelledBatchSampler(labelled, pool_size=40, labelled_batch=2, unlabelled_ratio=4, seed=0)
    batches = list(sampler)
    assert len(batches) == 5 and all(len(b) == 10 for b in batches)
    assert all(set(b[:2]) <= {3, 7, 11} for b in batches)
    unlabelled = [i for b in batches for i in b[2:]]
    assert len(set(unlabelled)) == 40  # one pass over the pool, no repeats


def test_strong_view_stays_in_range_and_changes_every_image():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(32, 3, 16, 16)
    for name, op in OPERATIONS.items():
        y = op(x, torch.rand(32))
        assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1 + 1e-6, name
    y = rand_augment(x, g)
    assert y.min() >= 0 and y.max() <= 1 and ((y - x).abs().flatten(1).max(1).values > 0).all()
    assert torch.equal(rand_augment(x, torch.Generator().manual_seed(5)), rand_augment(x, torch.Generator().manual_seed(5)))
    # posterize at magnitude 0 keeps 4 bits: multiples of 16/255
    assert torch.allclose((OPERATIONS["posterize"](x, torch.zeros(32)) * 255 / 16).frac(), torch.zeros(1), atol=1e-4)
    cut = cutout(torch.zeros(4, 1, 16, 16), 0.5, torch.Generator().manual_seed(0))
    assert ((cut == 0.5).flatten(1).sum(1) <= 8 * 8 + 2 * 9).all() and (cut == 0.5).any()


@pytest.mark.parametrize("method", ["supervised-only", "pseudo-label", "fixmatch"])
def test_tiny_semisup_run_beats_chance(method, tmp_path, capsys):
    out = tmp_path / method
    assert main(["semisup", "--method", method, "--epochs", "6", "--out", str(out)] + SEMI) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_top1"] > 1 / 6 + 0.15  # 6 classes
    assert "classifier test top-1" in capsys.readouterr().out
    if method != "supervised-only":
        history = metrics["epoch_history"][-1]
        counted = sum(history[f"pseudo_labels_class_{c}"] for c in range(6))
        assert counted == pytest.approx(history["pseudo_label_rate"] * 16 * 2 * 512 // 32)


def test_init_starts_from_a_pretrained_backbone_and_refuses_another_input(tmp_path, capsys):
    from conftest import TINY

    from selfsup.config import resolve
    from selfsup.engine.checkpoint import read_checkpoint
    from selfsup.engine.module import build_method
    from selfsup.engine.train import load_datasets

    assert main(["pretrain", "--method", "simclr", "--epochs", "1", "--out", str(tmp_path / "simclr")] + TINY) == 0
    ckpt = tmp_path / "simclr" / "checkpoints" / "last.ckpt"
    cfg = resolve("fixmatch", None, {"dataset": "synthetic", "backbone": {"width": 8, "init": str(ckpt)},
                                     "batch_size": 16})
    load_datasets(cfg)
    method = build_method(cfg)
    saved = read_checkpoint(ckpt)[0]["state_dict"]
    assert torch.equal(method.backbone.conv1.weight, saved["method.backbone.conv1.weight"])
    assert torch.equal(method.ema_backbone.conv1.weight, saved["method.backbone.conv1.weight"])
    out = tmp_path / "grey"
    code = main(["semisup", "--method", "fixmatch", "--init", str(ckpt), "--out", str(out)] + SEMI +
                ["--set", "data.channels=1"])
    err = capsys.readouterr().err
    assert code == 2 and "does not fit this run's" in err and not out.exists()

"""Every dataset serves whole batches (``__getitems__``) and a content key, so that every
protocol and every method's own batches work on image folders as on in-memory splits; what
cannot work is one clear message."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from selfsup.cli import main
from selfsup.data.datasets import batch_loader, load_split
from selfsup.data.samplers import LabelledUnlabelledBatchSampler, ShuffleBatchSampler
from selfsup.errors import SelfSupError

QUICK = ["--batch-size", "8", "--width", "8", "--epochs", "1", "--set", "trainer.progress_bar=false",
         "--set", "knn.k=5", "--set", "data.image_size=16"]


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """train/ and test/ with two classes of 16 noisy 12x12 colour images each: red and blue."""
    root = tmp_path_factory.mktemp("folder")
    generator = np.random.default_rng(0)
    for split in ("train", "test"):
        for label, channel in enumerate((0, 2)):
            folder = root / split / f"class_{label}"
            folder.mkdir(parents=True)
            for i in range(16):
                pixels = generator.integers(0, 80, (12, 12, 3), dtype=np.uint8)
                pixels[..., channel] += 160
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def test_an_image_folder_serves_batches_as_in_memory_splits_do(image_folder):
    folder = load_split("imagefolder", "train", str(image_folder), options={"image_size": 16})
    memory = load_split("synthetic", "train", options={"synthetic_size": 64})
    for dataset in (folder, memory):
        batch = dataset.__getitems__([3, 0, 17])
        assert batch["image"].shape[0] == 3 and batch["image"].dtype == torch.uint8
        assert batch["index"].tolist() == [3, 0, 17] and batch["label"].shape == (3,)
    torch.testing.assert_close(folder.__getitems__([5])["image"][0], folder[5]["image"])
    # workers only where files are decoded; the batches are the same either way
    assert batch_loader(folder, ShuffleBatchSampler(len(folder), 8, 0), num_workers=1).num_workers == 1
    assert batch_loader(memory, ShuffleBatchSampler(len(memory), 8, 0), num_workers=1).num_workers == 0
    loaders = [batch_loader(folder, ShuffleBatchSampler(len(folder), 8, 0), num_workers=w) for w in (0, 1)]
    for loader in loaders:
        loader.batch_sampler.set_epoch(0)
    first = [next(iter(loader)) for loader in loaders]
    assert torch.equal(first[0]["image"], first[1]["image"])


def test_semisup_trains_on_an_image_folder(image_folder, tmp_path):
    out = tmp_path / "fixmatch"
    assert main(["semisup", "--method", "fixmatch", "--dataset", "imagefolder", "--data-dir", str(image_folder),
                 *QUICK, "--set", "params.labels_per_class=2", "--set", "params.unlabelled_ratio=2",
                 "--set", "params.ema=0.5", "--epochs", "8",  # an EMA that forgets the initial network in 32 steps
                 "--set", "data.num_workers=1", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_images"] == 32
    assert metrics["test_top1"] >= 0.9  # red against blue (1.0 measured): far above the 0.5 of a guess


def test_baseline_cache_works_on_an_image_folder(image_folder, tmp_path):
    run = tmp_path / "simclr"
    assert main(["pretrain", "--method", "simclr", "--dataset", "imagefolder", "--data-dir", str(image_folder), *QUICK,
                 "--set", "knn.every_n_epochs=0", "--out", str(run)]) == 0
    cache = tmp_path / "cache"
    for name in ("a", "b"):
        assert main(["evaluate", "finetune", "--checkpoint", str(run / "checkpoints" / "last.ckpt"), "--epochs", "1",
                     "--labels-per-class", "4", "--baseline-cache", str(cache), "--output", str(tmp_path / name)]) == 0
    results = [json.loads((tmp_path / name).read_text()) for name in ("a", "b")]
    assert len(list(cache.glob("*.json"))) == 1  # the from-scratch run, made once
    assert results[0]["scratch_top1"] == results[1]["scratch_top1"]
    assert results[0]["scratch_cache"] == results[1]["scratch_cache"]


def test_a_semisup_step_larger_than_the_pool_is_one_clear_message():
    with pytest.raises(SelfSupError, match="lower --batch-size or params.unlabelled_ratio"):
        LabelledUnlabelledBatchSampler(torch.arange(4), pool_size=40, labelled_batch=8, unlabelled_ratio=7, seed=0)

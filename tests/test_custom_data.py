"""A user's own image folder: unreadable files skipped with a count, the normalisation measured
from the data, multi-channel arrays (.npy, .tif), --subset, and a run on such a folder."""
import io
import json
import warnings

import numpy as np
import pytest
import tifffile
import torch
import yaml
from PIL import Image

from selfsup import load_backbone
from selfsup.cli import main
from selfsup.data.datasets import load_split, normalization_for
from selfsup.data.files import measure_normalization
from selfsup.errors import SelfSupError

RUN = ["--epochs", "1", "--batch-size", "4", "--width", "8", "--set", "trainer.progress_bar=false",
       "--set", "knn.k=3", "--set", "knn.monitor_train_size=0", "--set", "knn.monitor_test_size=0"]


def pretrain_on_folder(tmp_path, method: str = "simclr"):
    """A one-epoch run of ``method`` on the image folder ``tmp_path/data``: (run directory, its config)."""
    out = tmp_path / "run"
    assert main(["pretrain", "--method", method, "--dataset", "imagefolder", "--data-dir", str(tmp_path / "data"),
                 "--out", str(out), "--set", "data.image_size=16", *RUN]) == 0
    return out, yaml.safe_load((out / "config.yaml").read_text())


def coloured_folder(root, colours=((255, 0, 0), (0, 0, 255)), per_class=4, size=(20, 14)):
    for split in ("train", "test"):
        for label, colour in enumerate(colours):
            folder = root / split / f"class_{label}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", size, colour).save(folder / f"{i}.png")
    return root


def test_unreadable_files_are_skipped_and_counted(tmp_path, capsys):
    for i in range(5):
        Image.new("RGB", (12, 12), (40 * i, 0, 0)).save(tmp_path / f"{i}.png")
    (tmp_path / "noise.png").write_bytes(b"not an image at all")
    (tmp_path / "empty.jpg").write_bytes(b"")
    good = io.BytesIO()
    Image.new("RGB", (12, 12), "white").save(good, format="PNG")
    (tmp_path / "cut.png").write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    train = load_split("imagefolder", "train", str(tmp_path), options={"image_size": 8})
    assert len(train) == 5 and len(train.skipped) == 3
    assert sorted(path.name for path, _ in train.skipped) == ["cut.png", "empty.jpg", "noise.png"]
    err = capsys.readouterr().err
    assert "skipped 3 of 8 files" in err and "noise.png" in err
    batch = train.__getitems__([0, 1, 2, 3, 4])
    assert batch["image"].shape == (5, 3, 8, 8) and batch["image"].dtype == torch.uint8


def test_images_beside_class_folders_are_left_out_with_a_note(tmp_path, capsys):
    for name in ("cats", "dogs"):
        (tmp_path / name / "deep").mkdir(parents=True)
        Image.new("RGB", (12, 12), "red").save(tmp_path / name / "deep" / "0.png")
    Image.new("RGB", (12, 12), "blue").save(tmp_path / "stray.png")
    train = load_split("imagefolder", "train", str(tmp_path), options={"image_size": 8})
    assert len(train) == 2 and train.num_classes == 2  # one image at any depth in each class folder
    assert "1 images lie beside its class folders (cats, dogs)" in capsys.readouterr().err


def test_a_file_that_fails_to_decode_mid_epoch_is_replaced_with_a_warning(tmp_path):
    Image.new("RGB", (40, 40), "red").save(tmp_path / "a.jpg")
    Image.new("RGB", (40, 40), "blue").save(tmp_path / "b.jpg")
    data = (tmp_path / "a.jpg").read_bytes()
    train = load_split("imagefolder", "train", str(tmp_path), options={"image_size": 8})
    (tmp_path / "a.jpg").write_bytes(data[: len(data) // 3])  # truncated after the listing checked it
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        item = train[0]
    assert any("cannot decode image" in str(w.message) and "a.jpg" in str(w.message) for w in caught)
    assert item["index"].item() == 0 and item["image"][2].float().mean() > 200  # b.jpg, blue, in its place


def test_normalisation_is_measured_from_the_training_images(tmp_path):
    coloured_folder(tmp_path)
    train = load_split("imagefolder", "train", str(tmp_path), options={"image_size": 8})
    norm = normalization_for("imagefolder", 3, train)
    assert norm.mean == pytest.approx((0.5, 0.0, 0.5), abs=1e-4)
    assert norm.std == pytest.approx((0.5, 0.001, 0.5), abs=1e-4)  # a constant channel's std is floored
    with pytest.raises(SelfSupError, match="measured from its training split"):
        normalization_for("imagefolder", 3)


def test_a_run_on_an_image_folder_records_the_measured_normalisation_and_evaluates_with_it(tmp_path):
    coloured_folder(tmp_path / "data")
    out, cfg = pretrain_on_folder(tmp_path)
    assert cfg["data"]["mean"] == pytest.approx([0.5, 0.0, 0.5], abs=1e-4)
    assert json.loads((out / "metrics.json").read_text())["knn_top1"] == 1.0  # red against blue
    assert main(["evaluate", "knn", "--checkpoint", str(out / "checkpoints" / "last.ckpt"), "--k", "3",
                 "--no-baselines"]) == 0
    assert json.loads((out / "eval_knn.json").read_text())["top1"] == 1.0


def multispectral_folder(root, bands=13, per_class=3):
    """[H, W, bands] uint16 .npy stacks (class 1 bright in band 5) in train/ and test/, one .tif each."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for label in (0, 1):
            folder = root / split / f"class_{label}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                stack = rng.integers(0, 20000, size=(18, 18, bands), dtype=np.uint16)
                stack[..., 5] = 60000 if label else 1000
                if i == 0:
                    tifffile.imwrite(folder / f"{i}.tif", np.moveaxis(stack, -1, 0))  # [C, H, W] pages
                else:
                    np.save(folder / f"{i}.npy", stack)
    return root


def test_multichannel_arrays_load_as_float_images_and_odd_ones_are_skipped(tmp_path, capsys):
    multispectral_folder(tmp_path)
    np.save(tmp_path / "train" / "class_0" / "rgb.npy", np.zeros((18, 18, 3), dtype=np.uint8))
    train = load_split("imagefolder", "train", str(tmp_path), options={"image_size": 12})
    assert len(train) == 6 and train.channels == 13 and train.floating
    assert "rgb.npy: 3 channels, where the folder's images have 13" in capsys.readouterr().err
    item = train[3]  # class 1
    assert item["image"].shape == (13, 12, 12) and item["image"].dtype == torch.float32
    assert item["image"][5].mean().item() == pytest.approx(60000 / 65535, abs=1e-3)
    assert item["label"].item() == 1
    mean, std = measure_normalization(train)
    assert len(mean) == 13 and mean[5] == pytest.approx((60000 + 1000) / 2 / 65535, abs=1e-3)
    subset = load_split("imagefolder", "train", str(tmp_path), subset=4, seed=1, options={"image_size": 12})
    assert len(subset) == 4 and subset.labels.bincount().tolist() == [2, 2]


def test_the_exports_check_images_of_a_float_folder_are_its_clean_views(tmp_path):
    from selfsup.data.views import Normalization, clean_view
    from selfsup.export import _sample_inputs

    multispectral_folder(tmp_path)
    cfg = {"dataset": "imagefolder", "data_dir": str(tmp_path), "seed": 0, "data": {"image_size": 12}}
    norm = Normalization((0.5,) * 13, (0.25,) * 13)
    images, what = _sample_inputs(cfg, norm, 13, 12)
    test = load_split("imagefolder", "test", str(tmp_path), options={"image_size": 12})
    expected = clean_view(test.__getitems__(list(range(len(images))))["image"], norm)
    assert "test images of imagefolder" in what and torch.allclose(images, expected)  # values in [0, 1], not /255


def test_pretraining_on_multispectral_stacks(tmp_path):
    multispectral_folder(tmp_path / "data")
    out, cfg = pretrain_on_folder(tmp_path, "byol")
    assert cfg["data"]["channels"] == 13 and len(cfg["data"]["mean"]) == 13
    assert main(["evaluate", "knn", "--checkpoint", str(out / "checkpoints" / "last.ckpt"), "--k", "3"]) == 0
    knn = json.loads((out / "eval_knn.json").read_text())  # band 5 alone tells the classes apart: the 13 bands
    assert knn["baselines"]["pixels"] == 1.0 and knn["test_images"] == 6  # reached the run intact (one epoch of
    # six images leaves the network's own kNN at its random initialisation's, 0.33 here: nothing to hold it to)
    backbone = load_backbone(out)
    assert backbone(torch.zeros(2, 13, 16, 16)).shape == (2, backbone.feature_dim)
    assert main(["evaluate", "retrieval", "--checkpoint", str(out / "checkpoints" / "last.ckpt"), "--k", "1",
                 "--no-baselines"]) == 0  # the grid shows each stack's channel mean
    assert set(json.loads((out / "eval_retrieval.json").read_text())["precision_at_k"]) == {"1"}


def test_subset_of_an_unlabelled_folder(tmp_path):
    for i in range(10):
        Image.new("L", (10, 10), 20 * i).save(tmp_path / f"{i}.png")
    first = load_split("imagefolder", "train", str(tmp_path), subset=4, seed=0)
    again = load_split("imagefolder", "train", str(tmp_path), subset=4, seed=0)
    assert len(first) == 4 and first.files == again.files and (first.labels == -1).all()
    with pytest.raises(SelfSupError, match="--subset 11"):
        load_split("imagefolder", "train", str(tmp_path), subset=11)


def test_label_free_protocols_on_a_flat_unlabelled_folder(tmp_path, capsys):
    rng = np.random.default_rng(0)
    (tmp_path / "data").mkdir()
    for i in range(24):
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(tmp_path / "data" / f"{i}.png")
    out, _ = pretrain_on_folder(tmp_path)
    checkpoint = str(out / "checkpoints" / "last.ckpt")
    assert json.loads((out / "metrics.json").read_text())["knn_top1"] is None
    assert main(["evaluate", "diagnostics", "--checkpoint", checkpoint, "--images", "16"]) == 0
    assert main(["evaluate", "embedding", "--checkpoint", checkpoint, "--images", "20", "--projection", "tsne"]) == 0
    assert main(["evaluate", "retrieval", "--checkpoint", checkpoint]) == 0
    assert "the training images stand in for test images" in capsys.readouterr().err
    diagnostics = json.loads((out / "eval_diagnostics.json").read_text())
    assert diagnostics["images_from"] == "train" and diagnostics["images"] == 16
    assert (out / "embedding_tsne.png").stat().st_size > 0
    retrieval = json.loads((out / "eval_retrieval.json").read_text())
    assert "precision_at_k" not in retrieval and "grid of neighbours only" in retrieval["note"]
    assert (out / "retrieval.png").stat().st_size > 0
    assert main(["evaluate", "knn", "--checkpoint", checkpoint]) == 2  # kNN needs labels and a test split


def test_a_folder_of_unreadable_files_is_one_clear_error(tmp_path, capsys):
    (tmp_path / "a.png").write_bytes(b"not an image")
    (tmp_path / "b.npy").write_bytes(b"not an array")
    with pytest.raises(SelfSupError, match="holds no readable images \\(2 files skipped\\)"):
        load_split("imagefolder", "train", str(tmp_path))
    assert "skipped 2 of 2 files" in capsys.readouterr().err

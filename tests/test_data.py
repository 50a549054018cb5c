"""Dataset readers, tested on small files written here in each real on-disk format."""
import gzip
import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from selfsup.data.datasets import balanced_subset_indices, load_split
from selfsup.errors import SelfSupError


def write_idx(path, array):
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def mnist_dir(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in [("train", 30), ("t10k", 10)]:
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    return tmp_path


def test_idx_files_load_as_uint8_images_with_their_labels(mnist_dir):
    train = load_split("fashion-mnist", "train", str(mnist_dir))
    test = load_split("mnist", "test", str(mnist_dir))
    assert train.images.shape == (30, 1, 28, 28) and train.images.dtype == torch.uint8
    written = np.random.default_rng(0).integers(0, 256, (30, 28, 28))  # the fixture's first draw: row-major pixels
    assert torch.equal(train.images[:, 0], torch.from_numpy(written.astype(np.uint8)))
    assert test.labels.tolist() == list(range(10))
    batch = train.__getitems__([3, 5])
    assert batch["image"].shape == (2, 1, 28, 28) and batch["index"].tolist() == [3, 5]


def test_a_split_read_again_comes_from_memory_until_its_file_changes(mnist_dir):
    from selfsup.data import formats

    first = load_split("fashion-mnist", "train", str(mnist_dir))
    hits = formats._read_idx.cache_info().hits
    again = load_split("fashion-mnist", "train", str(mnist_dir))
    assert torch.equal(first.images, again.images) and formats._read_idx.cache_info().hits == hits + 2  # images, labels
    again.images[0] = 0  # each load has its own copy: changing it leaves the next load alone
    assert torch.equal(load_split("fashion-mnist", "train", str(mnist_dir)).images, first.images)
    images = np.full((30, 28, 28), 7)
    write_idx(mnist_dir / "train-images-idx3-ubyte.gz", images)
    assert (load_split("fashion-mnist", "train", str(mnist_dir)).images == 7).all()


def test_corrupt_idx_file_is_named(mnist_dir):
    (mnist_dir / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(SelfSupError, match="train-images-idx3-ubyte.gz"):
        load_split("fashion-mnist", "train", str(mnist_dir))


def test_cifar10_and_cifar100_pickles(tmp_path):
    rng = np.random.default_rng(0)
    c10 = tmp_path / "cifar-10-batches-py"
    c10.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
        with open(c10 / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": [0, 1, 2, 3]}, f)
    train = load_split("cifar10", "train", str(tmp_path))
    assert train.images.shape == (20, 3, 32, 32)
    # channel-major rows: the first 1024 bytes are the red plane
    with open(c10 / "data_batch_1", "rb") as f:
        first = pickle.load(f, encoding="bytes")[b"data"][0]
    assert torch.equal(train.images[0, 0].flatten(), torch.from_numpy(first[:1024]))
    with open(c10 / "data_batch_2", "rb") as f:  # the batches in order, each image with its label
        second = pickle.load(f, encoding="bytes")[b"data"][1]
    assert torch.equal(train.images[5].flatten(), torch.from_numpy(second)) and train.labels.tolist() == [0, 1, 2, 3] * 5

    c100 = tmp_path / "cifar-100-python"
    c100.mkdir()
    for name, n in [("train", 6), ("test", 3)]:
        with open(c100 / name, "wb") as f:
            pickle.dump({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         b"fine_labels": list(range(n)), b"coarse_labels": [0] * n}, f)
    test = load_split("cifar100", "test", str(c100))
    assert test.labels.tolist() == [0, 1, 2] and test.num_classes == 100  # the fine labels, not the coarse ones (all 0)


def test_stl10_binary_is_column_major(tmp_path):
    image = np.arange(3 * 96 * 96, dtype=np.uint32).reshape(3, 96, 96) % 251
    stored = image.transpose(0, 2, 1).astype(np.uint8)  # STL-10 stores each plane column by column
    for split, n in [("train", 2), ("test", 1), ("unlabeled", 3)]:
        np.concatenate([stored.ravel()] * n).tofile(tmp_path / f"{split}_X.bin")
        if split != "unlabeled":
            np.array([1, 10][:n], dtype=np.uint8).tofile(tmp_path / f"{split}_y.bin")
    train = load_split("stl10", "train", str(tmp_path))
    assert torch.equal(train.images[0], torch.from_numpy(image.astype(np.uint8)))
    assert train.labels.tolist() == [0, 9]
    both = load_split("stl10", "train+unlabeled", str(tmp_path))
    assert len(both) == 5 and both.labels.tolist()[-1] == -1


def test_image_folder_resizes_and_labels_by_sub_folder(tmp_path):
    for split in ("train", "val"):
        for label, colour in enumerate(["red", "blue"]):
            folder = tmp_path / split / f"class_{label}"
            folder.mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (40, 30), colour).save(folder / f"{i}.png")
    train = load_split("imagefolder", "train", str(tmp_path), options={"image_size": 24})
    test = load_split("imagefolder", "test", str(tmp_path), options={"image_size": 24})
    item = train[4]
    assert item["image"].shape == (3, 24, 24) and item["image"].dtype == torch.uint8
    assert item["label"].item() == 1 and item["image"][2].float().mean() > 200  # blue
    assert len(test) == 6


def test_flat_image_folder_is_unlabelled_and_lacks_a_test_split(tmp_path):
    for i in range(4):
        Image.new("L", (10, 10), 128).save(tmp_path / f"{i}.jpg")
    train = load_split("imagefolder", "train", str(tmp_path))
    assert (train.labels == -1).all()
    with pytest.raises(SelfSupError, match="no test/ or val/"):
        load_split("imagefolder", "test", str(tmp_path))


def test_digits_and_subset_balance():
    train = load_split("digits", "train", subset=100, seed=3)
    counts = np.bincount(train.labels.numpy(), minlength=10)
    assert len(train) == 100 and counts.max() - counts.min() <= 1
    again = load_split("digits", "train", subset=100, seed=3)
    assert torch.equal(train.images, again.images)
    other = load_split("digits", "train", subset=100, seed=4)
    assert not torch.equal(train.images, other.images)


def test_balanced_subset_of_unlabelled_data():
    chosen = balanced_subset_indices(np.full(50, -1), 10, seed=0)
    assert len(set(chosen.tolist())) == 10


def test_channel_conversion_and_oversized_subset_refusal():
    rgb = load_split("synthetic", "test")
    grey = load_split("synthetic", "test", options={"channels": 1})
    assert rgb.images.shape[1] == 3 and grey.images.shape[1] == 1
    r, g, b = rgb.images.double().unbind(1)  # ITU-R 601 luma, by hand
    luma = (0.299 * r + 0.587 * g + 0.114 * b).round()
    assert (grey.images[:, 0].double() - luma).abs().max() <= 1  # float32 sums may round the other way
    assert (grey.images[:, 0].double() != r).any()  # not a channel picked
    back = grey.with_channels(3)
    assert torch.equal(back.images, grey.images.expand(-1, 3, -1, -1))
    with pytest.raises(SelfSupError, match="subset"):
        load_split("synthetic", "test", subset=10_000)


def test_missing_directory_message(tmp_path):
    with pytest.raises(SelfSupError, match="does not exist"):
        load_split("cifar10", "train", str(tmp_path / "nowhere"))
    with pytest.raises(SelfSupError, match="needs --data-dir"):
        load_split("cifar10", "train")

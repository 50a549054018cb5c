"""Dataset registry.

Every image dataset yields batches as dicts: ``image`` (uint8 [B, C, H, W]; float32 in [0, 1]
for an image folder of arrays that are not bytes), ``label`` (int64,
-1 when unlabelled) and ``index`` (int64 position in the split: memory banks and cluster
assignments are indexed by it).  Datasets that fit in memory are held as one uint8 tensor
and served a whole batch at a time (``__getitems__``); image folders are decoded per image.
Series datasets (``modality`` "series", ``selfsup.data.series``) yield ``series`` (float32
[B, C, T]) in place of ``image``; ``batch_inputs`` returns whichever a batch holds.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import SelfSupError
from . import formats
from .files import ImageFileDataset, measure_normalization, report_skipped, scan_image_files
from .memory import InMemoryDataset
from .series import SeriesDataset, aeon_loader, ucr_folder_loader
from .views import Normalization

DEBIAN_DIR = "/usr/share/datasets"


class TensorImageDataset(InMemoryDataset):
    """uint8 images [N, C, H, W] and int64 labels [N] held in memory."""

    key = "image"

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, num_classes: int):
        if images.dtype != torch.uint8 or images.dim() != 4 or labels.shape != (images.shape[0],):
            raise ValueError("TensorImageDataset needs uint8 images [N, C, H, W] and labels [N]")
        super().__init__(images, labels, num_classes)

    @property
    def images(self) -> torch.Tensor:
        return self.samples

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def image_size(self) -> int:
        return self.images.shape[-1]

    def with_channels(self, channels: int) -> "TensorImageDataset":
        """Grey images repeated to RGB, or RGB reduced to luma (ITU-R 601)."""
        if channels == self.channels:
            return self
        if self.channels == 1 and channels == 3:
            images = self.images.expand(-1, 3, -1, -1).contiguous()
        elif self.channels == 3 and channels == 1:
            weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            images = (self.images.float() * weights).sum(1, keepdim=True).round().to(torch.uint8)
        else:
            raise SelfSupError(f"cannot convert {self.channels}-channel images to {channels} channels (only 1 <-> 3)")
        return TensorImageDataset(images, self.labels, self.num_classes)


def batch_inputs(batch: dict) -> torch.Tensor:
    """The model inputs of a batch: its images, or its series."""
    return batch["image"] if "image" in batch else batch["series"]


def collate_batch(batch):
    """The DataLoader's collate: every dataset's ``__getitems__`` already returns a whole batch dict."""
    if isinstance(batch, dict):
        return batch
    return torch.utils.data.default_collate(batch)


def batch_loader(dataset, batch_sampler, num_workers: int) -> DataLoader:
    """The training DataLoader of ``dataset`` and a batch sampler of its indices: whole batches
    from ``__getitems__``; ``num_workers`` worker processes for datasets that decode files
    (``decodes_files``), none for in-memory ones (one indexing operation per batch)."""
    workers = num_workers if getattr(dataset, "decodes_files", False) else 0
    return DataLoader(dataset, batch_sampler=batch_sampler, collate_fn=collate_batch, num_workers=workers,
                      persistent_workers=workers > 0)


@dataclass(frozen=True)
class DatasetInfo:
    """A registered dataset; for series, ``image_size`` is the series length (0: read from the files)."""

    name: str
    description: str
    channels: int
    image_size: int
    num_classes: int
    normalization: Normalization | None  # None: measured from the training split (``normalization_for``)
    splits: tuple[str, ...]
    pretrain_split: str
    load: Callable[[Path, str, dict], Dataset]
    default_dir: str | None = None
    needs_dir: bool = True
    modality: str = "image"  # image | series
    class_names: tuple[str, ...] = ()  # by label, where the dataset names its classes


def _mnist_loader(path: Path, split: str, options: dict) -> TensorImageDataset:
    images, labels = formats.read_mnist_split(path, split == "train")
    return TensorImageDataset(torch.from_numpy(images.copy()), torch.from_numpy(labels), 10)


def _cifar_loader(num_classes: int):
    def load(path: Path, split: str, options: dict) -> TensorImageDataset:
        images, labels = formats.read_cifar_split(path, split == "train")
        return TensorImageDataset(torch.from_numpy(images), torch.from_numpy(labels), num_classes)
    return load


def _stl10_loader(path: Path, split: str, options: dict) -> TensorImageDataset:
    parts = [formats.read_stl10_split(path, part) for part in split.split("+")]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return TensorImageDataset(torch.from_numpy(images), torch.from_numpy(labels), 10)


def _imagefolder_loader(path: Path, split: str, options: dict) -> ImageFileDataset:
    root = path
    for name in ({"train": ("train",), "test": ("test", "val")}[split]):
        if (path / name).is_dir():
            root = path / name
            break
    else:
        if split == "test":
            raise SelfSupError(f"image folder {path} has no test/ or val/ sub-folder for evaluation")
    files, labels, classes = formats.list_image_folder(root)
    kept, channels, floating, skipped = scan_image_files(files, options.get("channels"))
    report_skipped(root, len(files), skipped)
    if not kept:
        raise SelfSupError(f"image folder {root} holds no readable images ({len(files)} files skipped)")
    return ImageFileDataset([files[i] for i in kept], labels[kept], max(len(classes), 1),
                            int(options.get("image_size") or 64), channels, floating, skipped)


def _digits_loader(path: Path, split: str, options: dict) -> TensorImageDataset:
    """scikit-learn's 8x8 handwritten digits (1797 images, values 0..16), split 80/20 with a
    fixed seed (stratified)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)[:, None]
    order = _stratified_order(digits.target, np.random.default_rng(0))
    cut = int(0.8 * len(order))
    chosen = np.sort(order[:cut] if split == "train" else order[cut:])
    return TensorImageDataset(torch.from_numpy(images[chosen]), torch.from_numpy(digits.target[chosen].astype(np.int64)), 10)


SYNTHETIC_PATTERNS = ("horizontal stripes", "vertical stripes", "checkerboard", "diagonal hatch", "rings", "grid")


def synthetic_images(n: int, seed: int, size: int = 16, channels: int = 3):
    """Textures in six classes (``SYNTHETIC_PATTERNS``) with random frequency, phase and
    colour, plus noise: a class survives crops, flips and colour changes, as real object
    classes do (tests and smoke runs only)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(SYNTHETIC_PATTERNS)
    rng.shuffle(labels)
    yy, xx = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    images = np.empty((n, channels, size, size))
    for i, label in enumerate(labels):
        f = rng.uniform(0.6, 1.4)
        p, q = rng.uniform(0, 2 * np.pi, 2)
        cy, cx = rng.uniform(0, size, 2)
        pattern = {
            0: lambda: np.sin(f * yy + p),
            1: lambda: np.sin(f * xx + p),
            2: lambda: np.sign(np.sin(f * xx + p) * np.sin(f * yy + q)),
            3: lambda: (np.sin(f * (xx + yy) + p) + np.sin(f * (xx - yy) + q)) / 2,
            4: lambda: np.sin(f * np.hypot(xx - cx, yy - cy) + p),
            5: lambda: (np.sin(f * xx + p) + np.sin(f * yy + q)) / 2,
        }[label]()
        colour = rng.uniform(0.2, 1.0, (channels, 1, 1))
        images[i] = 0.5 + 0.45 * pattern[None] * colour
    images += rng.normal(0, 0.08, images.shape)
    return (np.clip(images, 0, 1) * 255).astype(np.uint8), labels.astype(np.int64)


def _synthetic_loader(path: Path, split: str, options: dict) -> TensorImageDataset:
    n = int(options.get("synthetic_size") or 512) if split == "train" else 256
    images, labels = synthetic_images(n, seed=0 if split == "train" else 1)
    return TensorImageDataset(torch.from_numpy(images), torch.from_numpy(labels), len(SYNTHETIC_PATTERNS))


def synthetic_series(n: int, seed: int, length: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Sines of three rhythms (periods of 4-6, 8-11 and 14-18 steps) with random phase and
    amplitude, plus noise: float32 [n, 1, length] and labels (tests and smoke runs only)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    period = np.array([(4, 6), (8, 11), (14, 18)])[labels]
    period = rng.uniform(period[:, 0], period[:, 1])[:, None]
    wave = np.sin(2 * np.pi * np.arange(length) / period + rng.uniform(0, 2 * np.pi, (n, 1)))
    series = wave * rng.uniform(0.5, 1.5, (n, 1)) + rng.normal(0, 0.1, (n, length))
    return series[:, None].astype(np.float32), labels.astype(np.int64)


def _synthetic_series_loader(path: Path, split: str, options: dict) -> SeriesDataset:
    n = int(options.get("synthetic_size") or 512) if split == "train" else 256
    series, labels = synthetic_series(n, seed=0 if split == "train" else 1)
    return SeriesDataset(torch.from_numpy(series), torch.from_numpy(labels), 3)


def _stratified_order(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices interleaved class by class, each class in random order: any prefix is as
    class-balanced as possible."""
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    rank = np.empty(len(labels))
    for members in per_class:
        rank[members] = np.arange(len(members)) + rng.random(len(members)) * 0.5
    return np.argsort(rank, kind="stable")


def balanced_subset_indices(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """A seeded subset of ``n`` indices, class-balanced when the split is labelled (unlabelled
    images in a partly labelled split, label -1, count as one more class)."""
    rng = np.random.default_rng(seed)
    if (labels < 0).all():
        return np.sort(rng.permutation(len(labels))[:n])
    return np.sort(_stratified_order(labels, rng)[:n])


DATASETS: dict[str, DatasetInfo] = {info.name: info for info in [
    DatasetInfo("fashion-mnist", "Fashion-MNIST, 60k/10k 28x28 grey (idx .gz)", 1, 28, 10,
                Normalization((0.2860,), (0.3530,)), ("train", "test"), "train", _mnist_loader,
                default_dir=f"{DEBIAN_DIR}/fashion-mnist",
                class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                             "Bag", "Ankle boot")),
    DatasetInfo("mnist", "MNIST, 60k/10k 28x28 grey (idx .gz)", 1, 28, 10,
                Normalization((0.1307,), (0.3081,)), ("train", "test"), "train", _mnist_loader,
                default_dir=f"{DEBIAN_DIR}/mnist"),
    DatasetInfo("cifar10", "CIFAR-10, 50k/10k 32x32 RGB (python pickle batches)", 3, 32, 10,
                Normalization((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)), ("train", "test"), "train",
                _cifar_loader(10), class_names=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                                                "horse", "ship", "truck")),
    DatasetInfo("cifar100", "CIFAR-100, 50k/10k 32x32 RGB, fine labels (python pickle)", 3, 32, 100,
                Normalization((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)), ("train", "test"), "train",
                _cifar_loader(100)),
    DatasetInfo("stl10", "STL-10, 5k/8k labelled + 100k unlabelled 96x96 RGB (binary)", 3, 96, 10,
                Normalization((0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713)),
                ("train", "test", "unlabeled", "train+unlabeled"), "train+unlabeled", _stl10_loader,
                class_names=("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")),
    DatasetInfo("imagefolder", "class sub-folders (or a flat folder, unlabelled); train/ and test/ or val/ inside",
                3, 64, 0, None, ("train", "test"), "train", _imagefolder_loader),
    DatasetInfo("digits", "scikit-learn digits, 1437/360 8x8 grey (ships with scikit-learn)", 1, 8, 10,
                Normalization((0.3,), (0.38,)), ("train", "test"), "train", _digits_loader, needs_dir=False),
    DatasetInfo("synthetic-series", "sines of three rhythms, 512/256 series of 32 steps (tests and smoke runs only)",
                1, 32, 3, Normalization((0.0,), (1.0,)), ("train", "test"), "train", _synthetic_series_loader,
                needs_dir=False, modality="series"),
    DatasetInfo("synthetic", "textured 16x16 RGB images in 6 classes (tests and smoke runs only)", 3, 16, 6,
                Normalization((0.5, 0.5, 0.5), (0.2, 0.2, 0.2)), ("train", "test"), "train", _synthetic_loader,
                needs_dir=False, class_names=SYNTHETIC_PATTERNS),
    *(DatasetInfo(name, f"{archive} {name}, {size} {kind} series in {classes} classes (ships inside aeon)", channels,
                  length, classes, Normalization((0.0,), (1.0,)), ("train", "test"), "train", aeon_loader(name),
                  needs_dir=False, modality="series")
      for name, archive, channels, length, classes, size, kind in [
          ("gunpoint", "UCR", 1, 150, 2, "50/150", "univariate"),
          ("italy-power-demand", "UCR", 1, 24, 2, "67/1029", "univariate"),
          ("arrowhead", "UCR", 1, 251, 3, "36/175", "univariate"),
          ("osuleaf", "UCR", 1, 427, 6, "200/242", "univariate"),
          ("acsf1", "UCR", 1, 1460, 10, "100/100", "univariate"),
          ("pickup-gesture-wiimotez", "UCR", 1, 361, 10, "50/50", "univariate, unequal-length (29-361, resampled)"),
          ("basic-motions", "UEA", 6, 100, 4, "40/40", "6-channel"),
          ("japanese-vowels", "UEA", 12, 26, 9, "270/370", "12-channel, unequal-length (7-29, resampled)")]),
    DatasetInfo("ucr", "a UCR/UEA problem folder: NAME_TRAIN.ts and NAME_TEST.ts (or .tsv); series of unequal length "
                "are resampled to the longest training series",
                1, 0, 0, Normalization((0.0,), (1.0,)), ("train", "test"), "train", ucr_folder_loader, modality="series"),
]}


def dataset_info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise SelfSupError(f"unknown dataset '{name}'; choose one of: {', '.join(DATASETS)} (see `selfsup list`)")
    return DATASETS[name]


def resolve_data_dir(info: DatasetInfo, data_dir: str | None) -> Path | None:
    """The directory to read ``info`` from, with a message saying how to get it if missing."""
    if not info.needs_dir:
        return None
    path = data_dir or info.default_dir
    if path is None:
        raise SelfSupError(f"dataset '{info.name}' needs --data-dir pointing at its files ({info.description})")
    path = Path(os.path.expanduser(path))
    if not path.is_dir():
        hint = ""
        if info.default_dir and not data_dir:
            hint = f"; install it with `apt-get install dataset-{info.name}` or pass --data-dir"
        raise SelfSupError(f"data directory {path} for dataset '{info.name}' does not exist{hint}")
    return path


def load_split(name: str, split: str, data_dir: str | None = None, subset: int | None = None,
               seed: int = 0, options: dict | None = None):
    """Load one split of a registered dataset, optionally a seeded class-balanced subset."""
    info = dataset_info(name)
    if split not in info.splits:
        raise SelfSupError(f"dataset '{name}' has no split '{split}'; it has {', '.join(info.splits)}")
    options = dict(options or {})
    dataset = info.load(resolve_data_dir(info, data_dir), split, options)
    channels = options.get("channels")
    if channels and info.modality == "series" and int(channels) != dataset.series.shape[1]:
        raise SelfSupError(f"{name} has {dataset.series.shape[1]}-channel series; channel conversion is for images")
    if channels and isinstance(dataset, TensorImageDataset):
        dataset = dataset.with_channels(int(channels))
    if subset is not None:
        if subset <= 0 or subset > len(dataset):
            raise SelfSupError(f"--subset {subset} must be between 1 and the {len(dataset)} samples of {name}/{split}")
        labels = dataset.labels.numpy()
        dataset = dataset.subset(balanced_subset_indices(labels, subset, seed))
    return dataset


def normalization_for(name: str, channels: int, train=None) -> Normalization:
    """The dataset's normalisation, adapted when its channels were converted; for a dataset
    registered without one (image folders), measured from ``train`` (``measure_normalization``)."""
    norm = dataset_info(name).normalization
    if norm is None:
        if train is None:
            raise SelfSupError(f"{name}'s normalisation is measured from its training split, and none was given")
        return Normalization(*measure_normalization(train))
    if len(norm.mean) == channels:
        return norm
    if channels == 3:
        return Normalization(norm.mean * 3, norm.std * 3)
    return Normalization((sum(norm.mean) / 3,), (sum(norm.std) / 3,))

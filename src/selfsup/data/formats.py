"""Readers for the standard on-disk formats of the supported datasets.

Each reader returns ``(images, labels)``: images as a uint8 array [N, C, H, W] and labels as
an int64 array [N] (-1 where the split is unlabelled).  Malformed files raise
``SelfSupError`` naming the file.
"""
from __future__ import annotations

import functools
import gzip
import pickle
import struct
import sys
from pathlib import Path

import numpy as np

from ..errors import SelfSupError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".npy"}


def _open_maybe_gz(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST family), optionally gzip-compressed, as a read-only array.  The last
    few files read are kept in memory (keyed by path, size and modification time): a process that
    loads a split many times (the learning tests, the suites) decompresses it once."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise SelfSupError(f"cannot read IDX file {path}: {exc}") from exc
    return _read_idx(path.resolve(), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _read_idx(path: Path, size: int, modified: int) -> np.ndarray:
    try:
        with _open_maybe_gz(path) as f:
            data = f.read()
        zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
        if zero != 0 or dtype_code != 0x08:
            raise ValueError("not an unsigned-byte IDX file")
        shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
        array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
        return array.reshape(shape)
    except (OSError, ValueError, struct.error, EOFError) as exc:
        raise SelfSupError(f"cannot read IDX file {path}: {exc}") from exc


def find_first(directory: Path, names: list[str]) -> Path:
    for name in names:
        if (directory / name).is_file():
            return directory / name
    raise SelfSupError(f"{directory} has none of {', '.join(names)}")


def read_mnist_split(directory: Path, train: bool) -> tuple[np.ndarray, np.ndarray]:
    prefix = "train" if train else "t10k"
    images = read_idx(find_first(directory, [f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-images-idx3-ubyte"]))
    labels = read_idx(find_first(directory, [f"{prefix}-labels-idx1-ubyte.gz", f"{prefix}-labels-idx1-ubyte"]))
    if images.ndim != 3 or labels.shape != (images.shape[0],):
        raise SelfSupError(f"{directory}: {prefix} images {images.shape} and labels {labels.shape} do not match")
    return images[:, None], labels.astype(np.int64)


def read_cifar_split(directory: Path, train: bool, coarse: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 (``data_batch_1..5``, ``test_batch``) or CIFAR-100 (``train``, ``test``)
    in the python pickle format; ``directory`` may be the extracted ``cifar-*-python``
    folder or its parent."""
    for candidate in (directory, directory / "cifar-10-batches-py", directory / "cifar-100-python"):
        if (candidate / "data_batch_1").is_file() or (candidate / "train").is_file():
            directory = candidate
            break
    if (directory / "data_batch_1").is_file():
        files = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
        label_key = b"labels"
    else:
        files = ["train" if train else "test"]
        label_key = b"coarse_labels" if coarse else b"fine_labels"
    images, labels = [], []
    for name in files:
        path = directory / name
        try:
            with open(path, "rb") as f:
                entry = pickle.load(f, encoding="bytes")
            images.append(np.asarray(entry[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.append(np.asarray(entry[label_key], dtype=np.int64))
        except (OSError, pickle.UnpicklingError, KeyError, ValueError, EOFError) as exc:
            raise SelfSupError(f"cannot read CIFAR batch {path}: {exc!r}") from exc
    return np.concatenate(images), np.concatenate(labels)


def read_stl10_split(directory: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """STL-10 binary format (``{split}_X.bin`` column-major 3x96x96 uint8, ``{split}_y.bin``
    labels 1..10); ``split`` is train, test or unlabeled (labels -1)."""
    if (directory / "stl10_binary").is_dir():
        directory = directory / "stl10_binary"
    x_path = directory / f"{split}_X.bin"
    try:
        raw = np.fromfile(x_path, dtype=np.uint8)
    except OSError as exc:
        raise SelfSupError(f"cannot read STL-10 file {x_path}: {exc}") from exc
    if raw.size % (3 * 96 * 96):
        raise SelfSupError(f"{x_path} has {raw.size} bytes, not a multiple of one 3x96x96 image")
    images = raw.reshape(-1, 3, 96, 96).transpose(0, 1, 3, 2)  # stored column-major
    if split == "unlabeled":
        return np.ascontiguousarray(images), np.full(len(images), -1, dtype=np.int64)
    y_path = directory / f"{split}_y.bin"
    try:
        labels = np.fromfile(y_path, dtype=np.uint8).astype(np.int64) - 1
    except OSError as exc:
        raise SelfSupError(f"cannot read STL-10 file {y_path}: {exc}") from exc
    if labels.shape[0] != images.shape[0]:
        raise SelfSupError(f"{y_path} has {labels.shape[0]} labels for {images.shape[0]} images")
    return np.ascontiguousarray(images), labels


def list_image_folder(directory: Path) -> tuple[list[Path], np.ndarray, list[str]]:
    """Files of an image folder: one sub-folder per class (labels by sorted class name; images at
    any depth inside it), or a flat folder of images (unlabelled, labels -1).  Images lying beside
    class folders belong to no class: they are left out, with a note."""
    if not directory.is_dir():
        raise SelfSupError(f"image folder {directory} does not exist")
    entries = list(directory.iterdir())
    classes = sorted(p.name for p in entries if p.is_dir())
    def images_in(folder: Path) -> list[Path]:
        return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if classes:
        loose = [p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        if loose:
            print(f"note: image folder {directory}: {len(loose)} images lie beside its class folders "
                  f"({', '.join(classes[:3])}{', ...' if len(classes) > 3 else ''}) and belong to no class; "
                  "they are not read (move them into a class folder)", file=sys.stderr)
        files, labels = [], []
        for label, name in enumerate(classes):
            found = images_in(directory / name)
            files += found
            labels += [label] * len(found)
        label_array = np.asarray(labels, dtype=np.int64)
    else:
        files = images_in(directory)
        label_array = np.full(len(files), -1, dtype=np.int64)
    if not files:
        raise SelfSupError(f"image folder {directory} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files, label_array, classes

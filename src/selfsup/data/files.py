"""Image folders: pictures (Pillow) and multi-channel arrays (``.npy`` with NumPy; ``.tif`` /
``.tiff`` with tifffile where it is installed, else Pillow), checked once when the folder is
listed so that a file that cannot be read is skipped and counted, never met mid-epoch.

A 3-D array's smallest axis is its channel axis (``[C, H, W]`` and ``[H, W, C]`` both read);
a 2-D array is one channel.  Integer arrays are scaled by their type's maximum (uint8 kept as
bytes), float arrays are taken as values in [0, 1] (clipped).  A folder whose files are all
bytes (pictures, uint8 arrays) is served as uint8 like every other image dataset; any other
array type makes the whole folder float32 in [0, 1], so that batches always stack.
"""
from __future__ import annotations

import collections
import functools
import importlib.util
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import SelfSupError

ARRAY_SUFFIXES = {".npy"}
TIFF_SUFFIXES = {".tif", ".tiff"}


@functools.cache  # asked for every image decoded
def _reads_tiff_arrays() -> bool:
    return importlib.util.find_spec("tifffile") is not None


def is_array_file(path: Path) -> bool:
    suffix = path.suffix.lower()
    return suffix in ARRAY_SUFFIXES or (suffix in TIFF_SUFFIXES and _reads_tiff_arrays())


def array_header(path: Path) -> tuple[tuple, np.dtype]:
    """(shape, dtype) of an array file, read from its header only."""
    if path.suffix.lower() in ARRAY_SUFFIXES:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
        return array.shape, array.dtype
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        return tuple(series.shape), np.dtype(series.dtype)


def channel_axis(shape: tuple) -> int | None:
    """Where the channels of an array of ``shape`` are: None for 2-D, the smallest axis for 3-D."""
    if len(shape) == 2:
        return None
    if len(shape) == 3:
        return int(np.argmin(shape))
    raise SelfSupError(f"an image array must be 2-D or 3-D, not of shape {tuple(shape)}")


def array_channels(shape: tuple) -> int:
    axis = channel_axis(shape)
    return 1 if axis is None else int(shape[axis])


def read_array(path: Path) -> np.ndarray:
    """An array file as [C, H, W]."""
    if path.suffix.lower() in ARRAY_SUFFIXES:
        array = np.load(path, allow_pickle=False)
    else:
        import tifffile

        array = tifffile.imread(path)
    axis = channel_axis(array.shape)
    return array[None] if axis is None else np.moveaxis(array, axis, 0)


def array_tensor(array: np.ndarray, floating: bool) -> torch.Tensor:
    """[C, H, W] as uint8 (bytes kept) or, with ``floating``, float32 in [0, 1]."""
    if array.dtype == np.uint8:
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        return tensor.float().div_(255) if floating else tensor
    if array.dtype == np.bool_:
        values = array.astype(np.float32)
    elif np.issubdtype(array.dtype, np.integer):
        values = array.astype(np.float32) / np.iinfo(array.dtype).max
    else:
        values = np.clip(array.astype(np.float32), 0.0, 1.0)
    return torch.from_numpy(np.ascontiguousarray(values))


def picture_tensor(path: Path, channels: int) -> torch.Tensor:
    """A picture decoded by Pillow as uint8 [channels, H, W] (1: luma, 3: RGB)."""
    from PIL import Image
    from torchvision.transforms.v2 import functional as TF

    with Image.open(path) as im:
        return TF.pil_to_tensor(im.convert("L" if channels == 1 else "RGB"))


def check_file(path: Path) -> tuple[int | None, bool]:
    """(channels of an array, None for a picture; whether its values are bytes) of a readable
    file, from its header (and Pillow's ``verify`` for pictures); raises OSError or ValueError
    (Pillow: also SyntaxError) for one that cannot be read."""
    if is_array_file(path):
        shape, dtype = array_header(path)
        if len(shape) not in (2, 3) or min(shape) < 1:
            raise ValueError(f"an array of shape {tuple(shape)} is not an image")
        return array_channels(shape), dtype == np.uint8
    from PIL import Image

    with Image.open(path) as im:
        im.verify()
    return None, True


def scan_image_files(files: list[Path], channels: int | None) -> tuple[list[int], int, bool, list[tuple[Path, str]]]:
    """Check every file once: (indices of the readable ones, the folder's channels, whether it
    is served as float, skipped (path, reason) pairs).  With ``channels`` 1 or 3, pictures and
    1- or 3-channel arrays are converted to it; with another count, arrays of that count are
    kept; without, pictures are RGB and arrays keep their own count, the most common count among
    the files winning.  Files of another count are skipped."""
    found, skipped = {}, []
    for i, path in enumerate(files):
        try:
            count, as_bytes = check_file(path)
        except (OSError, ValueError, SyntaxError) as exc:
            skipped.append((path, str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
            continue
        found[i] = (count if count is not None else (channels if channels in (1, 3) else 3), as_bytes)
    if channels in (1, 3):
        wanted, fits = channels, (lambda count: count in (1, 3))
    else:
        counts = collections.Counter(c for c, _ in found.values())
        wanted = channels or (counts.most_common(1)[0][0] if found else 3)
        fits = wanted.__eq__
    kept = []
    for i, (count, _) in found.items():
        if fits(count):
            kept.append(i)
        else:
            skipped.append((files[i], f"{count} channels, where the folder's images have {wanted}"))
    floating = not all(found[i][1] for i in kept)
    return kept, wanted, floating, sorted(skipped)


def report_skipped(directory: Path, total: int, skipped: list[tuple[Path, str]]) -> None:
    """One line on stderr: how many of the folder's files were left out, and the first few reasons."""
    if not skipped:
        return
    shown = "; ".join(f"{path.name}: {reason}" for path, reason in skipped[:3])
    more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
    print(f"note: image folder {directory}: skipped {len(skipped)} of {total} files that cannot be read as its "
          f"images ({shown}{more})", file=sys.stderr)


class ImageFileDataset(Dataset):
    """Images decoded from files (``decode``), resized (shorter side, then centre crop) to
    ``image_size`` so that batches stack; augmentation then runs on the batch.  ``skipped``:
    the files that the folder listing left out (``scan_image_files``)."""

    decodes_files = True  # the training loader gives it data.num_workers worker processes

    def __init__(self, files: list[Path], labels: np.ndarray, num_classes: int, image_size: int, channels: int,
                 floating: bool = False, skipped: list | None = None):
        self.files, self.labels, self.num_classes = files, torch.as_tensor(labels), num_classes
        self.image_size, self.channels, self.floating = image_size, channels, floating
        self.skipped = list(skipped or [])

    def __len__(self) -> int:
        return len(self.files)

    def decode(self, i: int) -> torch.Tensor:
        from torchvision.transforms.v2 import functional as TF

        path = self.files[i]
        if is_array_file(path):
            tensor = array_tensor(read_array(path), self.floating)
            if tensor.shape[0] != self.channels:  # a 1- or 3-channel array converted (scan_image_files)
                tensor = (tensor.expand(3, -1, -1) if self.channels == 3
                          else tensor.float().mean(0, keepdim=True).to(tensor.dtype))
        else:
            tensor = picture_tensor(path, self.channels)
            if self.floating:
                tensor = tensor.float().div_(255)
        size = self.image_size
        return TF.center_crop(TF.resize(tensor, size, antialias=True), [size, size]).contiguous()

    def __getitem__(self, i: int) -> dict:
        # A file that passed the listing's check but fails to decode (a truncated JPEG, a file
        # changed since) is replaced by the next readable one, with a warning, never a crash.
        for offset in range(len(self.files)):
            j = (i + offset) % len(self.files)
            try:
                image = self.decode(j)
            except (OSError, ValueError, SyntaxError) as exc:
                warnings.warn(f"cannot decode image {self.files[j]} ({exc}); using the next file instead")
                continue
            return {"image": image, "label": self.labels[j], "index": torch.tensor(i)}
        raise SelfSupError("no file of the image folder can be decoded")

    def __getitems__(self, indices: list[int]) -> dict:
        """A batch, as every dataset serves one: ``{"image": [B, C, H, W], "label": [B], "index": [B]}``."""
        return torch.utils.data.default_collate([self[i] for i in indices])

    def content_key(self) -> tuple:
        """What the split's content follows from, for cache keys (``io.content_hash``): each file's
        path, size and modification time, the labels, and the size and channels it is decoded to."""
        files = [(str(f), stat.st_size, stat.st_mtime_ns) for f in self.files for stat in [Path(f).stat()]]
        return files, self.labels, self.image_size, self.channels

    def subset(self, indices: np.ndarray) -> "ImageFileDataset":
        return ImageFileDataset([self.files[i] for i in indices], self.labels.numpy()[indices], self.num_classes,
                                self.image_size, self.channels, self.floating, self.skipped)


def measure_normalization(dataset, limit: int = 2000) -> tuple[tuple, tuple]:
    """Per-channel (mean, std) of the pixel values in [0, 1] of every ⌊n/``limit``⌋-th image of
    ``dataset`` (n images: about ``limit`` of them, fewer than twice as many) (std at least 1e-3, so that a constant channel stays finite)."""
    step = max(1, len(dataset) // limit)
    total = squares = None
    pixels = 0
    for i in range(0, len(dataset), step):
        image = dataset[i]["image"]
        x = (image.double() / 255 if image.dtype == torch.uint8 else image.double()).flatten(1)
        total = x.sum(1) if total is None else total + x.sum(1)
        squares = (x * x).sum(1) if squares is None else squares + (x * x).sum(1)
        pixels += x.shape[1]
    mean = total / pixels
    std = (squares / pixels - mean * mean).clamp_min(0).sqrt().clamp_min(1e-3)
    return tuple(round(v, 4) for v in mean.tolist()), tuple(round(v, 4) for v in std.tolist())

"""The series side of the dataset registry, and 1-D views.

Series datasets yield batches as dicts: ``series`` (float32 [B, C, T]), ``label`` (int64) and
``index``, like the image datasets' ``image`` batches.  Sources:

* the UCR/UEA classification problems that aeon ships inside its wheel (read offline by its
  single-problem loaders): GunPoint, ItalyPowerDemand, ArrowHead, OSULeaf, ACSF1 and
  PickupGestureWiimoteZ (univariate), BasicMotions (6 channels) and JapaneseVowels (12);
* any UCR/UEA problem on disk (``ucr`` with ``--data-dir``): ``NAME_TRAIN.ts``/``NAME_TEST.ts``
  (the sktime/aeon text format, univariate or multivariate, read with aeon) or ``.tsv`` (one
  series per row, label first).

Values are kept as published (the UCR archive z-normalises each series).  Problems whose
series differ in length (PickupGestureWiimoteZ: 29 to 361 steps; JapaneseVowels: 7 to 29) are
resampled, each channel by linear interpolation, to the length of the longest training
series, in both splits (``equal_length``): the networks and baselines here take one length,
and resampling keeps each series' whole shape where padding would add steps that carry no
signal; a test series longer than every training series is shortened the same way.

``SeriesAugmentConfig`` / ``augment_series``: the view pipeline for series, batched on the
device with per-series random parameters from an explicit generator (like the image views):
random crop resized back to the full length, scaling, jitter and masking (Um et al. 2017;
Eldele et al. 2021, TS-TCC, use the same family of weak augmentations).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from ..errors import SelfSupError
from .augment import chance, uniform, views
from .memory import InMemoryDataset
from .. import rng

TIMESERIES_EXTRA = "pip install -e .[timeseries] (or: bash scripts/install.sh timeseries)"

# registry name -> aeon's loader
AEON_PROBLEMS = {"gunpoint": "load_gunpoint", "italy-power-demand": "load_italy_power_demand",
                 "arrowhead": "load_arrow_head", "osuleaf": "load_osuleaf", "acsf1": "load_acsf1",
                 "pickup-gesture-wiimotez": "load_pickup_gesture_wiimoteZ", "basic-motions": "load_basic_motions",
                 "japanese-vowels": "load_japanese_vowels"}


class SeriesDataset(InMemoryDataset):
    """float32 series [N, C, T] and int64 labels [N] held in memory."""

    key = "series"

    def __init__(self, series: torch.Tensor, labels: torch.Tensor, num_classes: int):
        if series.dtype != torch.float32 or series.dim() != 3 or labels.shape != (series.shape[0],):
            raise ValueError("SeriesDataset needs float32 series [N, C, T] and labels [N]")
        super().__init__(series, labels, num_classes)

    @property
    def series(self) -> torch.Tensor:
        return self.samples


def longest(series) -> int:
    """The length of the longest series of a split (an array [N, C, T] or a list of [C, T_i])."""
    return max(np.shape(one)[-1] for one in series)


def equal_length(series, length: int) -> np.ndarray:
    """``series`` (an array [N, C, T] or a list of [C, T_i] arrays) as float32 [N, C, length]:
    each series of another length resampled by linear interpolation over its whole span."""
    out = []
    for one in series:
        one = np.asarray(one, dtype=np.float32)
        if one.shape[-1] != length:
            old, new = np.linspace(0, 1, one.shape[-1]), np.linspace(0, 1, length)
            one = np.stack([np.interp(new, old, channel) for channel in one]).astype(np.float32)
        out.append(one)
    if len({one.shape[0] for one in out}) > 1:
        raise SelfSupError("the series have different numbers of channels")
    return np.stack(out)


def _dataset(series, labels: np.ndarray, classes: list, source: str, length: int) -> SeriesDataset:
    series = equal_length(series, length)
    if not np.isfinite(series).all():
        raise SelfSupError(f"{source}: {int((~np.isfinite(series)).sum())} missing or non-finite values")
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted({str(v) for v in labels if v not in index})
    if unknown:
        raise SelfSupError(f"{source}: test labels {', '.join(unknown)} do not occur in the training split")
    labels = np.array([index[v] for v in labels], dtype=np.int64)
    return SeriesDataset(torch.from_numpy(series), torch.from_numpy(labels), len(classes))


def _class_order(train_labels) -> list:
    """Class names in a fixed order (numeric names numerically), so both splits map alike."""
    return sorted(set(train_labels), key=lambda v: (0, float(v), "") if _is_number(v) else (1, 0.0, str(v)))


def _is_number(value) -> bool:
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


def _aeon():
    try:
        import aeon.datasets
    except ImportError as exc:
        raise SelfSupError(f"the UCR problems and .ts files need aeon: {TIMESERIES_EXTRA}") from exc
    return aeon.datasets


def aeon_loader(name: str):
    """Loader of a UCR problem shipped inside aeon (no download)."""
    def load(path: Path, split: str, options: dict) -> SeriesDataset:
        loader = getattr(_aeon(), AEON_PROBLEMS[name])
        with warnings.catch_warnings():  # aeon 1.6 marks its shipped ACSF1 as leaving in 1.7 (pinned below it)
            warnings.simplefilter("ignore", FutureWarning)
            train_x, train_y = loader(split="train")
            x, y = (train_x, train_y) if split == "train" else loader(split="test")
        return _dataset(x, list(y), _class_order(train_y), f"{name}/{split}", longest(train_x))
    return load


def _read_ucr_file(path: Path) -> tuple[np.ndarray, list]:
    if path.suffix == ".ts":
        try:
            x, y = _aeon().load_from_ts_file(str(path))
        except (OSError, ValueError, IOError) as exc:
            raise SelfSupError(f"cannot read {path}: {exc}") from exc
        return x, [str(v) for v in y]
    try:
        table = np.loadtxt(path, delimiter="\t", ndmin=2)
    except ValueError as exc:
        raise SelfSupError(f"cannot read {path}: {exc} (expected one series per row, the label first, tab-separated)") from exc
    labels = [str(int(v)) if float(v).is_integer() else str(v) for v in table[:, 0]]
    return table[:, None, 1:], labels


def ucr_folder_loader(path: Path, split: str, options: dict) -> SeriesDataset:
    """A UCR/UEA problem in ``path``: ``*_TRAIN.ts``/``*_TEST.ts`` or ``*_TRAIN.tsv``/``*_TEST.tsv``."""
    files = {}
    for part in ("TRAIN", "TEST"):
        found = sorted(path.glob(f"*_{part}.ts")) + sorted(path.glob(f"*_{part}.tsv"))
        if not found:
            raise SelfSupError(f"{path} has no *_{part}.ts or *_{part}.tsv file (a UCR/UEA problem folder)")
        files[part] = found[0]
    train_x, train_y = _read_ucr_file(files["TRAIN"])
    x, y = (train_x, train_y) if split == "train" else _read_ucr_file(files["TEST"])
    return _dataset(x, y, _class_order(train_y), str(files[split.upper()]), longest(train_x))


@dataclass(frozen=True)
class SeriesAugmentConfig:
    """The 1-D view pipeline, each step per series: a random window covering a fraction in
    ``crop_scale`` of the length, resized back to the full length (linear interpolation);
    multiplication by a factor ~ N(1, ``scale_sigma``) per channel; additive Gaussian noise of
    std ``jitter_sigma`` (in units of the normalised series); with probability ``mask_p``, a
    random segment of up to ``mask_fraction`` of the length set to zero."""

    crop_scale: tuple[float, float] = (0.8, 1.0)
    scale_sigma: float = 0.1
    jitter_sigma: float = 0.03
    mask_p: float = 0.0
    mask_fraction: float = 0.2


#: the default 1-D pipeline as a method's ``series_augment`` param (CPC and the two-view methods)
SERIES_VIEWS = views(SeriesAugmentConfig)


def windows(x: torch.Tensor, starts: torch.Tensor, length: int) -> torch.Tensor:
    """x [B, C, T]: for each series b the steps starts[b] … starts[b] + length − 1."""
    steps = starts[:, None] + torch.arange(length, device=x.device)[None]
    return x.gather(2, steps[:, None, :].expand(-1, x.shape[1], -1))


def random_crop_resize(x: torch.Tensor, scale, g: torch.Generator) -> torch.Tensor:
    """A random window of each series [B, C, T] (fraction of T in ``scale``), resized to T."""
    n, _, length = x.shape
    width = uniform(n, scale[0], scale[1], g, x.device)
    start = rng.rand(n, g, device=x.device) * (1 - width)
    positions = torch.linspace(0, 1, length, device=x.device)
    grid_x = (start[:, None] + width[:, None] * positions[None]) * 2 - 1  # [-1, 1] across the series
    grid = torch.stack([grid_x, torch.zeros_like(grid_x)], -1).unsqueeze(1)  # [B, 1, T, 2]
    return F.grid_sample(x.unsqueeze(2), grid, mode="bilinear", align_corners=True).squeeze(2)


def random_mask(x: torch.Tensor, p: float, fraction: float, g: torch.Generator) -> torch.Tensor:
    """With probability ``p`` per series, zero a random segment of up to ``fraction`` of its length."""
    n, _, length = x.shape
    span = (uniform(n, 0, fraction, g, x.device) * length).round()
    start = rng.rand(n, g, device=x.device) * (length - span)
    t = torch.arange(length, device=x.device)
    masked = (t[None] >= start[:, None].floor()) & (t[None] < (start.floor() + span)[:, None])
    masked &= chance(n, p, g, x.device)[:, None]
    return x.masked_fill(masked[:, None], 0.0)


def augment_series(x: torch.Tensor, cfg: SeriesAugmentConfig, g: torch.Generator) -> torch.Tensor:
    """One random view of each series of a float batch [B, C, T]."""
    n, c, _ = x.shape
    if cfg.crop_scale[0] < 1:
        x = random_crop_resize(x, cfg.crop_scale, g)
    if cfg.scale_sigma > 0:
        x = x * (1 + cfg.scale_sigma * rng.randn((n, c, 1), g, device=x.device))
    if cfg.jitter_sigma > 0:
        x = x + cfg.jitter_sigma * rng.randn(x.shape, g, device=x.device)
    if cfg.mask_p > 0:
        x = random_mask(x, cfg.mask_p, cfg.mask_fraction, g)
    return x

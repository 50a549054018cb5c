"""View specifications: which augmented views of a batch a method asks for.

A method lists ``ViewSpec``s (e.g. SimCLR: two views of one pipeline; SwAV: two full and
six small crops; BYOL: two views of different pipelines; DeepCluster: one clean view).  The
engine turns a uint8 batch into those float views with ``make_views`` on the training
device, normalised by the dataset's mean and standard deviation.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .augment import AugmentConfig, augment_batch
from .randaugment import rand_augment
from .series import SeriesAugmentConfig, augment_series


@dataclass(frozen=True)
class ViewSpec:
    """``count`` views made with ``augment`` (None: no augmentation; a
    ``SeriesAugmentConfig`` for series) at ``size`` pixels
    (None: the dataset's image size), then ``rand_augment`` RandAugment operations and
    Cutout (FixMatch's strong view, ``selfsup.data.randaugment``; 0: none)."""

    augment: AugmentConfig | None = None
    count: int = 1
    size: int | None = None
    rand_augment: int = 0


@dataclass(frozen=True)
class Normalization:
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Per-channel normalisation of images [B, C, H, W] or series [B, C, T]."""
        shape = (1, -1) + (1,) * (x.dim() - 2)
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(shape)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(shape)
        return (x - mean) / std


def augment_for(inputs: torch.Tensor, image_augment: AugmentConfig) -> AugmentConfig | SeriesAugmentConfig:
    """``image_augment`` for an image batch [B, C, H, W]; the default 1-D views (mild crop,
    scaling, jitter) for a series batch [B, C, T]: the views of protocols that take either."""
    return image_augment if inputs.dim() == 4 else SeriesAugmentConfig()


def to_float(images: torch.Tensor) -> torch.Tensor:
    return images.float().div_(255) if images.dtype == torch.uint8 else images.float()


def clean_view(images: torch.Tensor, norm: Normalization, size: int | None = None) -> torch.Tensor:
    """The evaluation view: scaled to [0, 1], resized if ``size`` differs, normalised
    (series: normalised only)."""
    x = to_float(images)
    if size is not None and x.shape[-1] != size and x.dim() == 4:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return norm(x)


def make_views(images: torch.Tensor, specs: list[ViewSpec], norm: Normalization,
               generator: torch.Generator, channels_last: bool = False) -> list[torch.Tensor]:
    """All views requested by ``specs`` for a uint8 batch [B, C, H, W] (or a float series
    batch [B, C, T] with ``SeriesAugmentConfig`` specs), in spec order, in float32: autocast is
    off here (the engine makes them inside the training step, where bf16-mixed would otherwise
    compute the crops' sampling grid and the blur in bfloat16)."""
    with torch.autocast(images.device.type, enabled=False):
        return _make_views(images, specs, norm, generator, channels_last)


def _make_views(images, specs, norm, generator, channels_last):
    x = to_float(images)
    views = []
    for spec in specs:
        size = spec.size or x.shape[-1]
        for _ in range(spec.count):
            if isinstance(spec.augment, SeriesAugmentConfig):
                view = norm(augment_series(x, spec.augment, generator))
            elif spec.augment:
                view = augment_batch(x, spec.augment, size, generator)
                view = norm(rand_augment(view, generator, spec.rand_augment) if spec.rand_augment else view)
            else:
                view = clean_view(images, norm, size)
            views.append(view.contiguous(memory_format=torch.channels_last) if channels_last else view)
    return views

"""CIELAB colours for the colorization tasks (Zhang, Isola, Efros 2016, 2017): sRGB in [0, 1]
to L*a*b* (D65 white), and the grid of in-gamut ab bins the colorization classifier predicts.
"""
from __future__ import annotations

import functools

import torch

_RGB_TO_XYZ = torch.tensor([[0.4124564, 0.3575761, 0.1804375],
                            [0.2126729, 0.7151522, 0.0721750],
                            [0.0193339, 0.1191920, 0.9503041]])
_WHITE = torch.tensor([0.95047, 1.0, 1.08883])
AB_STEP, AB_RANGE = 10.0, 110.0  # Zhang et al.: ab bins of side 10 over [-110, 110]


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] sRGB in [0, 1] → [B, 3, H, W] L (0..100), a, b, in float32 (autocast off: the
    colorization targets are made inside the training step)."""
    with torch.autocast(rgb.device.type, enabled=False):
        return _rgb_to_lab(rgb.float())


def _rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    rgb = rgb.clamp(0, 1)
    linear = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = torch.einsum("ij,bjhw->bihw", _RGB_TO_XYZ.to(rgb), linear) / _WHITE.to(rgb).view(1, 3, 1, 1)
    delta = 6 / 29
    f = torch.where(xyz > delta ** 3, xyz.clamp(min=1e-12) ** (1 / 3), xyz / (3 * delta ** 2) + 4 / 29)
    return torch.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], dim=1)


@functools.lru_cache(maxsize=1)
def ab_bins() -> tuple[torch.Tensor, torch.Tensor]:
    """(centres [Q, 2] of the ab bins that sRGB colours reach, lookup [G, G] from grid cell to
    bin index or −1): found by converting a 64³ grid of sRGB colours (Q = 313 in the paper)."""
    steps = torch.linspace(0, 1, 64)
    colours = torch.stack(torch.meshgrid(steps, steps, steps, indexing="ij")).reshape(1, 3, -1, 1)
    cells = ab_cells(rgb_to_lab(colours)[0, 1:, :, 0].T)
    side = int(2 * AB_RANGE / AB_STEP) + 1
    used = torch.zeros(side * side, dtype=torch.bool)
    used[cells] = True
    lookup = torch.full((side * side,), -1, dtype=torch.long)
    lookup[used] = torch.arange(int(used.sum()))
    index = used.nonzero().flatten()
    centres = torch.stack([index // side, index % side], dim=1).float() * AB_STEP - AB_RANGE
    return centres, lookup


def ab_cells(ab: torch.Tensor) -> torch.Tensor:
    """Grid cell (row-major over a, b) of [N, 2] ab values."""
    side = int(2 * AB_RANGE / AB_STEP) + 1
    a, b = (((ab + AB_RANGE) / AB_STEP).round().clamp(0, side - 1).long()).unbind(dim=1)
    return a * side + b


def ab_bin_of(ab: torch.Tensor) -> torch.Tensor:
    """In-gamut bin of each [N, 2] ab value (its grid cell, or the nearest used bin)."""
    centres, lookup = ab_bins()
    index = lookup.to(ab.device)[ab_cells(ab)]
    missing = index < 0
    if missing.any():
        index[missing] = torch.cdist(ab[missing], centres.to(ab)).argmin(dim=1)
    return index

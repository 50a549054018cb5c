"""FixMatch's strong augmentation on whole batches: RandAugment with random magnitudes, then
Cutout (Sohn et al. 2020, Sec. 2.3 and Table 12; Cubuk et al. 2020).

Each image gets ``num_ops`` operations drawn uniformly from the 14 below, each with its own
magnitude drawn uniformly from the operation's range (FixMatch's "RA" variant), then one
square cut out (grey 0.5) of side up to half the image.  The work is batched: every
operation runs once per round on the images that drew it.  Equalize is histogram equalisation
over 256 levels per image and channel: a level becomes the share of the channel's pixels above
the darkest level and at or below it, so equal values stay equal, the darkest level becomes 0
and the brightest 1.  Values stay in [0, 1].
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .augment import _blend, grayscale
from .. import rng


def _factor(m):  # enhancement factor in [0.05, 0.95], as FixMatch's ranges
    return (0.05 + 0.9 * m).view(-1, 1, 1, 1)


def _autocontrast(x, m):
    low, high = x.amin(dim=(2, 3), keepdim=True), x.amax(dim=(2, 3), keepdim=True)
    return ((x - low) / (high - low).clamp_min(1e-3)).clamp(0, 1)


def _equalize(x, m):
    flat = x.flatten(2)
    levels = (flat.clamp(0, 1) * 255).round().long()
    counts = torch.zeros(*flat.shape[:2], 256, device=x.device).scatter_add_(2, levels, torch.ones_like(levels,
                                                                                                    dtype=torch.float))
    cdf = counts.cumsum(2)
    darkest = cdf.gather(2, levels.amin(2, keepdim=True))  # pixels at the lowest level present: mapped to 0
    spread = cdf[..., -1:] - darkest
    equalized = (cdf.gather(2, levels) - darkest) / spread.clamp_min(1)
    return torch.where(spread > 0, equalized.to(x.dtype), flat).view_as(x)  # a one-level channel stays as it is


def _sharpness(x, m):
    kernel = torch.tensor([[1.0, 1, 1], [1, 5, 1], [1, 1, 1]], device=x.device, dtype=x.dtype) / 13
    c = x.shape[1]
    smooth = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel.expand(c, 1, 3, 3), groups=c)
    return _blend(x, smooth, _factor(m))  # PIL: f·image + (1 − f)·degenerate


def _posterize(x, m):
    step = 2 ** (4 - (4 * m).round()).view(-1, 1, 1, 1)  # keep 4..8 bits
    return torch.floor(x * 255 / step) * step / 255


def _affine(x, theta):
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="zeros", align_corners=False)


def _geometric(kind):
    def op(x, m):
        n = x.shape[0]
        theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
        theta[:, 0, 0] = theta[:, 1, 1] = 1
        v = 2 * m - 1  # in [-1, 1]
        if kind == "rotate":
            a = v * math.radians(30)
            theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = a.cos(), -a.sin(), a.sin(), a.cos()
        elif kind == "shear_x":
            theta[:, 0, 1] = 0.3 * v
        elif kind == "shear_y":
            theta[:, 1, 0] = 0.3 * v
        elif kind == "translate_x":
            theta[:, 0, 2] = 0.6 * v  # 30% of the side (affine_grid spans [-1, 1])
        else:
            theta[:, 1, 2] = 0.6 * v
        return _affine(x, theta)
    return op


OPERATIONS = {
    "identity": lambda x, m: x,
    "autocontrast": _autocontrast,
    "equalize": _equalize,
    "brightness": lambda x, m: _blend(x, torch.zeros_like(x), _factor(m)),
    "color": lambda x, m: _blend(x, grayscale(x).expand_as(x), _factor(m)),
    "contrast": lambda x, m: _blend(x, grayscale(x).mean(dim=(1, 2, 3), keepdim=True).expand_as(x), _factor(m)),
    "sharpness": _sharpness,
    "posterize": _posterize,
    "solarize": lambda x, m: torch.where(x >= m.view(-1, 1, 1, 1), 1 - x, x),
    "rotate": _geometric("rotate"),
    "shear_x": _geometric("shear_x"),
    "shear_y": _geometric("shear_y"),
    "translate_x": _geometric("translate_x"),
    "translate_y": _geometric("translate_y"),
}


def cutout(x: torch.Tensor, max_fraction: float, g: torch.Generator) -> torch.Tensor:
    """One grey square per image, side uniform in [0, max_fraction·size], centre uniform."""
    n, _, h, w = x.shape
    side = rng.rand(n, g, device=x.device) * max_fraction * min(h, w)
    cy = rng.rand(n, g, device=x.device) * h
    cx = rng.rand(n, g, device=x.device) * w
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    inside = ((ys - cy.view(-1, 1, 1)).abs() <= side.view(-1, 1, 1) / 2) & \
             ((xs - cx.view(-1, 1, 1)).abs() <= side.view(-1, 1, 1) / 2)
    return torch.where(inside.unsqueeze(1), torch.full_like(x, 0.5), x)


def rand_augment(x: torch.Tensor, g: torch.Generator, num_ops: int = 2, cutout_fraction: float = 0.5) -> torch.Tensor:
    """FixMatch's strong view of a float batch in [0, 1] (see the module docstring)."""
    ops = list(OPERATIONS.values())
    for _ in range(num_ops):
        # which images take which operation is read on the host (no device sync per operation)
        choice = rng.randint(0, len(ops), x.shape[0], rng.host_twin(g))
        magnitude = rng.rand(x.shape[0], g, device=x.device, dtype=x.dtype)
        out = x.clone()
        for k, op in enumerate(ops):
            chosen = (choice == k).nonzero().squeeze(1)
            if len(chosen):
                rows = rng.onto(chosen, x.device)
                out[rows] = op(x[rows], magnitude[rows]).to(x.dtype)
        x = out.clamp(0, 1)
    return cutout(x, cutout_fraction, g) if cutout_fraction > 0 else x

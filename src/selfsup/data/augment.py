"""Augmentations applied to whole batches of images, with random parameters per image.

Per-image PIL/torchvision transforms in DataLoader workers take a CPU core away from the
model; here a batch of uint8 images is augmented on the training device in a few tensor
operations (one ``grid_sample`` for crop, resize and flip together), with every random draw
taken from an explicit ``torch.Generator`` so that a step's views are reproducible (resume).

The operations follow torchvision's definitions (``RandomResizedCrop``, ``ColorJitter``,
``RandomGrayscale``, ``GaussianBlur``, ``RandomSolarize``).  Where we simplify, we say so:
crops whose sampled size exceeds the image are clamped instead of re-drawn, and the colour
jitter applies its four operations in one random order per batch rather than per image.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from .. import rng
from ..errors import SelfSupError

_LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class AugmentConfig:
    """Parameters of the SimCLR-style view pipeline (Chen et al. 2020, appendix A).

    ``jitter_strength`` is SimCLR's s: brightness, contrast and saturation factors are drawn
    from [1-0.8s, 1+0.8s] and the hue shift from [-0.2s, 0.2s]; the paper uses s=1 on
    ImageNet and s=0.5 on CIFAR-10.  ``saturation`` and ``hue``, when set, replace the
    saturation factor's spread and the largest hue shift (torchvision's ``ColorJitter``
    arguments): BYOL's recipe is s=0.5 with saturation 0.2, InstDisc's hue 0.4.  Both act on
    colour images only, and change what is drawn, never how many numbers are drawn.  Blur
    (kernel 10% of the side, σ∈[0.1, 2]) is only applied to images of at least
    ``blur_min_size`` pixels: SimCLR drops it on CIFAR.
    """

    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    jitter_strength: float = 0.5
    saturation: float | None = None
    hue: float | None = None
    grayscale_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_min_size: int = 64
    solarize_p: float = 0.0

    def __post_init__(self):
        """One clear message for a setting outside its range (a negative spread or a probability
        above 1 would otherwise draw nonsense silently)."""
        problems = [f"{name} must be in [0, 1], got {getattr(self, name)}"
                    for name in ("flip_p", "jitter_p", "grayscale_p", "blur_p", "solarize_p")
                    if not 0 <= getattr(self, name) <= 1]
        pairs = {"crop_scale": (0, 1), "crop_ratio": (0, math.inf), "blur_sigma": (0, math.inf)}
        for name, (low, high) in pairs.items():
            first, last = getattr(self, name)
            if not low < first <= last <= high:
                problems.append(f"{name} must be two numbers low <= high in ({low}, {high}], got {list(getattr(self, name))}")
        for name, high in (("jitter_strength", math.inf), ("saturation", 1.0), ("hue", 0.5)):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= high:
                problems.append(f"{name} must be in [0, {high}], got {value}")
        if self.blur_min_size < 0:
            problems.append(f"blur_min_size must be at least 0, got {self.blur_min_size}")
        if problems:
            raise SelfSupError("view settings (augment): " + "; ".join(problems))


@dataclass(frozen=True)
class ShiftConfig:
    """The weak view of FixMatch and the semi-supervised papers after it: a horizontal flip with
    probability ``flip_p`` and a shift by whole pixels, up to ``translate`` of the side each
    way, the borders filled by reflection (their "pad 4 and crop 32" on CIFAR: 0.125)."""

    translate: float = 0.125
    flip_p: float = 0.5


def views(pipeline=AugmentConfig, /, **changes) -> dict:
    """Every setting of a view ``pipeline`` (``AugmentConfig``, or the series' one), with
    ``changes``, as a config mapping (pairs as lists): a method's ``augment`` default, complete
    so that any of its keys can be ``--set``."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(pipeline(**changes)).items()}


def crops_only(smallest: float) -> dict:
    """Random crops of ``smallest``-100% of the image and flips, no colour changes (the
    pretext tasks, DeepCluster, the supervised baseline)."""
    return views(crop_scale=(smallest, 1.0), jitter_p=0.0, grayscale_p=0.0, blur_p=0.0, solarize_p=0.0)


# The papers' view recipes (AugmentConfig's defaults are SimCLR's CIFAR-10 recipe: crops of
# 8-100%, colour jitter 0.8 at strength 0.5, greyscale 0.2, blur 0.5 from 64 px).  A method's
# ``augment`` default is one of them; its configs/NAME.yaml writes the same values out.
SIMCLR_VIEWS = views()
MOCO_V2_VIEWS = views(crop_scale=(0.2, 1.0))  # MoCo v2, SimSiam
# InstDisc, MoCo v1: no blur, hue 0.4 (their code also greys before the jitter, where ours greys after it)
INSTDISC_VIEWS = views(crop_scale=(0.2, 1.0), jitter_p=1.0, hue=0.4, blur_p=0.0)
SWAV_VIEWS = views(crop_scale=(0.14, 1.0), jitter_strength=1.0)  # SwAV, DeepCluster-v2 (ImageNet jitter)
BYOL_VIEWS = views(saturation=0.2, blur_p=1.0)  # BYOL's first view (Barlow Twins too) ...
BYOL_SECOND_VIEW = {"blur_p": 0.1, "solarize_p": 0.2}  # ... and what its second view changes


def uniform(n: int, low: float, high: float, g: torch.Generator, device) -> torch.Tensor:
    return rng.rand(n, g, device=device) * (high - low) + low


def chance(n: int, p: float, g: torch.Generator, device) -> torch.Tensor:
    return rng.rand(n, g, device=device) < p


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """Luma of an RGB batch [B, 3, H, W] (ITU-R 601, as torchvision); the channel mean of
    any other channel count (the image itself for one channel)."""
    if x.shape[1] != 3:
        return x.mean(1, keepdim=True)
    weights = torch.tensor(_LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * weights).sum(1, keepdim=True)


def random_resized_crop(x: torch.Tensor, size: int, scale, ratio, flip_p: float,
                        g: torch.Generator) -> torch.Tensor:
    """Crop a random area fraction in ``scale`` with aspect ratio in ``ratio`` from each
    image, flip it horizontally with probability ``flip_p``, and resize it to size×size."""
    n, device = x.shape[0], x.device
    area = uniform(n, scale[0], scale[1], g, device)
    aspect = torch.exp(uniform(n, math.log(ratio[0]), math.log(ratio[1]), g, device))
    width = torch.sqrt(area * aspect).clamp(max=1.0)
    height = torch.sqrt(area / aspect).clamp(max=1.0)
    centre_x = rng.rand(n, g, device=device) * (1 - width) + width / 2
    centre_y = rng.rand(n, g, device=device) * (1 - height) + height / 2
    flip = torch.where(chance(n, flip_p, g, device), -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, device=device, dtype=x.dtype)
    theta[:, 0, 0] = width * flip
    theta[:, 0, 2] = 2 * centre_x - 1
    theta[:, 1, 1] = height
    theta[:, 1, 2] = 2 * centre_y - 1
    grid = F.affine_grid(theta, [n, x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def random_shift(x: torch.Tensor, cfg: ShiftConfig, size: int, g: torch.Generator) -> torch.Tensor:
    """Flip and shift each image of ``x`` (see ``ShiftConfig``) and resize it to size×size."""
    n, side, device = x.shape[0], x.shape[-1], x.device
    most = int(cfg.translate * side)
    shift = rng.randint(-most, most + 1, (2, n), g, device=device).to(x.dtype) * 2 / side
    flip = torch.where(chance(n, cfg.flip_p, g, device), -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, device=device, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 1, 1] = flip, 1.0
    theta[:, 0, 2], theta[:, 1, 2] = shift[0], shift[1]
    grid = F.affine_grid(theta, [n, x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _blend(a: torch.Tensor, b: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    factor = factor.view(-1, 1, 1, 1)
    return (factor * a + (1 - factor) * b).clamp(0, 1)


def shift_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue of an RGB batch by ``shift`` (fractions of a turn, one per image)."""
    r, g, b = x.unbind(1)
    value, _ = x.max(1)
    delta = value - x.min(1).values
    saturation = delta / value.clamp_min(1e-8)
    safe_delta = delta.clamp_min(1e-8)
    rc, gc, bc = (value - r) / safe_delta, (value - g) / safe_delta, (value - b) / safe_delta
    hue = torch.where(value == r, bc - gc, torch.where(value == g, 2.0 + rc - bc, 4.0 + gc - rc))
    hue = (hue / 6.0 + shift.view(-1, 1, 1)) % 1.0
    sector = torch.floor(hue * 6.0)
    frac = hue * 6.0 - sector
    sector = sector.long() % 6
    p = value * (1 - saturation)
    q = value * (1 - saturation * frac)
    t = value * (1 - saturation * (1 - frac))
    choices = {  # per output channel, the value for hue sectors 0..5
        0: (value, q, p, p, t, value),
        1: (t, value, value, q, p, p),
        2: (p, p, t, value, value, q),
    }
    channels = [torch.stack(choices[c], 0).gather(0, sector[None]).squeeze(0) for c in range(3)]
    return torch.stack(channels, 1)


def color_jitter(x: torch.Tensor, strength: float, p: float, g: torch.Generator,
                 saturation: float | None = None, hue: float | None = None) -> torch.Tensor:
    """SimCLR's colour distortion with per-image factors; applied to each image with
    probability ``p`` (the others get identity factors).  Saturation and hue act on RGB only;
    their spreads are 0.8 and 0.2 times ``strength`` unless given."""
    n, device = x.shape[0], x.device
    applied = chance(n, p, g, device)
    def factors(spread: float, centre: float) -> torch.Tensor:
        drawn = uniform(n, centre - spread, centre + spread, g, device)
        return torch.where(applied, drawn, torch.full_like(drawn, centre))
    brightness, contrast = factors(0.8 * strength, 1.0), factors(0.8 * strength, 1.0)
    saturation = factors(0.8 * strength if saturation is None else saturation, 1.0)
    hue = factors(0.2 * strength if hue is None else hue, 0.0)
    ops = {
        "brightness": lambda im: (im * brightness.view(-1, 1, 1, 1)).clamp(0, 1),
        "contrast": lambda im: _blend(im, grayscale(im).mean((1, 2, 3), keepdim=True), contrast),
    }
    if x.shape[1] == 3:
        ops["saturation"] = lambda im: _blend(im, grayscale(im), saturation)
        ops["hue"] = lambda im: shift_hue(im, hue)
    names = list(ops)
    for i in rng.randperm(len(names), rng.host_twin(g)).tolist():
        x = ops[names[i]](x)
    return x


def random_grayscale(x: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
    """RGB images replaced by their luma (kept 3-channel) with probability ``p``; others unchanged."""
    if x.shape[1] != 3:
        return x
    chosen = chance(x.shape[0], p, g, x.device).view(-1, 1, 1, 1)
    return torch.where(chosen, grayscale(x).expand_as(x), x)


def gaussian_blur(x: torch.Tensor, p: float, sigma_range, g: torch.Generator) -> torch.Tensor:
    """Separable Gaussian blur, kernel side 10% of the image (odd, at least 3), σ per image."""
    n, c, h, w = x.shape
    kernel_size = max(3, int(0.1 * min(h, w)) // 2 * 2 + 1)
    sigma = uniform(n, sigma_range[0], sigma_range[1], g, x.device)
    sigma = torch.where(chance(n, p, g, x.device), sigma, torch.zeros_like(sigma))
    offsets = torch.arange(kernel_size, device=x.device, dtype=x.dtype) - kernel_size // 2
    kernel = torch.exp(-offsets.view(1, -1) ** 2 / (2 * sigma.clamp_min(1e-3).view(-1, 1) ** 2))
    kernel = kernel / kernel.sum(1, keepdim=True)  # σ=0 leaves a unit impulse: no blur
    kernel = kernel.repeat_interleave(c, 0)
    pad = kernel_size // 2
    flat = x.reshape(1, n * c, h, w)
    flat = F.conv2d(F.pad(flat, (pad, pad, 0, 0), mode="reflect"), kernel.view(n * c, 1, 1, -1), groups=n * c)
    flat = F.conv2d(F.pad(flat, (0, 0, pad, pad), mode="reflect"), kernel.view(n * c, 1, -1, 1), groups=n * c)
    return flat.view(n, c, h, w)


def random_solarize(x: torch.Tensor, p: float, g: torch.Generator, threshold: float = 0.5) -> torch.Tensor:
    chosen = chance(x.shape[0], p, g, x.device).view(-1, 1, 1, 1)
    return torch.where(chosen & (x >= threshold), 1 - x, x)


def augment_batch(x: torch.Tensor, cfg: AugmentConfig | ShiftConfig, size: int, g: torch.Generator) -> torch.Tensor:
    """One random view of each image of a float batch in [0, 1]; returns values in [0, 1]."""
    if isinstance(cfg, ShiftConfig):
        return random_shift(x, cfg, size, g)
    x = random_resized_crop(x, size, cfg.crop_scale, cfg.crop_ratio, cfg.flip_p, g)
    if cfg.jitter_p > 0 and cfg.jitter_strength > 0:
        x = color_jitter(x, cfg.jitter_strength, cfg.jitter_p, g, cfg.saturation, cfg.hue)
    if cfg.grayscale_p > 0:
        x = random_grayscale(x, cfg.grayscale_p, g)
    if cfg.blur_p > 0 and size >= cfg.blur_min_size:
        x = gaussian_blur(x, cfg.blur_p, cfg.blur_sigma, g)
    if cfg.solarize_p > 0:
        x = random_solarize(x, cfg.solarize_p, g)
    return x

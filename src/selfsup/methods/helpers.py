"""Pieces several methods share: momentum (EMA) targets, a feature queue (with nearest
neighbours), batch shuffling, asymmetric view pairs.

They are pure functions or small modules, tested once (``tests/test_helpers.py``), so each
method file stays a screen long.
"""
from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..data.augment import AugmentConfig
from ..data.views import ViewSpec
from ..distributed import gather_no_grad, gather_with_grad, world_info
from .. import rng


def without(settings: dict, *names: str) -> dict:
    """A method's ``defaults`` or ``limits`` without ``names``, those of the method it builds on
    that it does not use (FixMatch's ``threshold``, SimCLR's ``series_augment``)."""
    return {k: v for k, v in settings.items() if k not in names}


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """target ← momentum·target + (1 − momentum)·online, parameter by parameter (MoCo's key
    encoder, BYOL's target).  Buffers (BatchNorm statistics) are the target's own."""
    for t, o in zip(target.parameters(), online.parameters()):
        t.mul_(momentum).add_(o.detach(), alpha=1 - momentum)


def cosine_momentum(step: int, total_steps: int, base: float, final: float = 1.0) -> float:
    """BYOL's schedule: ``base`` at step 0 rising to ``final`` at the last step along a cosine."""
    progress = min(max(step / max(1, total_steps), 0.0), 1.0)
    return final - (final - base) * (math.cos(math.pi * progress) + 1) / 2


def asymmetric_views(augment: dict, second_changes: dict) -> list[ViewSpec]:
    """Two views, the second made with ``augment`` updated by ``second_changes`` (BYOL's
    asymmetric blur and solarisation, used by BYOL and Barlow Twins)."""
    return [ViewSpec(AugmentConfig(**augment)), ViewSpec(AugmentConfig(**{**augment, **second_changes}))]


def small_crops(pipeline: AugmentConfig, count: int, scale, size: int | None, image_size: int,
                **changes) -> list[ViewSpec]:
    """Multi-crop's small crops (SwAV, DINO, MSN's focal views, LeJEPA's local views): ``count``
    crops of ``scale`` of the image, ``pipeline``'s other settings with ``changes``, at ``size``
    pixels (None: 96/224 of ``image_size``, at least 8 px); no view spec when ``count`` is 0."""
    if not count:
        return []
    crop = dataclasses.replace(pipeline, crop_scale=tuple(scale), **changes)
    return [ViewSpec(crop, count=count, size=size or max(8, round(image_size * 96 / 224)))]


def encode_by_resolution(encoder: nn.Module, views: list[torch.Tensor]) -> torch.Tensor:
    """``encoder`` on every view, one pass per run of consecutive views of one size (multi-crop's
    global and local crops), outputs concatenated in the order of ``views``."""
    groups: list[list[torch.Tensor]] = []
    for view in views:
        if groups and groups[-1][0].shape[1:] == view.shape[1:]:
            groups[-1].append(view)
        else:
            groups.append([view])
    return torch.cat([encoder(torch.cat(group)) for group in groups])


def frozen_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module`` whose parameters take no gradient (a momentum target), without
    stochastic depth (timm's ``drop_prob`` set to 0: DINO, iBOT, MSN and I-JEPA build their
    target networks without it)."""
    import copy

    target = copy.deepcopy(module)
    for p in target.parameters():
        p.requires_grad_(False)
    for sub in target.modules():
        if getattr(sub, "drop_prob", 0):
            sub.drop_prob = 0.0
    return target


class FeatureQueue(nn.Module):
    """A first-in-first-out queue of feature vectors kept as buffers (saved in checkpoints).

    ``push`` writes the newest vectors over the oldest.  With ``gather=True`` the vectors of
    every rank are gathered first and written on every rank, so all ranks hold the same queue
    without any broadcast (MoCo's dictionary of keys).  ``random_init`` starts the queue full
    of random unit vectors, as MoCo's code does; otherwise ``items()`` returns only what was
    pushed so far.  ``push(x, index)`` also keeps each vector's image index (−1 for the random
    start), read by ``indices()``: MoCo leaves a query's own image out of its negatives.  The
    count of vectors pushed is kept on the host too (and read back from a loaded state), so that
    ``items()`` does not wait for the device every step."""

    def __init__(self, size: int, dim: int, random_init: bool = False):
        super().__init__()
        init = F.normalize(torch.randn(size, dim), dim=1) if random_init else torch.zeros(size, dim)
        self.register_buffer("queue", init)
        self.register_buffer("index", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.tensor(size if random_init else 0, dtype=torch.long))
        self._filled = int(self.filled)  # the buffer's value, on the host

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._filled = int(self.filled)

    @property
    def size(self) -> int:
        return self.queue.shape[0]

    @property
    def full(self) -> bool:
        return self._filled == self.size

    def items(self) -> torch.Tensor:
        return self.queue[: self._filled]

    def indices(self) -> torch.Tensor:
        """The image index of each of ``items()`` (−1 where unknown)."""
        return self.index[: self._filled]

    @torch.no_grad()
    def push(self, x: torch.Tensor, index: torch.Tensor | None = None, gather: bool = True) -> None:
        if index is None:
            index = torch.full((x.shape[0],), -1, dtype=torch.long, device=x.device)
        x, index = (gather_no_grad(x), gather_no_grad(index)) if gather else (x.detach(), index)
        x, index = x[-self.size:], index[-self.size:]
        rows = (self.pointer + torch.arange(x.shape[0], device=x.device)) % self.size
        self.queue[rows] = x.to(self.queue.dtype)
        self.index[rows] = index.to(self.index.device)
        self.pointer.copy_((self.pointer + x.shape[0]) % self.size)
        self._filled = min(self._filled + x.shape[0], self.size)
        self.filled.fill_(self._filled)

    @torch.no_grad()
    def nearest(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """For each row of ``x``, the queued vector of highest cosine similarity among those of
        other images than ``index`` (NNCLR's support set); the row itself where no such
        vector is queued yet."""
        items, owners = self.items(), self.indices()
        if items.shape[0] == 0:
            return x.detach()
        similarity = F.normalize(x.detach().float(), dim=1) @ F.normalize(items.float(), dim=1).T
        similarity.masked_fill_(owners.unsqueeze(0) == index.unsqueeze(1), float("-inf"))
        best, position = similarity.max(dim=1)
        return torch.where(torch.isinf(best).unsqueeze(1), x.detach(), items[position].to(x.dtype))


class MemoryBank(nn.Module):
    """One L2-normalised vector per training image, kept as a buffer (saved in checkpoints):
    InstDisc's memory bank and MoCo's memory-bank dictionary.  Starts as random unit vectors
    (Wu et al. 2018).  ``update`` gathers the batch's indices and vectors from every rank and
    writes them on every rank (no broadcast), as v ← normalise(m·v + (1 − m)·f)."""

    def __init__(self, size: int, dim: int, generator: torch.Generator | None = None):
        super().__init__()
        self.register_buffer("bank", F.normalize(rng.randn((size, dim), generator or rng.cpu_generator(0)), dim=1))

    def __getitem__(self, indices: torch.Tensor) -> torch.Tensor:
        return self.bank[indices]

    def sample(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """``count`` indices drawn uniformly (with replacement) by ``generator``."""
        return rng.randint(0, self.bank.shape[0], count, generator, device=self.bank.device)

    @torch.no_grad()
    def update(self, indices: torch.Tensor, features: torch.Tensor, momentum: float) -> None:
        indices, features = gather_no_grad(indices), gather_no_grad(features).to(self.bank.dtype)
        mixed = momentum * self.bank[indices] + (1 - momentum) * F.normalize(features, dim=1)
        self.bank[indices] = F.normalize(mixed, dim=1)


def shuffled_order(total: int, seed: int, device=None) -> torch.Tensor:
    """A permutation of ``total`` items drawn from ``seed`` alone: every rank draws the same one."""
    return rng.randperm(total, rng.cpu_generator(seed), device=device)


@torch.no_grad()
def shuffle_across_ranks(x: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """MoCo's shuffling BN: the global batch, permuted by ``seed``; each rank gets its slice.
    Returns (this rank's shuffled inputs, the index that restores the global order).  On one
    device it permutes the batch, so split-BN groups see other images than the query's groups."""
    rank, world = world_info()
    everything = gather_no_grad(x)
    order = shuffled_order(everything.shape[0], seed, x.device)
    local = order.view(world, -1)[rank]
    return everything[local], torch.argsort(order)


def unshuffle_across_ranks(y: torch.Tensor, restore: torch.Tensor) -> torch.Tensor:
    """This rank's outputs of ``shuffle_across_ranks``'s inputs back in the original order;
    differentiable when ``y`` requires grad (each output's gradient returns to the rank that
    computed it: MoCo's end-to-end keys)."""
    rank, world = world_info()
    everything = gather_with_grad(y) if y.requires_grad else gather_no_grad(y)
    return everything[restore].view(world, -1, *y.shape[1:])[rank]


def encode_tiles(backbone: nn.Module, tiles: torch.Tensor, size: int | None = None) -> torch.Tensor:
    """Backbone features of [B, T, C, h, w] tiles as [B, T, D], the tiles optionally resized to
    ``size`` px first (jigsaw, relative patch location: one shared encoder for every tile)."""
    b, t = tiles.shape[:2]
    flat = tiles.flatten(0, 1)
    if size and size != flat.shape[-1]:
        flat = F.interpolate(flat, size=(size, size), mode="bilinear", align_corners=False)
    return backbone(flat).view(b, t, -1)


def classification(logits: torch.Tensor, target: torch.Tensor, **options) -> dict:
    """Cross-entropy of ``logits`` against ``target`` (``options`` go to ``F.cross_entropy``) and
    the batch accuracy, the step output of every method that classifies (pretext tasks, the
    supervised baseline)."""
    return {"loss": F.cross_entropy(logits, target, **options),
            "accuracy": (logits.argmax(1) == target).float().mean().detach()}

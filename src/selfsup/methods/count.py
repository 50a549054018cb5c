"""Counting visual primitives: Noroozi, Pirsiavash, Favaro, "Representation Learning by
Learning to Count", ICCV 2017.

A feature φ that counts visual primitives must be additive: the counts of the 2×-downsampled
image D∘x equal the sum of the counts of its four tiles T_j∘x (the quadrants, at the same
resolution as D∘x).  The loss is ‖φ(D∘x) − Σ_j φ(T_j∘x)‖² plus the contrastive term
max(0, M − ‖φ(D∘y) − Σ_j φ(T_j∘x)‖²) with another image y of the batch (the previous one), which
rules out the trivial φ = 0.  φ is the backbone followed by a linear layer and a ReLU (counts
are non-negative), ``count_dim`` wide; the paper uses 1000 counts and M = 10; we default to
128 counts with M scaled by the width (M = 10 · 128/1000 ≈ 1.28, our choice, which keeps
the hinge active at the same per-count scale).  Optimiser: Adam lr 1e-4 as the paper's.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..data.augment import AugmentConfig, crops_only
from ..data.views import ViewSpec
from .base import Method


class Count(Method):
    """Counting (Noroozi et al. 2017): counts of the downsampled image = sum of the counts of its tiles."""

    name = "count"
    defaults = {"count_dim": 128, "margin": None, "augment": crops_only(0.6)}
    limits = {"count_dim": (1, None), "margin": (0, None)}

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        self.counter = nn.Sequential(nn.Linear(self.feature_dim, cfg["count_dim"]), nn.ReLU())
        self.margin = cfg["margin"] if cfg["margin"] is not None else 10 * cfg["count_dim"] / 1000
        self.views = [ViewSpec(AugmentConfig(**cfg["augment"]), count=1)]

    def count(self, x: torch.Tensor) -> torch.Tensor:
        return self.counter(self.backbone(x))

    def training_step(self, batch, step):
        (x,) = batch["views"]
        half = x.shape[-1] // 2
        tiles = torch.cat([x[:, :, :half, :half], x[:, :, :half, half:2 * half],
                           x[:, :, half:2 * half, :half], x[:, :, half:2 * half, half:2 * half]])
        small = F.interpolate(x, size=(half, half), mode="bilinear", antialias=True, align_corners=False)
        counts = self.count(torch.cat([small, tiles]))  # one pass: BatchNorm sees both kinds of input
        whole, parts = counts[:x.shape[0]], counts[x.shape[0]:].view(4, x.shape[0], -1).sum(dim=0)
        additive = ((whole - parts) ** 2).sum(dim=1)
        other = whole.roll(1, dims=0)  # the previous image's counts: y ≠ x
        contrastive = F.relu(self.margin - ((other - parts) ** 2).sum(dim=1))
        return {"loss": (additive + contrastive).mean(), "additive": additive.mean().detach(),
                "contrastive": contrastive.mean().detach()}

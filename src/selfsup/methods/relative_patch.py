"""Relative patch location: Doersch, Gupta, Efros, "Unsupervised Visual Representation
Learning by Context Prediction", ICCV 2015.

The centre tile of a 3×3 grid (with gaps and jitter, ``TileGrid`` as for the jigsaw) and one
of its 8 neighbours, drawn by the method's generator, are encoded by the backbone (shared
weights); their concatenated features go through an MLP that classifies where the
neighbour lies (8-way).  The paper's further remedy against shortcuts, dropping colour
channels ("chromatic aberration"), matters for colour images only and is not applied.
Optimiser: SGD lr 0.01·batch/128 (the paper's rate for its batch), momentum 0.9, weight
decay 5e-4, cosine decay.
"""
from __future__ import annotations

import torch

from ..models.heads import mlp
from .helpers import classification
from .jigsaw import TileTask
from .. import rng


class RelativePatch(TileTask):
    """Relative patch location (Doersch et al. 2015): 8-way position of a neighbour tile."""

    name = "relative-patch"

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        self.classifier = mlp(2 * self.feature_dim, self.hidden, 8)

    def training_step(self, batch, step):
        (view,) = batch["views"]
        target = rng.randint(0, 8, view.shape[0], self.generator, device=view.device)
        neighbour = target + (target >= 4).long()  # grid positions 0..8 without the centre, 4
        order = torch.stack([torch.full_like(neighbour, 4), neighbour], dim=1)
        features = self.cut_and_encode(view, order)
        return classification(self.classifier(features.flatten(1)), target.to(view.device))

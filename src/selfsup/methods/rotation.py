"""RotNet: Gidaris, Singh, Komodakis, "Unsupervised Representation Learning by Predicting
Image Rotations", ICLR 2018.

Each image (one mildly augmented view: random crop and flip) appears in the same batch in
all four rotations, 0°, 90°, 180° and 270° (the paper found this better than one random
rotation per image), and the network classifies the rotation.  The paper's classifier is
the network's top convolutional block; with our ResNet backbones we put a 2-layer MLP head
on the pooled features (our choice), so the evaluation protocols see the backbone's output.
Optimiser (SGD lr 0.1, momentum 0.9, weight decay 5e-4, batch 128 → linear scaling) from
the paper; cosine decay instead of its steps.
"""
from __future__ import annotations

import torch

from ..data.augment import AugmentConfig, crops_only
from ..data.views import ViewSpec
from ..models.heads import mlp
from .base import Method
from .helpers import classification


class Rotation(Method):
    """RotNet (Gidaris et al. 2018): 4-way classification of the rotation of each image."""

    name = "rotation"
    defaults = {"head_hidden_dim": None, "augment": crops_only(0.5)}
    limits = {"head_hidden_dim": (1, None)}

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        self.classifier = mlp(self.feature_dim, cfg["head_hidden_dim"] or self.feature_dim, 4)
        self.views = [ViewSpec(AugmentConfig(**cfg["augment"]), count=1)]

    def training_step(self, batch, step):
        (view,) = batch["views"]
        rotated = torch.cat([torch.rot90(view, quarter, dims=(2, 3)) for quarter in range(4)])
        target = torch.arange(4, device=view.device).repeat_interleave(view.shape[0])
        logits = self.classifier(self.backbone(rotated))
        return classification(logits, target)

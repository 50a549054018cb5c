"""SimCLR: Chen, Kornblith, Norouzi, Hinton, "A Simple Framework for Contrastive Learning of
Visual Representations", ICML 2020.

Two augmented views per image, a 2-layer MLP projection head (hidden = feature width, output
128, BatchNorm as in SimCLR v2's code), NT-Xent with τ = 0.5 (paper's CIFAR-10 setting) over
the global batch.  Both views go through the backbone in one pass, so BatchNorm statistics
cover the 2N views of the batch, as in the reference implementation.  Optimiser defaults
(LARS, lr 0.075·√batch from the paper's appendix B.1 for small batches, where its main rule is
0.3·batch/256; weight decay 1e-6, 10 warm-up epochs, cosine) are in ``configs/simclr.yaml``.
"""
from __future__ import annotations

import torch

from ..data.augment import SIMCLR_VIEWS, AugmentConfig
from ..data.series import SERIES_VIEWS
from ..data.views import ViewSpec
from ..losses import nt_xent
from ..models.heads import mlp
from .base import Method


class SimCLR(Method):
    """SimCLR (Chen et al. 2020): NT-Xent between two augmented views, MLP projection head."""

    name = "simclr"
    modalities = ("image", "series")
    defaults = {"temperature": 0.5, "proj_hidden_dim": None, "proj_dim": 128, "augment": SIMCLR_VIEWS,
                "series_augment": SERIES_VIEWS}
    limits = {"temperature": (1e-4, None), "proj_hidden_dim": (1, None), "proj_dim": (1, None)}

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        self.projector = mlp(self.feature_dim, cfg["proj_hidden_dim"] or self.feature_dim, cfg["proj_dim"])
        self.views = [ViewSpec(AugmentConfig(**cfg["augment"]), count=2)]

    def training_step(self, batch, step):
        view1, view2 = batch["views"]
        z = self.projector(self.backbone(torch.cat([view1, view2])))
        return {"loss": self.contrast(*z.chunk(2))}

    def contrast(self, z1, z2):
        """The loss between the two views' projections (over the global batch)."""
        return nt_xent(z1, z2, self.cfg["temperature"], gather=True)

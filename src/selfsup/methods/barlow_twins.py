"""Barlow Twins: Zbontar, Jing, Misra, LeCun, Deny, "Barlow Twins: Self-Supervised Learning
via Redundancy Reduction", ICML 2021.

Both views go through the backbone and a 3-layer projector (BatchNorm and ReLU between
layers); ``barlow_twins`` drives the cross-correlation of the batch-standardised
projections to the identity (λ 0.0051), over the global batch under DDP.  From the paper:
LARS, lr 0.2 for weights and 0.0048 for biases and BatchNorm parameters (batch 2048; here
scaled by batch/256 as in the paper's code), weight decay 1.5e-6, 10 warm-up epochs, cosine
to 1/1000, projector 8192-8192-8192 for ResNet-50, BYOL's views.  Our choice: projector width
4 × the backbone's feature width (8192 for ResNet-50); both views go through the backbone and
projector as one batch, so BatchNorm's statistics span both (the code passes each view on its
own; the loss's own normalisation of each view's embeddings is per view, as the paper's).
"""
from __future__ import annotations

import torch

from ..data.augment import BYOL_VIEWS, BYOL_SECOND_VIEW
from ..losses import barlow_twins
from ..models.heads import mlp
from .base import Method, split_decay
from .helpers import asymmetric_views


class BarlowTwins(Method):
    """Barlow Twins (Zbontar et al. 2021): cross-correlation of two views' projections → identity."""

    name = "barlow-twins"
    defaults = {"lambd": 0.0051, "proj_dim": None, "bias_lr_scale": 0.024, "augment": BYOL_VIEWS, "augment_second": BYOL_SECOND_VIEW}
    limits = {"lambd": (0, None), "proj_dim": (1, None), "bias_lr_scale": (0, None)}

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        dim = cfg["proj_dim"] or 4 * self.feature_dim
        self.projector = mlp(self.feature_dim, dim, dim, layers=3)
        self.views = asymmetric_views(cfg["augment"], cfg["augment_second"])

    def training_step(self, batch, step):
        z1, z2 = self.projector(self.backbone(torch.cat(batch["views"]))).chunk(2)
        return {"loss": barlow_twins(z1, z2, self.cfg["lambd"], gather=True)}

    def parameter_groups(self):
        weights, others = split_decay(p for p in self.parameters() if p.requires_grad)
        return [weights, {**others, "lr_scale": self.cfg["bias_lr_scale"]}]

"""VICReg: Bardes, Ponce, LeCun, "VICReg: Variance-Invariance-Covariance Regularization for
Self-Supervised Learning", ICLR 2022.

Both views go through the backbone and an expander (3 linear layers, BatchNorm and ReLU
between them, 8192 wide for ResNet-50); ``vicreg`` pulls the two expansions together (mean
squared difference, weight 25), keeps every dimension's standard deviation above γ = 1
(weight 25) and decorrelates the dimensions (weight 1), over the global batch under DDP.
From the paper: LARS, lr 0.2·batch/256, weight decay 1e-6, 10 warm-up epochs, cosine,
BYOL's asymmetric views.  Our choice: the expander 4 × the backbone's feature width (8192 for
ResNet-50), as for Barlow Twins.  The three terms are logged beside the loss.
"""
from __future__ import annotations

import torch

from ..data.augment import BYOL_VIEWS, BYOL_SECOND_VIEW
from ..data.series import SERIES_VIEWS
from ..losses import vicreg_terms
from ..models.heads import mlp
from .base import Method
from .helpers import asymmetric_views


class VICReg(Method):
    """VICReg (Bardes et al. 2022): invariance, variance and covariance terms on two views' expansions."""

    name = "vicreg"
    modalities = ("image", "series")
    defaults = {"invariance_weight": 25.0, "variance_weight": 25.0, "covariance_weight": 1.0, "gamma": 1.0,
                "expander_dim": None, "augment": BYOL_VIEWS, "augment_second": BYOL_SECOND_VIEW,
                "series_augment": SERIES_VIEWS}
    limits = {"invariance_weight": (0, None), "variance_weight": (0, None), "covariance_weight": (0, None),
              "gamma": (0, None), "expander_dim": (1, None)}

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        dim = cfg["expander_dim"] or 4 * self.feature_dim
        self.expander = mlp(self.feature_dim, dim, dim, layers=3)
        self.views = asymmetric_views(cfg["augment"], cfg["augment_second"])

    def training_step(self, batch, step):
        z1, z2 = self.expander(self.backbone(torch.cat(batch["views"]))).chunk(2)
        invariance, variance, covariance = vicreg_terms(z1, z2, self.cfg["gamma"], gather=True)
        loss = (self.cfg["invariance_weight"] * invariance + self.cfg["variance_weight"] * variance
                + self.cfg["covariance_weight"] * covariance)
        return {"loss": loss, "invariance": invariance.detach(), "variance": variance.detach(),
                "covariance": covariance.detach()}

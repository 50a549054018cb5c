"""SimSiam: Chen and He, "Exploring Simple Siamese Representation Learning", CVPR 2021.

One encoder (backbone and a 3-layer projector whose output BatchNorm has no affine
parameters) and a bottleneck predictor; each view's prediction is pulled towards the other
view's projection, which is detached (the stop-gradient without which it collapses, Fig. 2):
½·``negative_cosine``(p1, z2) + ½·``negative_cosine``(p2, z1).  From the paper: SGD
lr 0.05·batch/256, momentum 0.9, weight decay 1e-4, cosine decay without warm-up, the
predictor at a fixed learning rate; projector width 2048 and predictor 2048→512→2048
(ResNet-50, and ResNet-18 on CIFAR); views as MoCo v2's.  Our choice: projector width
min(4 × the backbone's feature width, 2048), the predictor's bottleneck a quarter of it; both
views go through the networks as one batch, so BatchNorm's statistics span both (the code
passes each view on its own).
"""
from __future__ import annotations

import torch

from ..data.augment import MOCO_V2_VIEWS, AugmentConfig
from ..data.views import ViewSpec
from ..losses import negative_cosine
from ..models.heads import mlp
from .base import Method, split_decay


class SimSiam(Method):
    """SimSiam (Chen & He 2021): symmetric negative cosine with stop-gradient, predictor MLP."""

    name = "simsiam"
    revision = 2  # 2: weight decay on every parameter, as the reference code (1: weights only)
    defaults = {"proj_dim": None, "pred_hidden_dim": None, "stop_gradient": True, "fixed_lr_predictor": True,
                "augment": MOCO_V2_VIEWS}
    limits = {"proj_dim": (1, None), "pred_hidden_dim": (1, None)}

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        dim = cfg["proj_dim"] or min(4 * self.feature_dim, 2048)
        self.projector = mlp(self.feature_dim, dim, dim, layers=3, last_batch_norm=True)
        self.predictor = mlp(dim, cfg["pred_hidden_dim"] or dim // 4, dim)
        self.views = [ViewSpec(AugmentConfig(**cfg["augment"]), count=2)]

    def training_step(self, batch, step):
        z1, z2 = self.projector(self.backbone(torch.cat(batch["views"]))).chunk(2)
        p1, p2 = self.predictor(z1), self.predictor(z2)
        stop = self.cfg["stop_gradient"]
        return {"loss": (negative_cosine(p1, z2, stop) + negative_cosine(p2, z1, stop)) / 2}

    def parameter_groups(self):
        encoder = [p for name, p in self.named_parameters() if not name.startswith("predictor.")]
        return split_decay(encoder) + split_decay(self.predictor.parameters(), fixed_lr=self.cfg["fixed_lr_predictor"])

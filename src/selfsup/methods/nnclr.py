"""NNCLR: Dwibedi, Aytar, Tompson, Sermanet, Zisserman, "With a Little Help from My Friends:
Nearest-Neighbor Contrastive Learning of Visual Representations", ICCV 2021.

Each view's projection is replaced by its nearest neighbour in a support set (a queue of
earlier projections of the first view, gathered from every rank), which then serves as the
anchor whose positive is the other view's prediction and whose negatives are the other
predictions of the global batch (eq. (2): cross-view negatives only), τ 0.1, symmetrised.
From the paper: support set 98,304, projector 3 layers 2048-2048-256 with BatchNorm after
each, predictor 4096-256, LARS, lr 0.3·batch/256, weight decay 1e-6, 10 warm-up epochs,
cosine, BYOL's views.  Our choices: the support set never offers an image its own earlier
projection (on ImageNet its 98,304 entries cover 8% of the images; on a data set smaller
than the support set every image would find itself, as MoCo's queue would), and an image
whose neighbours are not queued yet (the first step) is its own anchor; projector width the
backbone's feature width, predictor 2 × it (2048 and 4096 for ResNet-50); the projector's
last BatchNorm is affine-free.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.augment import BYOL_VIEWS, BYOL_SECOND_VIEW
from ..errors import SelfSupError
from ..losses import batch_info_nce
from ..models.heads import mlp
from .base import Method
from .helpers import FeatureQueue, asymmetric_views


class NNCLR(Method):
    """NNCLR (Dwibedi et al. 2021): nearest neighbours from a support set as positives."""

    name = "nnclr"
    defaults = {"temperature": 0.1, "support_size": 98304, "proj_hidden_dim": None, "proj_dim": 256,
                "pred_hidden_dim": None, "augment": BYOL_VIEWS, "augment_second": BYOL_SECOND_VIEW}
    limits = {"temperature": (1e-4, None), "support_size": (1, None), "proj_hidden_dim": (1, None),
              "proj_dim": (1, None), "pred_hidden_dim": (1, None)}

    @classmethod
    def check_params(cls, params, run):
        super().check_params(params, run)
        if params["support_size"] < run.batch_size:
            raise SelfSupError(f"params.support_size={params['support_size']} must be at least the batch size "
                               f"{run.batch_size}")

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        self.projector = mlp(self.feature_dim, cfg["proj_hidden_dim"] or self.feature_dim, cfg["proj_dim"],
                             layers=3, last_batch_norm=True)
        self.predictor = mlp(cfg["proj_dim"], cfg["pred_hidden_dim"] or 2 * self.feature_dim, cfg["proj_dim"])
        self.support = FeatureQueue(cfg["support_size"], cfg["proj_dim"])
        self.views = asymmetric_views(cfg["augment"], cfg["augment_second"])

    def training_step(self, batch, step):
        z = self.projector(self.backbone(torch.cat(batch["views"])))
        p1, p2 = self.predictor(z).chunk(2)
        z1, z2 = z.chunk(2)
        index, temperature = batch["index"], self.cfg["temperature"]
        neighbour1, neighbour2 = self.support.nearest(z, torch.cat([index, index])).chunk(2)
        loss = (batch_info_nce(neighbour1, p2, temperature, gather=True)
                + batch_info_nce(neighbour2, p1, temperature, gather=True)) / 2
        self.support.push(F.normalize(z1.detach(), dim=1), index)
        return {"loss": loss}

"""SwAV: Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster
Assignments", NeurIPS 2020.

Multi-crop views (2 global crops, scale (0.14, 1), and 6 small crops, scale (0.05, 0.14),
of 96/224 of the image side, both options) go through the backbone one resolution at a time,
then a 2-layer MLP head to L2-normalised 128-d embeddings and a linear layer of prototypes
(3000, L2-normalised before every step).  ``swav`` computes the global crops' codes with
Sinkhorn-Knopp (ε 0.05, 3 iterations, sums all-reduced across ranks) and every crop predicts
the other crops' codes (τ 0.1).  The prototypes' gradients are dropped before the optimiser
step during the first epoch (``freeze_prototypes_epochs``), which keeps DDP's parameter
set unchanged.  For small batches an optional queue of earlier global-crop embeddings
(``queue_size`` per rank: the paper's 3840 is the sum over ranks; from ``queue_start_epoch``)
joins the Sinkhorn problem once it is full, as the reference code.  Optimiser (LARS, lr 0.6 for
batch 256, weight decay 1e-6, final lr 1/1000 of the peak) from the paper's small-batch
settings, adapting and decaying every parameter (the code's LARC over all of them); its 10
warm-up epochs from the large-batch ones (our choice).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..data.augment import SWAV_VIEWS, AugmentConfig
from ..data.views import ViewSpec
from ..losses import swav
from ..models.heads import mlp
from .base import Method, one_group
from .helpers import FeatureQueue, encode_by_resolution, small_crops


class SwAV(Method):
    """SwAV (Caron et al. 2020): swapped prediction of Sinkhorn codes over prototypes, multi-crop."""

    name = "swav"
    revision = 2  # 2: the queue joins once full; LARS adapts and decays every parameter (the code's LARC)
    defaults = {"temperature": 0.1, "epsilon": 0.05, "sinkhorn_iterations": 3, "num_prototypes": 3000,
                "proj_hidden_dim": None, "proj_dim": 128, "freeze_prototypes_epochs": 1, "small_crops": 6,
                "small_crop_size": None, "small_crop_scale": [0.05, 0.14], "queue_size": 0,
                "queue_start_epoch": 15, "augment": SWAV_VIEWS}
    limits = {"temperature": (1e-4, None), "epsilon": (1e-4, None), "sinkhorn_iterations": (0, None),
              "num_prototypes": (1, None), "proj_hidden_dim": (1, None), "proj_dim": (1, None),
              "freeze_prototypes_epochs": (0, None), "small_crops": (0, None), "small_crop_size": (1, None),
              "queue_size": (0, None), "queue_start_epoch": (0, None)}

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        self.projector = mlp(self.feature_dim, cfg["proj_hidden_dim"] or self.feature_dim, cfg["proj_dim"])
        self.prototypes = nn.Linear(cfg["proj_dim"], cfg["num_prototypes"], bias=False)
        full = AugmentConfig(**cfg["augment"])
        self.views = [ViewSpec(full, count=2)] + small_crops(full, cfg["small_crops"], cfg["small_crop_scale"],
                                                             cfg["small_crop_size"], run.image_size)
        self.queues = nn.ModuleList(FeatureQueue(cfg["queue_size"], cfg["proj_dim"]) for _ in range(2))
        self.epoch = 0

    def on_epoch_start(self, epoch, embed):
        self.epoch = epoch

    def training_step(self, batch, step):
        with torch.no_grad():
            self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))
        views = batch["views"]
        # one backbone pass per resolution, one head pass over all crops (BatchNorm sees them all)
        features = encode_by_resolution(self.backbone, views)
        z = F.normalize(self.projector(features), dim=1)
        scores = self.prototypes(z).chunk(len(views))
        queue_scores = None
        if self.cfg["queue_size"] and self.epoch >= self.cfg["queue_start_epoch"]:
            if all(queue.full for queue in self.queues):
                with torch.no_grad():
                    queue_scores = [self.prototypes(queue.items()) for queue in self.queues]
            for queue, crop in zip(self.queues, z.chunk(len(views))[:2]):
                queue.push(crop, gather=False)  # each rank keeps its own crops; Sinkhorn sums over ranks
        loss = swav(scores, 2, self.cfg["temperature"], self.cfg["epsilon"], self.cfg["sinkhorn_iterations"],
                    queue_scores, gather=True)
        return {"loss": loss}

    def parameter_groups(self):
        return one_group(self)

    def on_before_optimizer_step(self, epoch, step):
        if epoch < self.cfg["freeze_prototypes_epochs"]:
            self.prototypes.weight.grad = None

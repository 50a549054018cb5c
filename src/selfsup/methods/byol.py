"""BYOL: Grill et al., "Bootstrap Your Own Latent: A New Approach to Self-Supervised
Learning", NeurIPS 2020.

An online network (backbone, projector, predictor) predicts the projection of the other
view made by a target network (backbone, projector), an exponential moving average of the
online one whose rate τ rises from 0.996 to 1 along a cosine over the run; the loss is the
paper's eq. (2) in both directions, 2 − 2·cos(p, z) each (``2 + 2·negative_cosine``), so its
gradient has the paper's size against weight decay.  From the paper: projector
and predictor MLPs with hidden width 4096 and output 256 for ResNet-50 (feature 2048), LARS,
lr 0.2·batch/256, weight decay 1.5e-6, 10 warm-up epochs, asymmetric views (blur 1.0 / 0.1,
solarise 0 / 0.2).  Our choice: hidden width 2 × the backbone's feature width (4096 for
ResNet-50), so that narrow backbones get proportionate heads.
"""
from __future__ import annotations

import torch

from ..data.augment import BYOL_VIEWS, BYOL_SECOND_VIEW
from ..data.series import SERIES_VIEWS
from ..losses import negative_cosine
from ..models.heads import mlp
from .base import Method
from .helpers import asymmetric_views, cosine_momentum, ema_update, frozen_copy


class BYOL(Method):
    """BYOL (Grill et al. 2020): online network predicts an EMA target network's projection."""

    name = "byol"
    modalities = ("image", "series")
    revision = 2  # 2: the paper's 2 − 2·cos per direction (1: −cos, half the gradient)
    defaults = {"base_momentum": 0.996, "final_momentum": 1.0, "use_predictor": True, "proj_hidden_dim": None,
                "proj_dim": 256, "augment": BYOL_VIEWS, "augment_second": BYOL_SECOND_VIEW,
                "series_augment": SERIES_VIEWS}
    limits = {"base_momentum": (0, 1), "final_momentum": (0, 1), "proj_hidden_dim": (1, None), "proj_dim": (1, None)}
    #: an affine-free BatchNorm on the projection (MoCo v3's projector; not BYOL's)
    projection_batch_norm = False

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        hidden = cfg["proj_hidden_dim"] or 2 * self.feature_dim
        self.projector = mlp(self.feature_dim, hidden, cfg["proj_dim"], last_batch_norm=self.projection_batch_norm)
        self.predictor = mlp(cfg["proj_dim"], hidden, cfg["proj_dim"]) if cfg["use_predictor"] else torch.nn.Identity()
        self.target_backbone, self.target_projector = frozen_copy(self.backbone), frozen_copy(self.projector)
        self.views = asymmetric_views(cfg["augment"], cfg["augment_second"])

    def training_step(self, batch, step):
        both = torch.cat(batch["views"])
        online = self.predictor(self.projector(self.backbone(both))).chunk(2)
        with torch.no_grad():
            target = self.target_projector(self.target_backbone(both)).chunk(2)
        return self.views_loss(online, target)

    def views_loss(self, online, target) -> dict:
        """The step's output: each view's online output against the other view's target, summed."""
        return {"loss": sum(self.objective(p, z) for p, z in ((online[0], target[1]), (online[1], target[0])))}

    def objective(self, prediction, target):
        """The loss of one direction: one view's prediction against the other view's target."""
        return 2 + 2 * negative_cosine(prediction, target)

    def on_step_end(self, step, total_steps):
        momentum = cosine_momentum(step, total_steps, self.cfg["base_momentum"], self.cfg["final_momentum"])
        ema_update(self.target_backbone, self.backbone, momentum)
        ema_update(self.target_projector, self.projector, momentum)

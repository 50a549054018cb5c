"""MoCo v3: Chen, Xie, He, "An Empirical Study of Training Self-Supervised Vision
Transformers", ICCV 2021.

BYOL's networks (online backbone, projector and predictor; a momentum copy of backbone and
projector whose rate rises from 0.99 to 1 along a cosine) trained contrastively: each view's
prediction is a query whose positive is the momentum key of the other view and whose
negatives are the other keys of the global batch (no queue), InfoNCE scaled by 2τ, summed
over both directions.  From the paper's ResNet-50 setting (official code): τ 1.0 (the ViT
setting is 0.2: ``params.temperature``), projector 2 layers 4096-256 ending in an affine-free
BatchNorm, predictor 2 layers 4096-256, LARS, lr 0.6·batch/256 (the 100-epoch recipe),
weight decay 1e-6, 10 warm-up epochs, cosine, BYOL's asymmetric views with crops of at least
20% of the image.  Our choice: hidden width 2 × the backbone's feature width (4096 for
ResNet-50), as BYOL's here.
"""
from __future__ import annotations

from ..data.augment import BYOL_SECOND_VIEW, views
from ..losses import batch_info_nce
from .byol import BYOL
from .helpers import without


class MoCoV3(BYOL):
    """MoCo v3 (Chen et al. 2021): symmetric InfoNCE of predictions against momentum keys of the batch."""

    name = "moco-v3"
    revision = 1
    modalities = ("image",)  # images only: its series views are not measured (BYOL's are)
    defaults = {**without(BYOL.defaults, "series_augment"), "base_momentum": 0.99, "temperature": 1.0,
                "augment": views(crop_scale=(0.2, 1.0), saturation=0.2, blur_p=1.0), "augment_second": BYOL_SECOND_VIEW}
    limits = {**BYOL.limits, "temperature": (1e-4, None)}
    projection_batch_norm = True

    def objective(self, query, key):
        temperature = self.cfg["temperature"]
        return 2 * temperature * batch_info_nce(query, key, temperature, gather=True)

"""TiCo: Zhu, Moraes, Karakulak, Sobol, Canziani, LeCun, "TiCo: Transformation Invariance and
Covariance Contrast for Self-Supervised Visual Representation Learning", 2022.

BYOL's networks without the predictor: the online embedding of each view is pulled towards
the momentum network's embedding of the other view (transformation invariance), and pushed
out of the directions a running second-moment matrix C of past online embeddings already
covers (covariance contrast: MoCo with an implicit memory of every earlier batch, at no
memory cost), ``tico``.  From the paper: β 0.9 and ρ 8 (the value the paper recommends, as the
reference code's help says; that code and lightly's loss default to 20).  Our choices: both directions in
one loss (each view's embedding against the other's target; C updated once a step with both
online views) and BYOL's recipe for the rest (views, LARS, projector 2 × the backbone's
feature width hidden and 256 out), with the momentum network's rate 0.99 rising to 1 on a
cosine, as in lightly's TiCo example.
"""
from __future__ import annotations

import torch

from ..losses import tico
from .byol import BYOL
from .helpers import without


class TiCo(BYOL):
    """TiCo (Zhu et al. 2022): invariance to the momentum target plus covariance contrast."""

    name = "tico"
    revision = 1
    modalities = ("image",)  # images only: its series views are not measured (BYOL's are)
    defaults = {**without(BYOL.defaults, "series_augment"), "base_momentum": 0.99, "use_predictor": False,
                "beta": 0.9, "rho": 8.0}
    limits = {**BYOL.limits, "beta": (0, 1), "rho": (0, None)}

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        self.register_buffer("covariance", torch.zeros(cfg["proj_dim"], cfg["proj_dim"]))

    def views_loss(self, online, target):
        loss, covariance = tico(torch.cat(online), torch.cat(target[::-1]), self.covariance, self.cfg["beta"],
                                self.cfg["rho"], gather=True)
        self.covariance.copy_(covariance)
        return {"loss": loss}

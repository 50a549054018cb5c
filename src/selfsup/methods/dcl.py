"""DCL and DCLW: Yeh, Hong, Hsu, Liu, Chen, LeCun, "Decoupled Contrastive Learning", ECCV 2022.

SimCLR with the positive pair left out of the denominator (``dcl``), which removes the
negative-positive coupling that makes NT-Xent's gradient shrink when the batch is small;
DCLW also weights each positive by a von Mises–Fisher kernel of its similarity (σ 0.5), so
that harder positives (less similar views) weigh more.  Everything else is SimCLR's
(views, projection head, LARS; ``configs/dcl.yaml``).  From the paper: τ 0.1 and σ 0.5.
"""
from __future__ import annotations

from ..losses import dcl
from .helpers import without
from .simclr import SimCLR


class DCL(SimCLR):
    """DCL (Yeh et al. 2022): SimCLR with the decoupled contrastive loss."""

    name = "dcl"
    modalities = ("image",)  # images only: its series views are not measured (SimCLR's are)
    defaults = {**without(SimCLR.defaults, "series_augment"), "temperature": 0.1, "weight_sigma": None}
    limits = {**SimCLR.limits, "weight_sigma": (1e-4, None)}

    def contrast(self, z1, z2):
        return dcl(z1, z2, self.cfg["temperature"], self.cfg["weight_sigma"], gather=True)


class DCLW(DCL):
    """DCLW (Yeh et al. 2022): DCL whose positives are weighted by a von Mises–Fisher kernel."""

    name = "dclw"
    defaults = {**DCL.defaults, "weight_sigma": 0.5}

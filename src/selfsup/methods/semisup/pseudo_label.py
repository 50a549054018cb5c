"""Pseudo-Label, Lee, ICML-W 2013: the class the network predicts for an unlabelled image is
its target when the prediction's confidence reaches ``threshold``; λu ramps linearly from 0
over the first ``ramp`` fraction of the steps (Lee ramps α from 0 to 3 over epochs 100-600;
we keep λu at 1 and a threshold, as the issue and later papers do).
"""
from __future__ import annotations

import torch.nn.functional as F

from .base import SemiSupervised

class PseudoLabel(SemiSupervised):
    """Pseudo-Label (Lee 2013): confident predictions on unlabelled images as their targets."""

    name = "pseudo-label"
    defaults = {**SemiSupervised.defaults, "ramp": 0.4}
    limits = {**SemiSupervised.limits, "ramp": (0, 1)}
    unlabelled_views = ("weak",)

    def unlabelled_loss(self, batch, step):
        unlabelled = batch["unlabeled"]
        logits = self.logits(unlabelled["views"][0])
        targets, weights = self.pseudo_labels(logits, unlabelled["label"], unlabelled["index"])
        return self.ramp(step) * (F.cross_entropy(logits, targets, reduction="none") * weights).mean()

"""FixMatch, Sohn et al., NeurIPS 2020: the weak view's prediction, when confident
(≥ 0.95), is the target of the strong view (RandAugment with random magnitudes, then
Cutout); λu 1, μ 7, SGD lr 0.03 Nesterov, weight decay 5e-4, EMA 0.999; the learning rate
follows a cosine to 0 (ours: the paper's cos(7πk/16K) ends near 0.2·lr).  Labelled,
weak and strong images go through the network in one batch, as in the paper (BatchNorm
sees all of them).  Weak view: flip and a random crop of 60-100% of the image (our
stand-in for the paper's flip and ±12.5% translation).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ...data.views import ViewSpec
from .base import WEAK, SemiSupervised

class FixMatch(SemiSupervised):
    """FixMatch (Sohn et al. 2020): the weak view's confident prediction is the strong view's target."""

    name = "fixmatch"
    revision = 2  # 2: RandAugment's Equalize is histogram equalisation (2026-11-30; 1: it ranked equal pixels apart)
    unlabelled_views = [ViewSpec(WEAK), ViewSpec(WEAK, rand_augment=2)]

    def extra_terms(self, batch, weak_logits: torch.Tensor, step: int) -> dict:
        """Further loss terms (name -> weighted tensor), for methods built on FixMatch."""
        return {}

    def training_step(self, batch, step):
        labelled, unlabelled = batch["labeled"], batch["unlabeled"]
        n, m = labelled["views"][0].shape[0], unlabelled["views"][0].shape[0]
        logits = self.logits(torch.cat([labelled["views"][0], *unlabelled["views"][:2]]))
        supervised = F.cross_entropy(logits[:n], labelled["label"])
        weak, strong = logits[n:n + m], logits[n + m:]
        targets, weights = self.pseudo_labels(weak, unlabelled["label"])
        consistency = (F.cross_entropy(strong, targets, reduction="none") * weights).mean()
        extra = self.extra_terms(batch, weak, step)
        loss = supervised + self.cfg["lambda_u"] * consistency + sum(extra.values())
        return {"loss": loss, "supervised": supervised.detach(), "unlabelled": consistency.detach(),
                "mask_rate": (weights > 0).float().mean(), **{k: v.detach() for k, v in extra.items()}}

"""FixMatch, Sohn et al., NeurIPS 2020: the weak view's prediction, when confident
(≥ 0.95), is the target of the strong view (RandAugment with random magnitudes, then
Cutout); λu 1, μ 7, SGD lr 0.03 Nesterov, weight decay 5e-4, EMA 0.999; the learning rate
follows a cosine to 0 (ours: the paper's cos(7πk/16K) ends near 0.2·lr).  Labelled,
weak and strong images go through the network in one batch, as in the paper (BatchNorm
sees all of them).  Weak view: flip and a random crop of 60-100% of the image (our
stand-in for the paper's flip and ±12.5% translation: ``translate`` 0.125 gives that).

FixMatch is also the frame of the methods that change only how the weak view's prediction
becomes a target (FlexMatch, FreeMatch, SoftMatch: ``confidence_weights``; UDA:
``consistency_targets``) or what is added to the loss (``extra_terms``: FreeMatch's
fairness, FROST's self-supervised term).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import STRONG_VIEW, SemiSupervised


class FixMatch(SemiSupervised):
    """FixMatch (Sohn et al. 2020): the weak view's confident prediction is the strong view's target."""

    name = "fixmatch"
    revision = 2  # 2: RandAugment's Equalize is histogram equalisation (2026-11-30; 1: it ranked equal pixels apart)
    defaults = {**SemiSupervised.defaults, **STRONG_VIEW[0]}
    limits = {**SemiSupervised.limits, **STRONG_VIEW[1]}
    unlabelled_views = ("weak", "strong")

    def supervised_loss(self, logits: torch.Tensor, labels: torch.Tensor, step: int) -> torch.Tensor:
        """Js on the labelled images' logits (cross-entropy)."""
        return F.cross_entropy(logits, labels)

    def consistency_targets(self, weak_logits: torch.Tensor, pseudo_labels: torch.Tensor) -> torch.Tensor:
        """What the strong view is trained towards: here the hard pseudo-labels."""
        return pseudo_labels

    def extra_terms(self, batch, weak_logits: torch.Tensor, strong_logits: torch.Tensor, weights: torch.Tensor,
                    step: int) -> dict:
        """Further loss terms (name -> weighted tensor), for methods built on FixMatch."""
        return {}

    def training_step(self, batch, step):
        labelled, unlabelled = batch["labeled"], batch["unlabeled"]
        n, m = labelled["views"][0].shape[0], unlabelled["views"][0].shape[0]
        logits = self.logits(torch.cat([labelled["views"][0], *unlabelled["views"][:2]]))
        supervised = self.supervised_loss(logits[:n], labelled["label"], step)
        weak, strong = logits[n:n + m], logits[n + m:]
        pseudo, weights = self.pseudo_labels(weak, unlabelled["label"], unlabelled["index"])
        targets = self.consistency_targets(weak.detach(), pseudo)
        consistency = (F.cross_entropy(strong, targets, reduction="none") * weights).mean()
        extra = self.extra_terms(batch, weak, strong, weights, step)
        loss = supervised + self.cfg["lambda_u"] * consistency + sum(extra.values())
        return {"loss": loss, "supervised": supervised.detach(), "unlabelled": consistency.detach(),
                "mask_rate": (weights > 0).float().mean(), **{k: v.detach() for k, v in extra.items()}}

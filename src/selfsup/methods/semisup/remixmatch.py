"""ReMixMatch, Berthelot et al., ICLR 2020: MixMatch with distribution alignment (the weak
view's prediction times the labelled class marginal, uniform for our class-balanced labelled
sets, over the running mean of the predictions, then sharpened, T 0.5), augmentation
anchoring (the guess of the weak view is the target of strong views: K = 2 here as in USB,
the paper's 8 would cost four times the network), cross-entropy instead of MSE on the mixed
unlabelled part (λu 1.5), a pre-mixup term on the first strong view (λ 0.5) and rotation
prediction on that view rotated by a random multiple of 90° (a linear head on the backbone
features, λ 0.5).  The unlabelled terms ramp up over the first 1/64 of the steps (USB).  The
running mean of the predictions is an EMA (momentum ``ema_p`` 0.999, from the first
batch's mean), USB's choice, where the paper averages the last 128 batches.  The strong views
are FixMatch's RandAugment with Cutout (``fixmatch.py``), as USB also uses RandAugment, where
the paper learns its augmentations' magnitudes (CTAugment).  BatchNorm, as in MixMatch (see
``mixmatch.py``), learns from every forward: the guess on the weak view, the mixed batch and
the strong view with its rotated copy all update the running statistics (which the EMA
network copies), where USB freezes them for all of these but the first interleaved chunk of
the mixed batch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ... import rng
from ...distributed import gather_no_grad
from ...losses.semisup import align_distribution, sharpen
from .base import STRONG_VIEW, start_or_update
from .mixmatch import MixMatch


def rotate_quarters(images: torch.Tensor, quarters: torch.Tensor) -> torch.Tensor:
    """Each image of [B, C, H, W] rotated by its ``quarters`` × 90° (square images)."""
    out = images.clone()
    for k in range(1, 4):
        chosen = quarters == k
        out[chosen] = torch.rot90(images[chosen], k, dims=(2, 3))
    return out


class ReMixMatch(MixMatch):
    """ReMixMatch (Berthelot et al. 2020): distribution alignment, augmentation anchoring, rotation."""

    name = "remixmatch"
    defaults = {**MixMatch.defaults, "lambda_u": 1.5, "ramp": 1 / 64, "lambda_pre_mixup": 0.5, "lambda_rotation": 0.5,
                "ema_p": 0.999, **STRONG_VIEW[0]}
    limits = {**MixMatch.limits, "lambda_pre_mixup": (0, None), "lambda_rotation": (0, None), "ema_p": (0, 1),
              **STRONG_VIEW[1]}
    unlabelled_views = ("weak", "strong", "strong")

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        self.rotation_head = nn.Linear(self.feature_dim, 4)
        self.register_buffer("prediction_mean", torch.zeros(run.num_classes))  # all 0: no batch seen yet

    def guess(self, unlabelled):
        probs = self.logits(unlabelled["views"][0]).float().softmax(1)
        start_or_update(self.prediction_mean, gather_no_grad(probs).mean(0), self.cfg["ema_p"])
        return sharpen(align_distribution(probs, self.prediction_mean), self.cfg["temperature"])

    def mixed_views(self, unlabelled):
        weak, *strong = unlabelled["views"]
        return [*strong, weak]

    def mixed_loss(self, logits, targets):
        return F.cross_entropy(logits, targets)

    def extra_terms(self, unlabelled, guess, step):
        first_strong = unlabelled["views"][1]
        quarters = rng.randint(0, 4, first_strong.shape[0], self.generator, device=first_strong.device)
        features = self.backbone(torch.cat([first_strong, rotate_quarters(first_strong, quarters)]))
        m = first_strong.shape[0]
        pre_mixup = F.cross_entropy(self.classifier(features[:m]), guess)
        rotation = F.cross_entropy(self.rotation_head(features[m:]), quarters)
        return {"pre_mixup": self.cfg["lambda_pre_mixup"] * self.ramp(step) * pre_mixup,
                "rotation": self.cfg["lambda_rotation"] * rotation}

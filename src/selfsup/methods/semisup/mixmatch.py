"""MixMatch, Berthelot et al., NeurIPS 2019: the labels of an unlabelled image guessed as the
mean prediction over K = 2 weak views, sharpened (T 0.5); labelled images (one-hot) and the
unlabelled views (their guess) are shuffled together and mixed pairwise with MixUp
(λ ~ Beta(α, α), α 0.75 as in the paper, where USB's config has 0.5; kept ≥ 0.5 so each mix
stays nearer its own image); cross-entropy on the mixed labelled part, MSE between
probabilities and mixed guesses on the mixed unlabelled part, λu 100 (the paper's starting
value; USB's CIFAR-10 config has 75, CIFAR-100 150, and ``--protocol usb-classic`` sets
USB's λu and α) ramped up linearly over the first 40% of the steps (USB's
config; the paper ramps over 16k steps).  One MixUp draw per step, as in USB.  Our choice: one
forward over the whole mixed batch, so BatchNorm normalises with and learns the statistics of
all of it; the paper's code and USB interleave labelled and unlabelled images into equal
chunks and update BatchNorm on the first chunk only, and USB also freezes it for the label
guesses.  μ 1 as in the paper and USB (an epoch is still one pass over the pool: seven times
FixMatch's steps, each with a seventh of its unlabelled images; at μ 7 the unlabelled term
collapsed the predictions to one class).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from scipy.special import betaincinv

from ... import rng
from ...losses.semisup import sharpen
from ..helpers import without
from .base import SemiSupervised


class MixMatch(SemiSupervised):
    """MixMatch (Berthelot et al. 2019): sharpened label guesses, MixUp of labelled and unlabelled."""

    name = "mixmatch"
    hard_pseudo_labels = False
    defaults = {**without(SemiSupervised.defaults, "threshold"), "unlabelled_ratio": 1, "lambda_u": 100.0, "ramp": 0.4, "temperature": 0.5,
                "alpha": 0.75}
    limits = {**without(SemiSupervised.limits, "threshold"), "ramp": (0, 1), "temperature": (1e-6, None),
              "alpha": (1e-6, None)}
    unlabelled_views = ("weak", "weak")

    def guess(self, unlabelled) -> torch.Tensor:
        """The sharpened label guess of each unlabelled image (no gradient)."""
        probs = torch.stack([self.logits(view).float().softmax(1) for view in unlabelled["views"]]).mean(0)
        return sharpen(probs, self.cfg["temperature"])

    def mixed_views(self, unlabelled) -> list[torch.Tensor]:
        """The unlabelled views that enter MixUp, each with the guess as its target."""
        return unlabelled["views"]

    def mixed_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The unlabelled term on the mixed unlabelled part: MSE between probabilities."""
        return F.mse_loss(logits.float().softmax(1), targets)

    def extra_terms(self, unlabelled, guess: torch.Tensor, step: int) -> dict:
        """Further loss terms (name -> weighted tensor), for ReMixMatch."""
        return {}

    def mixup(self, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each row mixed with a random other row of the same batch, with weight λ' = max(λ, 1−λ)."""
        draw = float(rng.rand((), self.generator))
        weight = float(betaincinv(self.cfg["alpha"], self.cfg["alpha"], draw))  # λ ~ Beta(α, α) by inversion
        weight = max(weight, 1 - weight)
        partner = rng.randperm(inputs.shape[0], self.generator, device=inputs.device)
        return (weight * inputs + (1 - weight) * inputs[partner],
                weight * targets + (1 - weight) * targets[partner])

    def training_step(self, batch, step):
        labelled, unlabelled = batch["labeled"], batch["unlabeled"]
        n = labelled["views"][0].shape[0]
        with torch.no_grad():
            guess = self.guess(unlabelled)
        self.count_pseudo_labels(guess.argmax(1), unlabelled["label"])
        views = self.mixed_views(unlabelled)
        one_hot = F.one_hot(labelled["label"], guess.shape[1]).to(guess.dtype)
        inputs, targets = self.mixup(torch.cat([labelled["views"][0], *views]),
                                     torch.cat([one_hot, *[guess] * len(views)]))
        logits = self.logits(inputs)
        supervised = F.cross_entropy(logits[:n], targets[:n])
        unlabelled_term = self.mixed_loss(logits[n:], targets[n:])
        extra = self.extra_terms(unlabelled, guess, step)
        loss = supervised + self.cfg["lambda_u"] * self.ramp(step) * unlabelled_term + sum(extra.values())
        return {"loss": loss, "supervised": supervised.detach(), "unlabelled": unlabelled_term.detach(),
                **{k: v.detach() for k, v in extra.items()}}

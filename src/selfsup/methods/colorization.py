"""Colorization: Zhang, Isola, Efros, "Colorful Image Colorization", ECCV 2016.

Colour images only.  Each view is converted to CIELAB (``selfsup.data.lab``); the backbone
sees the lightness L alone (one input channel, scaled to [−1, 1]) and a small decoder from
its pooled features predicts, for every pixel, a distribution over the in-gamut ab bins of
side 10 (261 bins reachable from sRGB by our count; the paper's 313 come from its own gamut
estimate).  The loss is the per-pixel cross-entropy against the pixel's own bin (hard
encoding: our choice; the paper soft-encodes over 5 neighbours), weighted by class
rebalancing: w ∝ ((1 − λ)·p̃ + λ/Q)⁻¹ with λ = 0.5, p̃ the training set's ab distribution
smoothed by a Gaussian of σ = 5, normalised so that E_p̃[w] = 1 (the paper's).  p̃ is
measured once, at the start of the first epoch, over the whole training split (a buffer,
saved with the run).  ``loss: regression`` predicts ab directly with a squared error
instead (the paper's baseline).  Evaluation features: the backbone on L.
Optimiser: Adam lr 1e-3 (our choice; the paper used Adam 3e-5 for much longer).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.augment import AugmentConfig, crops_only
from ..data.lab import ab_bin_of, ab_bins, rgb_to_lab
from ..data.views import ViewSpec
from ..models.backbones import build_backbone
from ..models.heads import ImageDecoder
from .base import Method


class ColourTask(Method):
    """A task on colour images whose backbone sees one channel (L) of CIELAB."""

    colour_only = True

    def lab(self, x: torch.Tensor) -> torch.Tensor:
        """CIELAB of normalised views (the run's normalisation undone)."""
        mean = torch.tensor(self.run.mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.run.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        return rgb_to_lab((x * std + mean).float())

    @staticmethod
    def lightness(lab: torch.Tensor) -> torch.Tensor:
        return lab[:, :1] / 50 - 1


class Colorization(ColourTask):
    """Colorization (Zhang et al. 2016): ab bins of every pixel from the lightness, class-rebalanced."""

    name = "colorization"
    defaults = {"loss": "classification", "rebalance": 0.5, "augment": crops_only(0.6)}
    limits = {"rebalance": (0, 1)}
    choices = {"loss": ("classification", "regression")}

    @classmethod
    def build_backbone(cls, cfg, run):
        return build_backbone(cfg["backbone"], 1, run.image_size)

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        centres, _ = ab_bins()
        out = len(centres) if cfg["loss"] == "classification" else 2
        self.decoder = ImageDecoder(self.feature_dim, out, run.image_size)
        self.register_buffer("class_weights", torch.full((len(centres),), float("nan")))
        self.views = [ViewSpec(AugmentConfig(**cfg["augment"]), count=1)]

    def features(self, x):
        return self.backbone(self.lightness(self.lab(x)))

    def feature_layers(self, x):
        return self.backbone.forward_stages(self.lightness(self.lab(x)))

    def on_epoch_start(self, epoch, embed):
        if self.cfg["loss"] != "classification" or not torch.isnan(self.class_weights).any():
            return None
        centres, _ = ab_bins()
        q = len(centres)

        def histogram(x):
            ab = self.lab(x)[:, 1:].permute(0, 2, 3, 1).reshape(x.shape[0], -1, 2)
            bins = ab_bin_of(ab.reshape(-1, 2)).view(x.shape[0], -1)
            return torch.zeros(x.shape[0], q, device=x.device).scatter_add_(1, bins, torch.ones_like(bins, dtype=torch.float))

        counts, _ = embed(histogram)
        prior = counts.sum(dim=0) / counts.sum()
        kernel = torch.exp(-torch.cdist(centres, centres) ** 2 / (2 * 5.0 ** 2)).to(prior)
        smooth = kernel @ prior / kernel.sum(dim=1)
        smooth = smooth / smooth.sum()
        weights = 1 / ((1 - self.cfg["rebalance"]) * smooth + self.cfg["rebalance"] / q)
        self.class_weights.copy_(weights / (smooth * weights).sum())
        return {"colour_bins_used": float((prior > 0).sum())}

    def training_step(self, batch, step):
        (view,) = batch["views"]
        lab = self.lab(view)
        predicted = self.decoder(self.backbone(self.lightness(lab)))
        if self.cfg["loss"] == "regression":
            return {"loss": F.mse_loss(predicted, lab[:, 1:] / 110)}
        target = ab_bin_of(lab[:, 1:].permute(0, 2, 3, 1).reshape(-1, 2)).view(lab.shape[0], *lab.shape[2:])
        per_pixel = F.cross_entropy(predicted, target, reduction="none")
        return {"loss": (self.class_weights[target] * per_pixel).mean()}

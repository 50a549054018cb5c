"""Split-brain autoencoder: Zhang, Isola, Efros, "Split-Brain Autoencoders: Unsupervised
Learning by Cross-Channel Prediction", CVPR 2017.

Colour images only.  The network is split channel-wise into two halves, two backbones of
half the width: one sees the CIELAB lightness L and predicts the colour ab of every pixel,
the other sees ab and predicts L; the representation is both halves' features concatenated
(as wide as one full-width backbone).  Both predictions are classifications, as in the
paper: ab over the in-gamut bins of side 10 (``selfsup.data.lab``), L over 50 bins of 2
units; each half's decoder works from its pooled features (``ImageDecoder``).  Optimiser:
Adam lr 1e-3 (our choice).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..data.augment import AugmentConfig, crops_only
from ..data.lab import ab_bin_of, ab_bins
from ..data.views import ViewSpec
from ..models.backbones import build_backbone
from ..models.heads import ImageDecoder
from .colorization import ColourTask

L_BINS = 50


class SplitBrainBackbone(nn.Module):
    """Two half-width backbones, on L and on ab of scaled CIELAB input, features concatenated."""

    def __init__(self, settings: dict, image_size: int):
        super().__init__()
        half = {**settings, "width": max(1, settings["width"] // 2)}
        self.lightness = build_backbone(half, 1, image_size)
        self.colour = build_backbone(half, 2, image_size)
        self.feature_dim = self.lightness.feature_dim + self.colour.feature_dim
        self.stage_dims = [a + b for a, b in zip(self.lightness.stage_dims, self.colour.stage_dims)]
        self.layer_names = self.lightness.layer_names

    def forward(self, lab: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.lightness(lab[:, :1]), self.colour(lab[:, 1:])], dim=1)

    def forward_stages(self, lab: torch.Tensor) -> list[torch.Tensor]:
        return [torch.cat(pair, dim=1) for pair in zip(self.lightness.forward_stages(lab[:, :1]),
                                                         self.colour.forward_stages(lab[:, 1:]))]


class SplitBrain(ColourTask):
    """Split-brain (Zhang et al. 2017): L predicts ab, ab predicts L, in two halves of the network."""

    name = "split-brain"
    defaults = {"augment": crops_only(0.6)}

    @classmethod
    def build_backbone(cls, cfg, run):
        return SplitBrainBackbone(cfg["backbone"], run.image_size)

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        centres, _ = ab_bins()
        self.to_colour = ImageDecoder(backbone.lightness.feature_dim, len(centres), run.image_size)
        self.to_lightness = ImageDecoder(backbone.colour.feature_dim, L_BINS, run.image_size)
        self.views = [ViewSpec(AugmentConfig(**cfg["augment"]), count=1)]

    @staticmethod
    def scaled(lab: torch.Tensor) -> torch.Tensor:
        return torch.cat([lab[:, :1] / 50 - 1, lab[:, 1:] / 110], dim=1)

    def features(self, x):
        return self.backbone(self.scaled(self.lab(x)))

    def feature_layers(self, x):
        return self.backbone.forward_stages(self.scaled(self.lab(x)))

    def training_step(self, batch, step):
        (view,) = batch["views"]
        lab = self.lab(view)
        scaled = self.scaled(lab)
        ab_target = ab_bin_of(lab[:, 1:].permute(0, 2, 3, 1).reshape(-1, 2)).view(lab.shape[0], *lab.shape[2:])
        l_target = (lab[:, 0] / (100 / L_BINS)).long().clamp(0, L_BINS - 1)
        colour = F.cross_entropy(self.to_colour(self.backbone.lightness(scaled[:, :1])), ab_target)
        lightness = F.cross_entropy(self.to_lightness(self.backbone.colour(scaled[:, 1:])), l_target)
        return {"loss": colour + lightness, "l_to_ab": colour.detach(), "ab_to_l": lightness.detach()}

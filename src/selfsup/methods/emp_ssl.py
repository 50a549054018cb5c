"""EMP-SSL: Tong, Chen, Ma, LeCun, "EMP-SSL: Towards Self-Supervised Learning in One Training
Epoch", 2023.

Many small patches per image (fixed-scale crops of a quarter of the image, each with its own
colour augmentation) go through the backbone and a 3-layer projector; ``emp_ssl`` spreads each
patch's embeddings over the batch (total coding rate) and pulls every patch of an image
towards the mean of its patches (weight 200).  An image's representation for evaluation is
the mean of its patches' features ("bag of features"), here over crops of the training
patches' area on an even 4 × 4 grid of positions (``eval_grid``), the same for every image,
without colour changes, so that evaluation is deterministic.  From the paper and its code (CIFAR): 20 patches
(the paper's CIFAR runs; its code's default is 100 and the headline runs use 200: ``params.patches``),
crops of 25% of the image resized to the full side, flip, colour jitter p 0.8, greyscale 0.2, blur 0.1
(the code blurs its 32-px patches; ours keep the library's ``blur_min_size`` of 64 px, so no blur
below it, as SimCLR on CIFAR), solarisation 0.1, ε 0.2, projector 4096-4096-1024 for ResNet-18 (feature 512), LARS (trust coefficient
0.005, clipped at the learning rate: ``optimizer.trust_clip``) over Nesterov SGD with lr 0.3, momentum 0.9,
weight decay 1e-4, cosine.  Our choices: the projector scaled to the backbone (hidden 8 ×,
output 2 × the feature width, as the paper's for ResNet-18); evaluation features are the
backbone's (the paper's code reads the projector's first layer) over 16 grid patches (its code:
128 random augmented patches).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..data.augment import AugmentConfig, views
from ..data.views import ViewSpec
from ..losses import emp_ssl
from ..models.heads import mlp
from .base import Method


class EMPSSL(Method):
    """EMP-SSL (Tong et al. 2023): total coding rate and invariance across many patches of each image."""

    name = "emp-ssl"
    revision = 2  # 2: the official code's LARS (trust 0.005 clipped at the rate, Nesterov; 1: trust 0.001, unclipped)
    defaults = {"patches": 20, "invariance_weight": 200.0, "eps": 0.2, "proj_hidden_dim": None, "proj_dim": None,
                "patch_size": None, "eval_grid": 4,
                "augment": views(crop_scale=(0.25, 0.25), crop_ratio=(1.0, 1.0), hue=0.2, blur_p=0.1,
                                 solarize_p=0.1)}
    limits = {"patches": (2, None), "invariance_weight": (0, None), "eps": (1e-6, None), "proj_hidden_dim": (1, None),
              "proj_dim": (1, None), "patch_size": (4, None), "eval_grid": (0, None)}

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        self.projector = mlp(self.feature_dim, cfg["proj_hidden_dim"] or 8 * self.feature_dim,
                             cfg["proj_dim"] or 2 * self.feature_dim, layers=3)
        self.views = [ViewSpec(AugmentConfig(**cfg["augment"]), count=cfg["patches"], size=cfg["patch_size"])]

    def training_step(self, batch, step):
        patches = torch.stack(batch["views"])  # [P, N, C, h, w]
        z = self.projector(self.backbone(patches.flatten(0, 1))).unflatten(0, patches.shape[:2])
        return {"loss": emp_ssl(z, self.cfg["invariance_weight"], self.cfg["eps"])}

    def eval_patches(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The evaluation patches of images ``x``: crops of the training patches' area on an
        even ``eval_grid`` × ``eval_grid`` grid of positions from corner to corner, resized
        as in training (0: the whole image)."""
        grid = self.cfg["eval_grid"]
        if not grid:
            return [x]
        side, full = x.shape[-1], self.cfg["patch_size"] or x.shape[-1]
        crop = max(1, round(side * math.sqrt(self.cfg["augment"]["crop_scale"][1])))
        starts = [round(i * (side - crop) / max(1, grid - 1)) for i in range(grid)]
        patches = [x[..., top:top + crop, left:left + crop] for top in starts for left in starts]
        return [F.interpolate(p, size=(full, full), mode="bilinear", align_corners=False) if crop != full else p
                for p in patches]

    def features(self, x):
        return torch.stack([self.backbone(p) for p in self.eval_patches(x)]).mean(dim=0)

    def feature_layers(self, x):
        stages = [self.backbone.forward_stages(p) for p in self.eval_patches(x)]
        return [torch.stack(layer).mean(dim=0) for layer in zip(*stages)]

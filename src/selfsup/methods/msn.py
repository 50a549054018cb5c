"""MSN: Assran et al., "Masked Siamese Networks for Label-Efficient Learning", ECCV 2022.

An anchor view with a share of its patches dropped (``tokens(keep=...)``) and several small
whole "focal" crops must be assigned to a set of learned prototypes as the EMA
target network assigns the whole target view (``msn``): both take the softmax of the cosine
similarities of their projection to the prototypes over τ; the target's is sharpened and
balanced by Sinkhorn-Knopp, and mean-entropy maximisation (``me_max``) keeps the mean anchor
prediction spread over every prototype.  From the paper and its ViT-S/16 code: 1024 prototypes
of 256 values (uniform in ±1/√256, no weight decay); head Linear-BatchNorm-GELU twice (2048
wide) then a linear layer to 256; τ 0.1, sharpening 0.25, 3 Sinkhorn iterations, ME-MAX weight 1;
15% of the anchor's patches dropped (the focal views keep theirs, as the code's ``patch_drop``
reaches only the first crop size); 1 anchor and 10 focal views of 96/224 of the side (crops of 5-30%;
the two random views: 30-100%), colour jitter at strength 0.5 and blur 0.5 on every view; target
momentum 0.996 rising to 1; AdamW lr 1e-3 (batch 1024), weight decay 0.04 rising to 0.4 (cosine), 15 warm-up epochs,
the gradient norm of backbone and head clipped at 3.  Our choices: the momentum rises on DINO's
cosine (the code: linearly over 1.25 times the run), the learning rate and weight decay follow
their cosines over the run itself (the code stretches both over 1.25 times it, so neither reaches
its final value), and the student's backbone is the one evaluated.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import rng
from ..data.augment import AugmentConfig, views
from ..data.views import ViewSpec
from ..losses import msn
from ..models.heads import mlp
from .base import Method
from .helpers import cosine_momentum, ema_update, frozen_copy, small_crops
from .masking import random_patch_mask


class MSN(Method):
    """MSN (Assran et al. 2022): masked anchor views matched to the prototype assignment of the whole view."""

    name = "msn"
    revision = 3  # 2: weight decay 0.04 -> 0.4 along a cosine (the paper's), where revision 1 kept 0.04;
    # 3: the focal views keep every patch (the official code), where revisions 1-2 dropped 15% of theirs too
    needs_tokens = True
    defaults = {"prototypes": 1024, "proj_hidden_dim": 2048, "proj_dim": 256, "temperature": 0.1, "sharpen": 0.25,
                "sinkhorn_iterations": 3, "me_max_weight": 1.0, "mask_ratio": 0.15, "focal_views": 10,
                "focal_crop_size": None, "focal_crop_scale": [0.05, 0.3], "base_momentum": 0.996,
                "final_momentum": 1.0, "clip_grad": 3.0, "augment": views(crop_scale=(0.3, 1.0))}
    limits = {"prototypes": (1, None), "proj_hidden_dim": (1, None), "proj_dim": (1, None),
              "temperature": (1e-4, None), "sharpen": (1e-4, None), "sinkhorn_iterations": (0, None),
              "me_max_weight": (0, None), "mask_ratio": (0, 0.99), "focal_views": (0, None),
              "focal_crop_size": (1, None), "base_momentum": (0, 1), "final_momentum": (0, 1), "clip_grad": (0, None)}

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        self.head = mlp(self.feature_dim, cfg["proj_hidden_dim"], cfg["proj_dim"], layers=3, activation=nn.GELU)
        self.target_backbone, self.target_head = frozen_copy(self.backbone), frozen_copy(self.head)
        bound = cfg["proj_dim"] ** -0.5
        self.prototypes = nn.Parameter((rng.rand((cfg["prototypes"], cfg["proj_dim"]), self.generator) * 2 - 1) * bound)
        self.prototypes.no_weight_decay = True
        random = AugmentConfig(**cfg["augment"])
        self.views = [ViewSpec(random, count=2)]
        self.views += small_crops(random, cfg["focal_views"], cfg["focal_crop_scale"], cfg["focal_crop_size"],
                                  run.image_size)

    def anchors(self, crops: list[torch.Tensor], masked: bool = True) -> torch.Tensor:
        """The backbone's features of ``crops`` (views of one size), ``mask_ratio`` of each one's
        patches dropped where ``masked`` (at least one; none at 0)."""
        images, keep = torch.cat(crops), None
        if masked and self.cfg["mask_ratio"]:
            rows, cols = self.backbone.patch_grid(*images.shape[-2:])
            keep, _ = random_patch_mask(images.shape[0], rows * cols, self.cfg["mask_ratio"], self.generator,
                                        images.device)
        return self.backbone.pooled(self.backbone.tokens(images, keep=keep))

    def similarities(self, head: nn.Module, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(head(features), dim=-1) @ F.normalize(self.prototypes, dim=-1).t()

    def training_step(self, batch, step):
        target_view, *anchor_views = batch["views"]
        features = [self.anchors(anchor_views[:1])]
        if len(anchor_views) > 1:
            features.append(self.anchors(anchor_views[1:], masked=False))
        anchor = self.similarities(self.head, torch.cat(features)).view(len(anchor_views), target_view.shape[0], -1)
        with torch.no_grad():
            target = self.similarities(self.target_head, self.target_backbone(target_view))
        cfg = self.cfg
        return {"loss": msn(anchor, target, cfg["temperature"], cfg["sharpen"], cfg["sinkhorn_iterations"],
                            cfg["me_max_weight"], gather=True)}

    def on_before_optimizer_step(self, epoch, step):
        if self.cfg["clip_grad"]:
            torch.nn.utils.clip_grad_norm_([*self.backbone.parameters(), *self.head.parameters()], self.cfg["clip_grad"])

    def on_step_end(self, step, total_steps):
        momentum = cosine_momentum(step, total_steps, self.cfg["base_momentum"], self.cfg["final_momentum"])
        ema_update(self.target_backbone, self.backbone, momentum)
        ema_update(self.target_head, self.head, momentum)

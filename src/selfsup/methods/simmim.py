"""SimMIM: Xie et al., "SimMIM: A Simple Framework for Masked Image Modeling", CVPR 2022.

A random 60% of each image's patches is replaced by a learned mask token before the ViT
encoder (``tokens(mask=...)``, which sees every position); one linear layer predicts each
patch's raw pixels from its token, and the loss is L1 on the masked patches (``masked_l1``).
From the paper and its code: mask ratio 0.6, AdamW (β 0.9, 0.999), weight decay 0.05, 10 warm-up
epochs, crops of 67-100% (ratio 3/4-4/3) and flips; lr 8e-4 for batch 2048 (1e-4 per 256) and a
cosine decay (to 0 here; the code's ends at 5% of the peak), the Swin-B recipe (its ViT-B recipe: 4e-4 at batch 2048 with a step decay at 7/8 of the
run; we use the Swin-B one for the ViT).  Our choice: single patches are masked (the paper masks 32-px squares, 2×2 of its 16-px patches; on
28-px images one patch is already a 49th of the image).
"""
from __future__ import annotations

from torch import nn

from ..data.augment import AugmentConfig, crops_only
from ..data.views import ViewSpec
from ..losses import masked_l1
from .masking import MaskedImageModel, learned_token


class SimMIM(MaskedImageModel):
    """SimMIM (Xie et al. 2022): mask tokens in the encoder, a linear head regresses hidden pixels."""

    name = "simmim"
    defaults = {"mask_ratio": 0.6, "augment": crops_only(0.67)}
    limits = {"mask_ratio": (0.01, 0.99)}

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        self.mask_token = learned_token(self.feature_dim)
        self.head = nn.Linear(self.feature_dim, backbone.patch_size ** 2 * run.channels)
        self.views = [ViewSpec(AugmentConfig(**cfg["augment"]))]

    def reconstruct(self, view, keep, mask):
        return self.head(self.backbone.tokens(view, mask=mask, mask_token=self.mask_token)[:, 1:])

    def reconstruction_loss(self, prediction, target, mask):
        return masked_l1(prediction, target, mask)

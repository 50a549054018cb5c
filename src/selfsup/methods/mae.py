"""MAE: He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022.

A random 75% of each image's patches is hidden; the ViT encoder sees only the visible ones
(``tokens(keep=...)``), and a narrow transformer decoder, given the encoded visible tokens and
a shared mask token at every hidden position (each with a position embedding), predicts the
pixels of every patch; the loss is the mean squared error on the hidden patches against
pixels normalised per patch (``masked_mse``; the paper's better target, Table 1d).  From the
paper: mask ratio 0.75, decoder of 8 blocks (16 heads) 512 wide for ViT-L's 1024 (we keep
about that ratio: 2/3 of the encoder's width, rounded to 32), AdamW (β 0.9, 0.95), lr
1.5e-4·batch/256, weight decay 0.05, 40 warm-up epochs, views that only crop (0.2-1) and flip.
Our choices: learned position embeddings in the encoder (timm's) and the decoder (the code fixes
both to sin-cos).
Evaluated by the [CLS] token (linear probe, kNN) and by fine-tuning, as the paper says MAE
should be judged.
"""
from __future__ import annotations

import torch

from ..data.augment import AugmentConfig, crops_only
from ..data.views import ViewSpec
from ..losses import masked_mse
from .masking import MaskedImageModel, NarrowTransformer


class MAEDecoder(NarrowTransformer):
    """Visible tokens and mask tokens back in patch order ([CLS] in position 0), transformer
    blocks, a linear layer to each patch's pixels."""

    def forward(self, tokens: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """``tokens`` [B, 1 + K, D] ([CLS] and the kept patches, in ``keep``'s order) -> [B, N, out_dim]."""
        x = self.embed(tokens)
        patches = self.mask_token.to(x.dtype).expand(x.shape[0], self.pos_embed.shape[1] - 1, -1)  # bf16 under autocast
        patches = patches.scatter(1, keep.unsqueeze(-1).expand(-1, -1, x.shape[-1]), x[:, 1:])
        x = torch.cat([x[:, :1], patches], dim=1) + self.pos_embed
        return self.project(self.norm(self.blocks(x)))[:, 1:]


class MAE(MaskedImageModel):
    """MAE (He et al. 2022): the encoder on visible patches, a narrow decoder predicts the hidden pixels."""

    name = "mae"
    defaults = {"mask_ratio": 0.75, "decoder_dim": None, "decoder_depth": 8, "decoder_heads": None,
                "normalize_target": True, "augment": crops_only(0.2)}
    limits = {"mask_ratio": (0.01, 0.99), "decoder_dim": (1, None), "decoder_depth": (1, None),
              "decoder_heads": (1, None)}

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        dim = cfg["decoder_dim"] or max(32, round(self.feature_dim * 2 / 3 / 32) * 32)
        rows, cols = backbone.patch_grid(run.image_size, run.image_size)
        self.decoder = MAEDecoder(self.feature_dim, 1 + rows * cols, dim, cfg["decoder_depth"],
                                  cfg["decoder_heads"] or max(1, dim // 32), backbone.patch_size ** 2 * run.channels)
        self.views = [ViewSpec(AugmentConfig(**cfg["augment"]))]

    def reconstruct(self, view, keep, mask):
        return self.decoder(self.backbone.tokens(view, keep=keep), keep)

    def reconstruction_loss(self, prediction, target, mask):
        return masked_mse(prediction, target, mask, self.cfg["normalize_target"])

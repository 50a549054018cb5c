"""Vision transformer backbones: timm's ``VisionTransformer`` (Dosovitskiy et al. 2021) with a
[CLS] token, learned position embeddings interpolated to any input size (multi-crop views of
another size) and no classifier.

Sizes: ``vit-tiny`` (width 192, depth 12, 3 heads: DeiT-Ti) and ``vit-small`` (384, 12, 6:
DeiT-S) fix width, depth and heads; ``vit`` takes them from ``backbone.width``, ``depth`` and
``heads`` (heads null: width / 64, at least one).  ``backbone.patch_size`` null means 4 px for
images up to 64 px (49 tokens at 28 px, 64 at 32 px, as CIFAR ViTs use), 8 up to 128 px and
16 above (the ImageNet setting).  Inputs whose side is not a multiple of the patch are padded.

The contract beyond a ResNet's: ``tokens(x, keep=, mask=, mask_token=)`` gives the final-normed
tokens, [CLS] first, for methods that need patch tokens (MAE drops the masked patches with
``keep``; SimMIM and iBOT replace them by a mask token with ``mask``); ``forward`` is the [CLS]
token every protocol evaluates (``pool: mean``: the mean patch token, for methods that train
no [CLS] token, as I-JEPA); ``forward_stages`` the same after each block, under the final norm
(the per-block probes: ``layer_names`` block1..blockN).  Position embeddings and the
[CLS] token are marked ``no_weight_decay`` for ``split_decay``, as in timm's and DINO's recipes.
"""
from __future__ import annotations

import torch
from torch import nn

VIT_SIZES = {"vit-tiny": {"width": 192, "depth": 12, "heads": 3},
             "vit-small": {"width": 384, "depth": 12, "heads": 6}}
VIT_BACKBONES = ("vit", *VIT_SIZES)


def default_patch_size(image_size: int) -> int:
    return 4 if image_size <= 64 else 8 if image_size <= 128 else 16


class ViTBackbone(nn.Module):
    def __init__(self, in_channels: int, image_size: int, patch_size: int, width: int, depth: int, heads: int,
                 drop_path: float = 0.0, pool: str = "cls"):
        super().__init__()
        from timm.models.vision_transformer import VisionTransformer

        self.vit = VisionTransformer(img_size=image_size, patch_size=patch_size, in_chans=in_channels, num_classes=0,
                                     embed_dim=width, depth=depth, num_heads=heads, drop_path_rate=drop_path,
                                     dynamic_img_size=True, dynamic_img_pad=True)
        self.patch_size, self.pool = patch_size, pool
        self.feature_dim = width
        self.stage_dims = [width] * depth
        self.layer_names = [f"block{i + 1}" for i in range(depth)]
        for param in (self.vit.pos_embed, self.vit.cls_token):
            param.no_weight_decay = True

    def layer_id(self, name: str) -> int:
        """The depth of parameter ``name`` (relative to this module) for layer-wise learning-rate
        decay (BEiT, MAE fine-tuning): 0 for the embeddings and tokens, i + 1 for block i, depth + 1
        for the final norm."""
        parts = name.split(".")
        if parts[1] == "blocks":
            return int(parts[2]) + 1
        return 0 if parts[1] in ("cls_token", "pos_embed", "patch_embed", "reg_token") else len(self.vit.blocks) + 1

    def compile_regions(self) -> list[nn.Module]:
        """What ``trainer.compile`` compiles: each block (one class, so compiled code is shared)."""
        return list(self.vit.blocks)

    def patch_grid(self, height: int, width: int) -> tuple[int, int]:
        """Rows and columns of patches of an input of ``height`` × ``width`` pixels (after padding)."""
        return -(-height // self.patch_size), -(-width // self.patch_size)

    def tokens(self, x: torch.Tensor, keep: torch.Tensor | None = None, mask: torch.Tensor | None = None,
               mask_token: torch.Tensor | None = None) -> torch.Tensor:
        """Final-normed tokens [B, 1 + N, D], [CLS] first.  ``mask`` [B, N] (bool, row-major
        patches) replaces those patches' embeddings by ``mask_token`` [D] before the position
        embedding is added; ``keep`` [B, K] (patch indices) passes only those patches (and the
        [CLS] token) through the blocks."""
        vit = self.vit
        x = vit.patch_embed(x)  # [B, rows, cols, D]
        if mask is not None:
            x = torch.where(mask.view(*x.shape[:3], 1), mask_token.to(x.dtype), x)
        x = vit._pos_embed(x)  # [B, 1 + N, D]
        if keep is not None:
            x = torch.cat([x[:, :1], x[:, 1:].gather(1, keep.unsqueeze(-1).expand(-1, -1, x.shape[-1]))], dim=1)
        return vit.norm(vit.blocks(vit.norm_pre(x)))

    def pooled(self, tokens: torch.Tensor) -> torch.Tensor:
        """The image's feature from its tokens: the [CLS] token, or the mean patch token (``pool``)."""
        return tokens[:, 0] if self.pool == "cls" else tokens[:, 1:].mean(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pooled(self.tokens(x))

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        vit = self.vit
        x = vit.norm_pre(vit._pos_embed(vit.patch_embed(x)))
        stages = []
        for block in vit.blocks:
            x = block(x)
            stages.append(self.pooled(vit.norm(x)))
        return stages

"""I-JEPA: Assran et al., "Self-Supervised Learning from Images with a Joint-Embedding
Predictive Architecture", CVPR 2023.

From one context block of each image, a narrow transformer predictor predicts the target
encoder's representations of several target blocks of the same image: the context encoder (the
backbone) sees only the context block's patches (``tokens(keep=...)``), minus any patch of a
target; the target encoder, an EMA of it (momentum 0.996 rising to 1; the paper's rise is linear, ours a
cosine as for every EMA here), sees the whole image, and
its output patch tokens, layer-normalised, at each target block's positions are the targets; the
predictor gets the context tokens and one mask token per target position (each with its
position embedding) and the loss is the mean squared error.  From the paper: 4 target blocks of
15-20% of the patches with aspect ratio 0.75-1.5, a context block of 85-100% (aspect 1), block
sizes drawn once per batch and places per image (a block at most one row and one column
short of the grid, as the code's block sampler), the context cut to the batch's smallest;
predictor 6 blocks (ViT-H: 12) 384 wide; AdamW lr 1e-3 (batch 2048), weight decay 0.04 rising to
0.4 (the paper: linearly; its code and ours: along a cosine), 15 warm-up epochs (the paper's; its
ViT-H config: 40), then cosine (to 0; its code ends at 1e-6, a thousandth); views: random crops
of 30-100%, no flips, no colour changes; evaluation on the mean patch token (``backbone.pool:
mean``).  Our choices: predictor width half the encoder's, learned position embeddings in the
predictor (the paper: fixed sin-cos), MSE (the paper's eq.; its code uses smooth L1); the
encoders keep timm's [CLS] token, which every patch attends to (the paper trains without one),
and the student's encoder is the one evaluated, as for every method here (the paper evaluates
the target encoder).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..data.augment import AugmentConfig, crops_only
from ..data.views import ViewSpec
from .. import rng
from .base import Method
from .helpers import cosine_momentum, ema_update, frozen_copy
from .masking import NarrowTransformer

JEPA_VIEWS = {**crops_only(0.3), "flip_p": 0.0}


def block_indices(top: int, left: int, height: int, width: int, cols: int) -> list[int]:
    """Row-major patch indices of a ``height`` × ``width`` block at (``top``, ``left``)."""
    return [(top + r) * cols + left + c for r in range(height) for c in range(width)]


def block_size(scale: float, aspect: float, rows: int, cols: int) -> tuple[int, int]:
    """The (height, width) in patches of a block covering ``scale`` of the grid at ``aspect`` (h / w)."""
    area = scale * rows * cols
    return (max(1, min(rows - 1, round(math.sqrt(area * aspect)))),
            max(1, min(cols - 1, round(math.sqrt(area / aspect)))))


def multi_block_masks(batch: int, rows: int, cols: int, generator: torch.Generator, targets: int = 4,
                      target_scale=(0.15, 0.2), target_aspect=(0.75, 1.5),
                      context_scale=(0.85, 1.0)) -> tuple[torch.Tensor, torch.Tensor]:
    """I-JEPA's masks: ``context`` [B, Kc] (patch indices of each image's context block minus its
    targets, cut to the batch's smallest count) and ``target`` [B, targets, Kt] (each target
    block's patches; one block size per batch, so Kt is shared)."""
    draws = rng.rand(4 + batch * 2 * (targets + 1), rng.host_twin(generator)).tolist()
    height, width = block_size(target_scale[0] + draws[0] * (target_scale[1] - target_scale[0]),
                               target_aspect[0] + draws[1] * (target_aspect[1] - target_aspect[0]), rows, cols)
    context_h, context_w = block_size(context_scale[0] + draws[2] * (context_scale[1] - context_scale[0]), 1.0,
                                      rows, cols)  # at most one row and one column short of the grid, as the code
    places = iter(draws[4:])
    context, target = [], []
    for _ in range(batch):
        blocks = [block_indices(int(next(places) * (rows - height + 1)), int(next(places) * (cols - width + 1)),
                               height, width, cols) for _ in range(targets)]
        hidden = {i for block in blocks for i in block}
        block = block_indices(int(next(places) * (rows - context_h + 1)), int(next(places) * (cols - context_w + 1)),
                              context_h, context_w, cols)
        context.append([i for i in block if i not in hidden] or [min(set(range(rows * cols)) - hidden, default=0)])
        target.append(blocks)
    keep = min(len(c) for c in context)
    device = generator.device
    return rng.onto(torch.tensor([c[:keep] for c in context]), device), rng.onto(torch.tensor(target), device)


class JEPAPredictor(NarrowTransformer):
    """Context tokens and mask tokens at the target positions (each with its position
    embedding) through transformer blocks; the outputs at the mask tokens, in the encoder's width."""

    def forward(self, context: torch.Tensor, context_index: torch.Tensor, target_index: torch.Tensor) -> torch.Tensor:
        x = self.embed(context) + self.positions(context_index)
        queries = self.mask_token + self.positions(target_index)
        x = self.blocks(torch.cat([x, queries], dim=1))
        return self.project(self.norm(x[:, context.shape[1]:]))


class IJEPA(Method):
    """I-JEPA (Assran et al. 2023): predict an EMA encoder's target-block tokens from a context block."""

    name = "i-jepa"
    revision = 3  # 2: weight decay 0.04 -> 0.4 along a cosine (the paper's), where revision 1 kept 0.04;
    # 3: the context block sized by context_scale on the grid (revisions 1-2 sized it on a grid one
    # patch larger, so at these scales it always covered the whole image)
    needs_tokens = True
    defaults = {"targets": 4, "target_scale": [0.15, 0.2], "target_aspect": [0.75, 1.5], "context_scale": [0.85, 1.0],
                "predictor_dim": None, "predictor_depth": 6, "predictor_heads": None, "base_momentum": 0.996,
                "final_momentum": 1.0, "augment": JEPA_VIEWS}
    limits = {"targets": (1, None), "predictor_dim": (1, None), "predictor_depth": (1, None),
              "predictor_heads": (1, None), "base_momentum": (0, 1), "final_momentum": (0, 1)}

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        dim = cfg["predictor_dim"] or max(32, self.feature_dim // 2)
        self.rows, _ = backbone.patch_grid(run.image_size, run.image_size)  # square images
        self.predictor = JEPAPredictor(self.feature_dim, self.rows ** 2, dim, cfg["predictor_depth"],
                                       cfg["predictor_heads"] or max(1, dim // 32), self.feature_dim)
        self.target_backbone = frozen_copy(self.backbone)
        self.views = [ViewSpec(AugmentConfig(**cfg["augment"]))]

    def training_step(self, batch, step):
        view = batch["views"][0]
        cfg = self.cfg
        context_index, target_index = multi_block_masks(
            view.shape[0], self.rows, self.rows, self.generator, cfg["targets"], cfg["target_scale"],
            cfg["target_aspect"], cfg["context_scale"])
        with torch.no_grad():
            tokens = self.target_backbone.tokens(view)[:, 1:]
            tokens = F.layer_norm(tokens, tokens.shape[-1:])
        targets = [tokens.gather(1, target_index[:, t, :, None].expand(-1, -1, tokens.shape[-1]))
                   for t in range(cfg["targets"])]
        context = self.backbone.tokens(view, keep=context_index)[:, 1:]
        repeat = cfg["targets"]
        predicted = self.predictor(context.repeat(repeat, 1, 1), context_index.repeat(repeat, 1),
                                   target_index.transpose(0, 1).reshape(-1, target_index.shape[-1]))
        return {"loss": F.mse_loss(predicted, torch.cat(targets))}

    def on_step_end(self, step, total_steps):
        momentum = cosine_momentum(step, total_steps, self.cfg["base_momentum"], self.cfg["final_momentum"])
        ema_update(self.target_backbone, self.backbone, momentum)

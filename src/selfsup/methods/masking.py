"""Pieces the masked-image methods share (MAE, SimMIM, I-JEPA): cutting images into the
backbone's patches, drawing which patches each image hides, the training step around them, and
the narrow transformer that fills in hidden positions (MAE's decoder, I-JEPA's predictor)."""
from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .. import rng
from .base import Method


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, N, patch_size² · C]: the patches in the ViT's row-major order, each
    flattened (row, column, channel), after zero padding on the right and bottom to a multiple
    of the patch as the backbone pads."""
    pad_h, pad_w = (-images.shape[-2]) % patch_size, (-images.shape[-1]) % patch_size
    images = F.pad(images, (0, pad_w, 0, pad_h))
    b, c, h, w = images.shape
    grid = images.reshape(b, c, h // patch_size, patch_size, w // patch_size, patch_size)
    return grid.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // patch_size) * (w // patch_size), patch_size ** 2 * c)


def random_patch_mask(batch: int, patches: int, ratio: float, generator: torch.Generator,
                      device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """For each image, ``round(ratio · patches)`` patches drawn uniformly to hide (MAE's
    per-sample shuffle): ``keep`` [B, K] the visible patches' indices (ascending) and ``mask``
    [B, N] true where hidden."""
    hidden = min(patches - 1, max(1, round(ratio * patches)))
    order = rng.rand((batch, patches), generator, device=device).argsort(dim=1)
    keep = order[:, hidden:].sort(dim=1).values
    mask = torch.ones(batch, patches, dtype=torch.bool, device=keep.device)
    mask.scatter_(1, keep, False)
    return keep, mask


def varying_patch_mask(batch: int, rows: int, cols: int, ratio: tuple[float, float], probability: float,
                       generator: torch.Generator, device=None, shape: str = "block") -> torch.Tensor:
    """[B, rows · cols] bool: each image, with ``probability``, hides a share of its patches
    drawn uniformly from ``ratio`` (iBOT's per-image prediction ratio), in ``shape``: "block"
    (BEiT's rectangles, ``block_mask``) or "random" (that many patches drawn uniformly)."""
    patches, device = rows * cols, generator.device if device is None else device
    block = shape == "block"  # block masks are drawn by the host (Python loops): their numbers too
    draws = rng.rand((batch, 2), rng.host_twin(generator)) if block else rng.rand((batch, 2), generator, device)
    share = ratio[0] + draws[:, 0] * (ratio[1] - ratio[0])
    hidden = torch.where(draws[:, 1] < probability, share * patches, torch.zeros_like(share))
    if not block:
        ranks = rng.rand((batch, patches), generator, device=device).argsort(dim=1).argsort(dim=1)
        return ranks < hidden.round().unsqueeze(1)
    uniforms = uniform_stream(generator)
    return rng.onto(torch.tensor([block_mask(rows, cols, h, uniforms) for h in hidden.tolist()]), device)


def uniform_stream(generator: torch.Generator, chunk: int = 4096) -> Iterator[float]:
    """Uniform [0, 1) numbers from ``generator``'s host twin, drawn ``chunk`` at a time as they are used."""
    host = rng.host_twin(generator)
    while True:
        yield from rng.rand(chunk, host).tolist()


def block_mask(rows: int, cols: int, hidden: float, uniforms: Iterator[float],
               aspect: tuple[float, float] = (0.3, 1 / 0.3), attempts: int = 10) -> list[bool]:
    """BEiT's blockwise mask (Bao et al. 2022, as iBOT uses it), row-major: rectangles are added
    until at least ``hidden`` patches are hidden, each of an area drawn uniformly between
    (min(rows, cols) // 3)² patches and what is still to hide, an aspect ratio log-uniform in
    ``aspect``, at a uniform place; one that adds nothing or more than is left is drawn again,
    and after ``attempts`` failures in a row the mask stays as it is."""
    mask = [[False] * cols for _ in range(rows)]
    count, smallest = 0, (min(rows, cols) // 3) ** 2
    low, high = math.log(aspect[0]), math.log(aspect[1])
    while count < hidden:
        left_to_hide = hidden - count
        for _ in range(attempts):
            area = smallest + next(uniforms) * (left_to_hide - smallest)
            stretch = math.exp(low + next(uniforms) * (high - low))
            h, w = round(math.sqrt(area * stretch)), round(math.sqrt(area / stretch))
            top, left = int(next(uniforms) * (rows - h + 1)), int(next(uniforms) * (cols - w + 1))
            if not (h < rows and w < cols):
                continue
            block = [(i, j) for i in range(top, top + h) for j in range(left, left + w) if not mask[i][j]]
            if 0 < len(block) <= left_to_hide:
                for i, j in block:
                    mask[i][j] = True
                count += len(block)
                break
        else:
            break
    return [hidden_patch for row in mask for hidden_patch in row]


def learned_token(*shape: int) -> nn.Parameter:
    """A learned embedding of ``shape`` (a mask token, position embeddings): truncated-normal with
    std 0.02 as in BEiT, MAE and timm, marked ``no_weight_decay``."""
    token = nn.Parameter(torch.zeros(*shape))
    nn.init.trunc_normal_(token, std=0.02)
    token.no_weight_decay = True
    return token


class MaskedImageModel(Method):
    """A method that hides ``mask_ratio`` of each view's patches and predicts their pixels:
    ``reconstruct(view, keep, mask)`` gives a prediction per patch [B, N, P], scored on the
    hidden patches by ``reconstruction_loss``.  Needs a ViT (``needs_tokens``)."""

    needs_tokens = True

    def training_step(self, batch, step):
        view = batch["views"][0]
        rows, cols = self.backbone.patch_grid(*view.shape[-2:])
        keep, mask = random_patch_mask(view.shape[0], rows * cols, self.cfg["mask_ratio"], self.generator, view.device)
        prediction = self.reconstruct(view, keep, mask)
        return {"loss": self.reconstruction_loss(prediction, patchify(view, self.backbone.patch_size), mask)}

    def reconstruct(self, view: torch.Tensor, keep: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def reconstruction_loss(self, prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class NarrowTransformer(nn.Module):
    """Tokens of ``in_dim`` embedded to ``dim``, a shared mask token, learned position embeddings
    (``positions`` slots), ``depth`` transformer blocks, a norm and a projection to ``out_dim``:
    the filler of hidden positions, whose ``forward`` a method's subclass writes."""

    def __init__(self, in_dim: int, positions: int, dim: int, depth: int, heads: int, out_dim: int):
        from timm.models.vision_transformer import Block

        super().__init__()
        self.embed = nn.Linear(in_dim, dim)
        self.mask_token = learned_token(1, 1, dim)
        self.pos_embed = learned_token(1, positions, dim)
        self.blocks = nn.Sequential(*[Block(dim, heads, qkv_bias=True) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.project = nn.Linear(dim, out_dim)

    def positions(self, index: torch.Tensor) -> torch.Tensor:
        """The position embeddings of ``index`` [B, K]: [B, K, dim]."""
        return self.pos_embed.expand(index.shape[0], -1, -1).gather(
            1, index.unsqueeze(-1).expand(-1, -1, self.pos_embed.shape[-1]))

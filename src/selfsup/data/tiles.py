"""A 3×3 grid of tiles with gaps and random jitter, cut from a batch of images: the input of
the jigsaw (Noroozi & Favaro 2016) and relative-patch-location (Doersch et al. 2015) tasks.

The gap keeps the network from matching tiles by their borders (low-level continuity), the
jitter from matching them by their exact alignment; both papers use both.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from .. import rng


@dataclass(frozen=True)
class TileGrid:
    """3×3 tiles of ``tile`` px, ``gap`` px apart, each moved by up to ±``jitter`` px."""

    tile: int
    gap: int
    jitter: int
    margin: int

    @classmethod
    def for_image(cls, image_size: int, tile: int | None = None, gap: int | None = None,
                  jitter: int | None = None) -> "TileGrid":
        """Sizes scaled to the image (on 28 px: 7-px tiles, 2-px gaps, ±1 px jitter; the
        papers' 64-px tiles on 225-px crops have the same proportions); ValueError when the
        tiles do not fit."""
        gap = max(1, image_size // 14) if gap is None else gap
        jitter = max(1, image_size // 28) if jitter is None else jitter
        tile = tile or (image_size - 2 * gap - 2 * jitter) // 3
        span = 3 * tile + 2 * gap + 2 * jitter
        if tile < 1 or span > image_size:
            raise ValueError(f"3x3 tiles of {tile} px with {gap}-px gaps and {jitter}-px jitter need {span} px, "
                             f"more than the {image_size}-px images")
        return cls(tile, gap, jitter, (image_size - span) // 2 + jitter)

    def cut(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """[B, C, H, W] → [B, 9, C, tile, tile], tiles in row-major order, each jittered by
        offsets drawn from ``generator``."""
        b, device = images.shape[0], images.device
        starts = self.margin + torch.arange(3, device=device) * (self.tile + self.gap)
        rows = starts.repeat_interleave(3).expand(b, 9)
        cols = starts.repeat(3).expand(b, 9)
        shift = rng.randint(-self.jitter, self.jitter + 1, (2, b, 9), generator, device=device)
        span = torch.arange(self.tile, device=device)
        r = (rows + shift[0]).unsqueeze(-1) + span  # [B, 9, tile]
        c = (cols + shift[1]).unsqueeze(-1) + span
        batch = torch.arange(b, device=device).view(b, 1, 1, 1)
        tiles = images[batch, :, r[:, :, :, None], c[:, :, None, :]]  # [B, 9, t, t, C]
        return tiles.permute(0, 1, 4, 2, 3).contiguous()

"""Jigsaw puzzles: Noroozi & Favaro, "Unsupervised Learning of Visual Representations by
Solving Jigsaw Puzzles", ECCV 2016.

Each augmented image is cut into 3×3 tiles with gaps and jitter (``TileGrid``: sizes scaled
to the image), the tiles are shuffled by one permutation drawn from a fixed set, each tile
goes through the backbone (shared weights, the paper's context-free network), the nine
feature vectors are concatenated in shuffled order and an MLP classifies which permutation
was applied.  The permutation set (default 100) is chosen as the paper's Algorithm 1 does:
from a seeded first permutation, greedily, each next the permutation not yet chosen whose
*average* Hamming distance to those chosen is largest; it is a buffer, saved with the run.  Permutations and jitter come from the method's generator.  ``upsample``
resizes the tiles before encoding (small images give small tiles).  Optimiser: SGD lr 0.01
for batch 256, momentum 0.9, weight decay 5e-4 (the paper's), cosine decay (ours).
"""
from __future__ import annotations

import functools
import itertools

import torch

from ..data.augment import AugmentConfig, crops_only
from ..data.tiles import TileGrid
from ..data.views import ViewSpec
from ..errors import SelfSupError
from ..models.heads import mlp
from .base import Method
from .helpers import classification, encode_tiles
from .. import rng


def maximal_hamming_permutations(count: int, seed: int) -> torch.Tensor:
    """``count`` permutations of 9 tiles, [count, 9]: a seeded first one, then each next the
    permutation not yet chosen whose summed (so average) Hamming distance to those chosen is
    largest, first on ties (Noroozi & Favaro 2016, Algorithm 1).  Computed once per process
    for each ``count`` and ``seed`` (seconds on one core); each call returns its own copy."""
    return _maximal_hamming_permutations(count, seed).clone()


@functools.cache
def _maximal_hamming_permutations(count: int, seed: int) -> torch.Tensor:
    candidates = torch.tensor(list(itertools.permutations(range(9))), dtype=torch.uint8)
    by_position = candidates.T.contiguous()  # [9, 9!]: the distances sum 9 contiguous rows
    first = int(rng.randint(0, len(candidates), 1, rng.cpu_generator(seed))[0])
    chosen = [first]
    total = (by_position != by_position[:, first:first + 1]).sum(dim=0)
    for _ in range(count - 1):
        total[chosen] = -1
        chosen.append(int(total.argmax()))
        total += (by_position != by_position[:, chosen[-1]:chosen[-1] + 1]).sum(dim=0)
    return candidates[chosen].long()


class TileTask(Method):
    """Tiles of one augmented view per image, encoded by the backbone; checks that they fit."""

    defaults = {"tile_size": None, "gap": None, "jitter": None, "upsample": None, "head_hidden_dim": None,
                "augment": crops_only(0.6)}
    limits = {"tile_size": (1, None), "gap": (0, None), "jitter": (0, None), "upsample": (1, None),
              "head_hidden_dim": (1, None)}

    @classmethod
    def check_params(cls, params, run):
        super().check_params(params, run)
        try:
            TileGrid.for_image(run.image_size, params["tile_size"], params["gap"], params["jitter"])
        except ValueError as exc:
            raise SelfSupError(f"{cls.name}: {exc}; change params.tile_size, params.gap or params.jitter") from exc

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        self.tiles = TileGrid.for_image(run.image_size, cfg["tile_size"], cfg["gap"], cfg["jitter"])
        self.hidden = cfg["head_hidden_dim"] or 2 * self.feature_dim
        self.views = [ViewSpec(AugmentConfig(**cfg["augment"]), count=1)]

    def cut_and_encode(self, view: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
        """Features [B, len(order[0]), D] of the tiles of ``view`` at positions ``order`` ([B, n])."""
        tiles = self.tiles.cut(view, self.generator)
        picked = tiles[torch.arange(view.shape[0], device=view.device).unsqueeze(1), order.to(view.device)]
        return encode_tiles(self.backbone, picked, self.cfg["upsample"])


class Jigsaw(TileTask):
    """Jigsaw (Noroozi & Favaro 2016): which of N maximally distant permutations shuffled the 3×3 tiles."""

    name = "jigsaw"
    revision = 2  # 2: the paper's permutation set (maximal average Hamming distance; 1: maximal minimum)
    defaults = {**TileTask.defaults, "permutations": 100}
    limits = {**TileTask.limits, "permutations": (2, 1000)}

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        self.register_buffer("permutation_set", maximal_hamming_permutations(cfg["permutations"], run.seed))
        self.classifier = mlp(9 * self.feature_dim, self.hidden, cfg["permutations"])

    def training_step(self, batch, step):
        (view,) = batch["views"]
        target = rng.randint(0, len(self.permutation_set), view.shape[0], self.generator, device=view.device)
        features = self.cut_and_encode(view, self.permutation_set[target.to(self.permutation_set.device)])
        return classification(self.classifier(features.flatten(1)), target.to(view.device))

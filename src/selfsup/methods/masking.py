"""Pieces the masked-image methods share (MAE, SimMIM): cutting images into the backbone's
patches, drawing which patches each image hides, and the training step around them."""
from __future__ import annotations

import torch
import torch.nn.functional as F

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


class MaskedImageModel(Method):
    """A method that hides ``mask_ratio`` of each view's patches and predicts their pixels:
    ``reconstruct(view, keep, mask)`` gives a prediction per patch [B, N, P], scored on the
    hidden patches by ``reconstruction_loss``.  Needs a ViT (``needs_tokens``)."""

    needs_tokens = True

    def training_step(self, batch, step):
        view = batch["views"][0]
        rows, cols = self.backbone.patch_grid(view)
        keep, mask = random_patch_mask(view.shape[0], rows * cols, self.cfg["mask_ratio"], self.generator, view.device)
        prediction = self.reconstruct(view, keep, mask)
        return {"loss": self.reconstruction_loss(prediction, patchify(view, self.backbone.patch_size), mask)}

    def reconstruct(self, view: torch.Tensor, keep: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def reconstruction_loss(self, prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

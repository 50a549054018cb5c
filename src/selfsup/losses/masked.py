"""Masked image modelling: reconstruction losses over the masked patches only.

``masked_mse`` is MAE's (He et al. 2022, Sec. 3: mean squared error per masked patch, against
pixels normalised by each patch's own mean and variance in the paper's best setting);
``masked_l1`` is SimMIM's (Xie et al. 2022, Sec. 3.4: L1 on the masked pixels)."""
from __future__ import annotations

import torch


def _over_masked(per_patch: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(per_patch.dtype)
    return (per_patch * mask).sum() / mask.sum().clamp_min(1)


def masked_mse(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
               normalize_target: bool = True, eps: float = 1e-6) -> torch.Tensor:
    """Mean over masked patches of the mean squared error of each patch's values.

    ``prediction`` and ``target``: [B, N, P] (P pixel values per patch); ``mask``: [B, N], true
    where the patch was hidden.  With ``normalize_target`` each target patch is standardised by
    its own mean and (unbiased) variance plus ``eps`` first."""
    target = target.detach()
    if normalize_target:
        target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + eps).sqrt()
    return _over_masked((prediction - target).square().mean(-1), mask)


def masked_l1(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over the pixels of the masked patches ([B, N, P] and [B, N])."""
    return _over_masked((prediction - target.detach()).abs().mean(-1), mask)

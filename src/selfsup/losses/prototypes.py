"""MSN's prototype matching (Assran et al., "Masked Siamese Networks for Label-Efficient
Learning", ECCV 2022, eq. (1)-(3)) and its mean-entropy maximisation (ME-MAX)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..distributed import gather_with_grad
from .swav import sinkhorn


def me_max(probs: torch.Tensor, gather: bool = False) -> torch.Tensor:
    """log K − H(p̄): the entropy of the mean prediction p̄ of [N, K] probabilities ``probs``
    below its largest value, 0 when p̄ is uniform over the K prototypes (MSN's regulariser).
    With ``gather=True`` under DDP, p̄ is the mean over the global batch (with gradients)."""
    if probs.dim() != 2:
        raise ValueError(f"me_max expects [N, K] probabilities, got {tuple(probs.shape)}")
    mean = (gather_with_grad(probs) if gather else probs).mean(0)
    return math.log(mean.shape[0]) + torch.special.xlogy(mean, mean).sum()


def msn(anchor: torch.Tensor, target: torch.Tensor, temperature: float = 0.1, sharpen: float = 0.25,
        sinkhorn_iterations: int = 3, me_max_weight: float = 1.0, gather: bool = False) -> torch.Tensor:
    """MSN's loss: H(q, p) averaged over anchors and images, plus ``me_max_weight`` · ``me_max(p)``.

    ``anchor`` [V, B, K]: cosine similarities of V anchor views of B images to K prototypes;
    ``target`` [B, K]: those of each image's target view (treated as constants).  p =
    softmax(anchor / τ); the target q = softmax(target / τ) sharpened by ``sharpen`` (q^(1/T),
    renormalised: softmax(target / (τ·T))), then balanced over the prototypes by
    ``sinkhorn_iterations`` Sinkhorn-Knopp iterations on the batch (0: none; over the global
    batch with ``gather``), as the official code does; every anchor of an image shares its q."""
    if anchor.dim() != 3 or target.dim() != 2 or anchor.shape[1:] != target.shape:
        raise ValueError(f"msn expects anchor [V, B, K] and target [B, K], got {tuple(anchor.shape)} "
                         f"and {tuple(target.shape)}")
    dtype = torch.promote_types(anchor.dtype, torch.float32)
    log_probs = F.log_softmax(anchor.to(dtype) / temperature, dim=-1)
    with torch.no_grad():
        codes = F.log_softmax(target.detach().to(dtype) / (temperature * sharpen), dim=-1)
        codes = sinkhorn(codes, epsilon=1.0, iterations=sinkhorn_iterations, gather=gather) \
            if sinkhorn_iterations else codes.exp()
    cross_entropy = -(codes * log_probs).sum(-1).mean()
    return cross_entropy + me_max_weight * me_max(log_probs.exp().flatten(0, 1), gather)

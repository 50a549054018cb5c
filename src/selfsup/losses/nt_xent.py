"""NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR.

Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations",
ICML 2020, eq. (1): for 2N views, each view's positive is the other view of its image and
its 2(N-1) negatives are all other views in the batch; cosine similarity divided by a
temperature τ (paper default 0.5 for CIFAR-10; our default too); and the decoupled forms that
leave the positive out of the denominator (DCL, DCLW, DARe's L_con).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..distributed import gather_no_grad, gather_with_grad, world_info


def _two_view_logits(z1: torch.Tensor, z2: torch.Tensor, temperature: float, gather: bool, name: str):
    """Cosine similarities over τ of the 2N anchors (both views, L2-normalised) against every
    view of the (global) batch, each anchor's own column set to −inf, and the column of each
    anchor's positive (the other view of its image)."""
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(f"{name} expects two [N, D] tensors of one shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    n = z1.shape[0]
    z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    anchors = torch.cat([z1, z2])
    if gather:
        all1, all2 = gather_with_grad(z1), gather_with_grad(z2)
        rank, _ = world_info()
    else:
        all1, all2, rank = z1, z2, 0
    total = all1.shape[0]
    logits = anchors @ torch.cat([all1, all2]).T / temperature
    local = torch.arange(n, device=z1.device) + rank * n
    logits[torch.arange(2 * n, device=z1.device), torch.cat([local, local + total])] = float("-inf")
    return logits, torch.cat([local + total, local])


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5,
            gather: bool = False) -> torch.Tensor:
    """Mean NT-Xent over the 2N anchors of two [N, D] view embeddings.

    Inputs are L2-normalised inside.  With ``gather=True`` under DDP, the candidates
    (positives and negatives) are the views of every rank, gathered with gradients; each
    rank averages over its own anchors, so DDP's gradient averaging reproduces the
    single-process loss on the global batch.
    """
    logits, positive_index = _two_view_logits(z1, z2, temperature, gather, "nt_xent")
    return F.cross_entropy(logits, positive_index)


def _positive_and_negatives(logits: torch.Tensor, positive_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's positive logit, and the log-sum-exp of its other logits (the decoupled
    denominator, the positive left out)."""
    positive = logits.gather(1, positive_index.unsqueeze(1)).squeeze(1)
    own = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, positive_index.unsqueeze(1), True)
    return positive, logits.masked_fill(own, float("-inf")).logsumexp(dim=1)


def dcl(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1, weight_sigma: float | None = None,
        gather: bool = False) -> torch.Tensor:
    """Decoupled contrastive loss (Yeh et al., "Decoupled Contrastive Learning", ECCV 2022,
    eq. (6)): NT-Xent's anchors and negatives (both views, the 2(N − 1) other views of the
    batch) with the positive left out of the denominator,
    mean over anchors of −w_i·s_i+/τ + log Σ_{k ∉ {i, i+}} exp(s_ik/τ).  w_i = 1 for DCL;
    with ``weight_sigma`` σ, DCLW's von Mises–Fisher weight (eq. (7)):
    w_i = 2 − exp(s_i+/σ) / mean_j exp(s_j+/σ), the mean over the positive pairs of the
    (global) batch, without gradient.  Inputs are L2-normalised inside; ``gather`` as for
    ``nt_xent``."""
    logits, positive_index = _two_view_logits(z1, z2, temperature, gather, "dcl")
    positive, negatives = _positive_and_negatives(logits, positive_index)
    if weight_sigma is None:
        return (negatives - positive).mean()
    scaled = positive.detach() * temperature / weight_sigma  # s_i+/σ for each anchor
    pairs = gather_no_grad(scaled)
    weight = 2 - torch.exp(scaled - (pairs.logsumexp(0) - math.log(pairs.shape[0])))
    return (negatives - weight * positive).mean()


def decoupled_nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5,
                      gather: bool = False) -> torch.Tensor:
    """DARe's L_con (seed 002): one direction, view-1 anchors against view-2 candidates,
    cosine similarity over τ, the positive *left out* of the denominator (the decoupled
    contrastive loss of Yeh et al. 2022 with cross-view negatives only), mean over the batch:
    −(1/N) Σ_i log[exp(s_ii/τ) / Σ_{j≠i} exp(s_ij/τ)].  Unlike NT-Xent it can be negative.
    Inputs are L2-normalised inside; with ``gather=True`` under DDP the candidates are every
    rank's second views, gathered with gradients (each rank averages over its own anchors)."""
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(f"decoupled_nt_xent expects two [N, D] tensors of one shape, got {tuple(z1.shape)} and "
                         f"{tuple(z2.shape)}")
    z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    candidates, rank = (gather_with_grad(z2), world_info()[0]) if gather else (z2, 0)
    if candidates.shape[0] < 2:
        raise ValueError("decoupled_nt_xent needs at least two candidates (the positive is left out of the denominator)")
    logits = z1 @ candidates.T / temperature
    positive_index = torch.arange(z1.shape[0], device=z1.device) + rank * z1.shape[0]
    positive, negatives = _positive_and_negatives(logits, positive_index)
    return (negatives - positive).mean()

"""NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR.

Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations",
ICML 2020, eq. (1): for 2N views, each view's positive is the other view of its image and
its 2(N-1) negatives are all other views in the batch; cosine similarity divided by a
temperature τ (paper default 0.5 for CIFAR-10; our default too).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..distributed import gather_with_grad, world_info


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5,
            gather: bool = False) -> torch.Tensor:
    """Mean NT-Xent over the 2N anchors of two [N, D] view embeddings.

    Inputs are L2-normalised inside.  With ``gather=True`` under DDP, the candidates
    (positives and negatives) are the views of every rank, gathered with gradients; each
    rank averages over its own anchors, so DDP's gradient averaging reproduces the
    single-process loss on the global batch.
    """
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(f"nt_xent expects two [N, D] tensors of one shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    n = z1.shape[0]
    z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    anchors = torch.cat([z1, z2])
    if gather:
        all1, all2 = gather_with_grad(z1), gather_with_grad(z2)
        rank, _ = world_info()
    else:
        all1, all2, rank = z1, z2, 0
    total = all1.shape[0]
    candidates = torch.cat([all1, all2])
    logits = anchors @ candidates.T / temperature
    local = torch.arange(n, device=z1.device) + rank * n
    self_index = torch.cat([local, local + total])
    positive_index = torch.cat([local + total, local])
    rows = torch.arange(2 * n, device=z1.device)
    logits[rows, self_index] = float("-inf")
    return F.cross_entropy(logits, positive_index)


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
    positive = logits.gather(1, positive_index.unsqueeze(1)).squeeze(1)
    own = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, positive_index.unsqueeze(1), True)
    return (logits.masked_fill(own, float("-inf")).logsumexp(dim=1) - positive).mean()

"""Losses of the non-contrastive methods: no negatives, collapse is avoided by the
architecture (BYOL's predictor and target network, SimSiam's stop-gradient) or by the loss
itself (Barlow Twins' redundancy reduction, VICReg's variance and covariance terms)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..distributed import gather_with_grad


def negative_cosine(p: torch.Tensor, z: torch.Tensor, stop_gradient: bool = True) -> torch.Tensor:
    """Mean of −cos(p_i, z_i) over the batch (BYOL eq. (2) up to BYOL's 2 − 2·cos, SimSiam eq. (1)).

    ``z`` is detached inside (the target branch: BYOL's target network, SimSiam's
    stop-gradient), so only ``p`` receives a gradient; ``stop_gradient=False`` lets it flow
    into ``z`` too (SimSiam's collapsing ablation).  Ranges over [−1, 1].
    """
    if p.dim() != 2 or p.shape != z.shape:
        raise ValueError(f"negative_cosine expects p and z of one [N, D] shape, got {tuple(p.shape)} and {tuple(z.shape)}")
    return -F.cosine_similarity(p, (z.detach() if stop_gradient else z).to(p.dtype), dim=1).mean()


def barlow_twins(z1: torch.Tensor, z2: torch.Tensor, lambd: float = 0.0051, gather: bool = False) -> torch.Tensor:
    """Barlow Twins (Zbontar et al. 2021, eq. (1)): Σ_i (1 − C_ii)² + λ Σ_{i≠j} C_ij².

    C is the [D, D] cross-correlation of the two views' embeddings, each dimension
    standardised over the batch as BatchNorm without affine parameters does (biased
    variance, eps 1e-5).  With ``gather=True`` under DDP the embeddings of all ranks are
    gathered with their gradients first, so the statistics and C are those of the global
    batch (the paper's code syncs the BatchNorm and all-reduces C).
    """
    if z1.dim() != 2 or z1.shape != z2.shape or z1.shape[0] < 2:
        raise ValueError(f"barlow_twins expects z1 and z2 of one [N, D] shape with N >= 2, "
                         f"got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if gather:
        z1, z2 = gather_with_grad(z1), gather_with_grad(z2)
    dtype = torch.promote_types(z1.dtype, torch.float32)  # at least float32, even under autocast
    z1 = F.batch_norm(z1.to(dtype), None, None, training=True, eps=1e-5)
    z2 = F.batch_norm(z2.to(dtype), None, None, training=True, eps=1e-5)
    c = z1.T @ z2 / z1.shape[0]
    on_diagonal = (torch.diagonal(c) - 1).pow(2).sum()
    off_diagonal = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
    return on_diagonal + lambd * off_diagonal


def vicreg_terms(z1: torch.Tensor, z2: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4,
                 gather: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """VICReg's three terms (Bardes, Ponce, LeCun, ICLR 2022, eqs. (1)-(5)): the invariance
    s(Z, Z'), the mean squared difference over the batch *and* the dimensions (the official
    code's ``F.mse_loss``, for which the paper's weights are tuned); the variance
    [v(Z) + v(Z')] / 2 with v(Z) = (1/d) Σ_j max(0, γ − sqrt(Var(z_j) + ε)) (unbiased variance;
    the official code halves the sum of eq. (6)); the covariance c(Z) + c(Z') with
    c(Z) = (1/d) Σ_{i≠j} C(Z)_ij², C the unbiased covariance.
    With ``gather=True`` under DDP the embeddings of every rank are gathered with their
    gradients first (as the official code does), so all three are those of the global batch."""
    if z1.dim() != 2 or z1.shape != z2.shape or z1.shape[0] < 2:
        raise ValueError(f"vicreg expects z1 and z2 of one [N, D] shape with N >= 2, "
                         f"got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if gather:
        z1, z2 = gather_with_grad(z1), gather_with_grad(z2)
    dtype = torch.promote_types(z1.dtype, torch.float32)
    z1, z2 = z1.to(dtype), z2.to(dtype)
    invariance = F.mse_loss(z1, z2)
    variance = covariance = 0
    for z in (z1, z2):
        n, d = z.shape
        centred = z - z.mean(dim=0)
        variance = variance + F.relu(gamma - torch.sqrt(centred.pow(2).sum(0) / (n - 1) + eps)).mean() / 2
        cov = centred.T @ centred / (n - 1)
        covariance = covariance + (cov.pow(2).sum() - torch.diagonal(cov).pow(2).sum()) / d
    return invariance, variance, covariance


def vicreg(z1: torch.Tensor, z2: torch.Tensor, invariance_weight: float = 25.0, variance_weight: float = 25.0,
           covariance_weight: float = 1.0, gamma: float = 1.0, eps: float = 1e-4, gather: bool = False) -> torch.Tensor:
    """VICReg's loss (eq. (6), as the official code computes it): λ·s(Z, Z') + μ·[v(Z) + v(Z')]/2
    + ν·[c(Z) + c(Z')], the paper's
    λ = μ = 25, ν = 1, γ = 1, ε = 1e-4 by default (the terms: ``vicreg_terms``)."""
    invariance, variance, covariance = vicreg_terms(z1, z2, gamma, eps, gather)
    return invariance_weight * invariance + variance_weight * variance + covariance_weight * covariance


def tico(z_a: torch.Tensor, z_b: torch.Tensor, covariance: torch.Tensor, beta: float = 0.9, rho: float = 8.0,
         gather: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """TiCo (Zhu et al., "TiCo: Transformation Invariance and Covariance Contrast for
    Self-Supervised Visual Representation Learning", 2022, eq. (3)): with ẑ the L2-normalised
    embeddings, C_t = β·C_{t−1} + (1 − β)·ẑ_aᵀẑ_a / N (a running second-moment matrix,
    ``covariance`` = C_{t−1}), the loss −mean_i ẑ_a,i·ẑ_b,i + ρ·mean_i ẑ_a,iᵀ C_t ẑ_a,i.
    Returns the loss and C_t without gradient (the next step's ``covariance``).  The
    current batch's share of C_t keeps its gradient.  With ``gather=True`` under DDP, C_t is
    that of the global batch (embeddings gathered with their gradients)."""
    if z_a.dim() != 2 or z_a.shape != z_b.shape or covariance.shape != (z_a.shape[1],) * 2:
        raise ValueError(f"tico expects z_a and z_b of one [N, D] shape and a [D, D] covariance, got "
                         f"{tuple(z_a.shape)}, {tuple(z_b.shape)} and {tuple(covariance.shape)}")
    dtype = torch.promote_types(z_a.dtype, torch.float32)
    a, b = F.normalize(z_a.to(dtype), dim=1), F.normalize(z_b.to(dtype), dim=1)
    everyone = gather_with_grad(a) if gather else a
    current = beta * covariance.to(dtype) + (1 - beta) * everyone.T @ everyone / everyone.shape[0]
    loss = -(a * b).sum(dim=1).mean() + rho * ((a @ current) * a).sum(dim=1).mean()
    return loss, current.detach()

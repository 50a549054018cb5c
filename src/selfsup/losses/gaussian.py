"""Divergences between diagonal Gaussians, for methods whose heads predict a distribution.

``gaussian_kl`` is SuperInfo's bound on a superfluous-information term (the multi-view
information bottleneck: I(v1; z1 | v2) ≤ KL(p(z1|v1) ‖ p(z2|v2))); ``gaussian_jsd`` is DARe's
alignment term.  Both take means and log-variances ([B, D]), sum over the D dimensions and
average over the batch; gradients flow through every input.
"""
from __future__ import annotations

import torch


def _check(name: str, *tensors: torch.Tensor) -> None:
    shape = tensors[0].shape
    if len(shape) != 2 or any(t.shape != shape for t in tensors):
        raise ValueError(f"{name} expects four [B, D] tensors of one shape, got {[tuple(t.shape) for t in tensors]}")


def _kl_per_dim(mu1, logvar1, mu2, logvar2):
    """KL(N(mu1, e^logvar1) ‖ N(mu2, e^logvar2)) for each dimension."""
    return 0.5 * (logvar2 - logvar1 + (logvar1.exp() + (mu1 - mu2) ** 2) / logvar2.exp() - 1)


def gaussian_kl(mu1: torch.Tensor, logvar1: torch.Tensor, mu2: torch.Tensor, logvar2: torch.Tensor) -> torch.Tensor:
    """KL(N1 ‖ N2) between diagonal Gaussians, ½Σ_d[log σ2²/σ1² + (σ1² + (μ1 − μ2)²)/σ2² − 1],
    summed over dimensions, mean over the batch.  Zero when the two are equal (DARe's report
    writes the same divergence without the constant −1)."""
    _check("gaussian_kl", mu1, logvar1, mu2, logvar2)
    return _kl_per_dim(mu1, logvar1, mu2, logvar2).sum(dim=1).mean()


def gaussian_jsd(mu1: torch.Tensor, logvar1: torch.Tensor, mu2: torch.Tensor, logvar2: torch.Tensor) -> torch.Tensor:
    """½[KL(N1 ‖ M) + KL(N2 ‖ M)], where M is the Gaussian that matches the first two moments
    of the equal mixture ½N1 + ½N2: mean (μ1 + μ2)/2, variance (σ1² + σ2²)/2 + ((μ1 − μ2)/2)²
    per dimension; summed over dimensions, mean over the batch.  Symmetric, and zero when the
    two are equal.  The JSD of two Gaussians has no closed form: this moment-matched form
    exceeds the true JSD by KL(mixture ‖ M) (``tests/test_losses_gaussian.py`` checks both
    against Monte-Carlo estimates)."""
    _check("gaussian_jsd", mu1, logvar1, mu2, logvar2)
    mu_m = (mu1 + mu2) / 2
    logvar_m = ((logvar1.exp() + logvar2.exp()) / 2 + ((mu1 - mu2) / 2) ** 2).log()
    return 0.5 * (_kl_per_dim(mu1, logvar1, mu_m, logvar_m) + _kl_per_dim(mu2, logvar2, mu_m, logvar_m)).sum(dim=1).mean()

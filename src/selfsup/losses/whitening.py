"""W-MSE: Ermolov, Siarohin, Sangineto, Sebe, "Whitening for Self-Supervised Representation
Learning", ICML 2021."""
from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from .. import rng


def cholesky_whiten(x: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """The rows of [n, d] ``x`` centred and whitened by the inverse Cholesky factor of their
    covariance (eq. (5)-(6)): x̂ = L⁻¹ (x − μ) with L Lᵀ = (1 − ε)·Σ + ε·I, Σ the unbiased
    covariance, so x̂ has identity covariance.  Needs n > d (Σ of full rank)."""
    n, d = x.shape
    if n <= d:
        raise ValueError(f"cholesky_whiten needs more rows than columns, got {n} rows of {d}")
    x = x - x.mean(dim=0)
    covariance = (1 - eps) * (x.T @ x) / (n - 1) + eps * torch.eye(d, dtype=x.dtype, device=x.device)
    return torch.linalg.solve_triangular(torch.linalg.cholesky(covariance), x.T, upper=False).T


def w_mse(embeddings: list[torch.Tensor], whiten_size: int, generator: torch.Generator, iterations: int = 1,
          eps: float = 0.0) -> torch.Tensor:
    """W-MSE (eq. (4)): for each of ``iterations``, the batch is split at random (``generator``)
    into sub-batches of ``whiten_size`` images; each view's embeddings are whitened within
    each sub-batch (``cholesky_whiten``), L2-normalised, and every pair of views of an image
    is pulled together by the MSE of the normalised vectors, 2 − 2·cos; the mean over
    iterations, images and pairs.  ``embeddings``: one [N, D] tensor per view (the official
    W-MSE 2 and 4: 2 or 4 views), N a multiple of ``whiten_size``.  Whitening runs on each
    rank's own batch, as in the official code (no gather)."""
    n, d = embeddings[0].shape
    if len(embeddings) < 2 or any(z.shape != (n, d) for z in embeddings):
        raise ValueError(f"w_mse expects two or more [N, D] tensors of one shape, got {[tuple(z.shape) for z in embeddings]}")
    if n % whiten_size or whiten_size <= d:
        raise ValueError(f"w_mse needs the batch ({n}) to be a multiple of whiten_size ({whiten_size}) and "
                         f"whiten_size to exceed the embedding width ({d})")
    total = 0
    with torch.autocast(embeddings[0].device.type, enabled=False):
        views = [z.to(torch.promote_types(z.dtype, torch.float32)) for z in embeddings]  # at least float32
        for _ in range(iterations):
            groups = rng.randperm(n, generator, device=views[0].device).view(-1, whiten_size)
            whitened = [F.normalize(torch.cat([cholesky_whiten(z[g], eps) for g in groups]), dim=1) for z in views]
            pairs = list(itertools.combinations(whitened, 2))
            total = total + sum(2 - 2 * (a * b).sum(dim=1).mean() for a, b in pairs) / len(pairs)
    return total / iterations

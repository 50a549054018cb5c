"""LeJEPA: Balestriero & LeCun, "LeJEPA: Provable and Scalable Self-Supervised Learning Without
the Heuristics", 2025.  SIGReg (sketched isotropic Gaussian regularisation) pushes embeddings
towards N(0, I) by testing random 1-D projections of them against N(0, 1) with the Epps-Pulley
statistic; LeJEPA adds it, weighted by λ, to the views' prediction of their global views' mean."""
from __future__ import annotations

import torch

from ..distributed import gather_with_grad


def epps_pulley(x: torch.Tensor, knots: int = 17, t_max: float = 3.0) -> torch.Tensor:
    """The Epps-Pulley statistic of each column of ``x`` [N, S] against N(0, 1):
    N ∫ |φ_N(t) − e^(−t²/2)|² e^(−t²/2) dt, with φ_N the empirical characteristic function of the
    column, by the trapezoidal rule on ``knots`` points of [0, ``t_max``] doubled (the integrand is
    even), as the official code does.  Returns [S]."""
    if x.dim() != 2:
        raise ValueError(f"epps_pulley expects [N, S] samples, got {tuple(x.shape)}")
    t = torch.linspace(0, t_max, knots, device=x.device, dtype=x.dtype)
    gaussian = torch.exp(-t.square() / 2)
    step = t_max / (knots - 1)
    weights = torch.full_like(t, 2 * step)
    weights[[0, -1]] = step
    xt = x.unsqueeze(-1) * t  # [N, S, knots]
    error = (xt.cos().mean(0) - gaussian).square() + xt.sin().mean(0).square()
    return error @ (weights * gaussian) * x.shape[0]


def sigreg(embeddings: torch.Tensor, directions: torch.Tensor, knots: int = 17, t_max: float = 3.0,
           gather: bool = False) -> torch.Tensor:
    """SIGReg of [N, D] ``embeddings``: the mean Epps-Pulley statistic of their projections on the
    columns of ``directions`` [D, S] (unit vectors; draw them afresh each step, the same on every
    rank).  With ``gather=True`` under DDP the statistic is that of the global batch."""
    if embeddings.dim() != 2 or directions.dim() != 2 or directions.shape[0] != embeddings.shape[1]:
        raise ValueError(f"sigreg expects embeddings [N, D] and directions [D, S], got {tuple(embeddings.shape)} "
                         f"and {tuple(directions.shape)}")
    dtype = torch.promote_types(embeddings.dtype, torch.float32)
    if gather:
        embeddings = gather_with_grad(embeddings)
    return epps_pulley(embeddings.to(dtype) @ directions.to(dtype), knots, t_max).mean()


def lejepa(embeddings: torch.Tensor, global_views: int, directions: torch.Tensor, sigreg_weight: float = 0.05,
           knots: int = 17, t_max: float = 3.0, gather: bool = False) -> torch.Tensor:
    """(1 − λ) · prediction + λ · SIGReg over [V, B, D] ``embeddings`` of V views of B images, the
    first ``global_views`` of them global: the prediction term is the mean squared distance of
    every view's embedding to the mean of the image's global views (no stop-gradient), SIGReg is
    averaged over the views (LeJEPA's Algorithm 1)."""
    if embeddings.dim() != 3 or not 1 <= global_views <= embeddings.shape[0]:
        raise ValueError(f"lejepa expects [V, B, D] embeddings with 1 <= global_views <= V, got "
                         f"{tuple(embeddings.shape)} and {global_views}")
    dtype = torch.promote_types(embeddings.dtype, torch.float32)
    embeddings = embeddings.to(dtype)
    prediction = (embeddings[:global_views].mean(0) - embeddings).square().mean()
    regulariser = torch.stack([sigreg(view, directions, knots, t_max, gather) for view in embeddings]).mean()
    return (1 - sigreg_weight) * prediction + sigreg_weight * regulariser

"""SwAV: online codes by Sinkhorn-Knopp and the swapped-prediction loss.

Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster
Assignments", NeurIPS 2020, Sec. 3.1: the code of a global crop is the equipartitioned
soft assignment of the batch to the K prototypes, computed by a few Sinkhorn-Knopp
iterations on exp(scores / ε) (ε = 0.05, 3 iterations); every other crop predicts that code
through a softmax over its own prototype scores at temperature τ = 0.1 (eq. (2)–(3)).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from ..distributed import all_reduce, all_reduce_sum


def sinkhorn(scores: torch.Tensor, epsilon: float = 0.05, iterations: int = 3,
             gather: bool = False) -> torch.Tensor:
    """Sinkhorn-Knopp codes of [B, K] prototype scores, as a detached [B, K] tensor.

    Q = exp(scores / ε)ᵀ is normalised to total mass 1, then each iteration scales every
    prototype row to mass 1/K and every sample column to mass 1/B; the result is multiplied
    by B, so after at least one iteration each sample's code (row) sums to 1.  Runs without
    grad and in at least float32, even under autocast.  With ``gather=True`` under DDP, the
    total mass, the prototype row sums and B (the global batch size, so ranks may hold
    unequal batches) are summed across ranks, as in the official ``distributed_sinkhorn``;
    each rank gets the codes of its own rows of the global batch.
    """
    if scores.dim() != 2:
        raise ValueError(f"sinkhorn expects [B, K] scores, got {tuple(scores.shape)}")
    reduce = all_reduce_sum if gather else (lambda t: t)
    dtype = torch.promote_types(scores.dtype, torch.float32)
    with torch.no_grad(), torch.autocast(device_type=scores.device.type, enabled=False):
        logits = scores.detach().to(dtype) / epsilon
        # Any constant shift cancels in the first normalisation; the global max keeps exp()
        # finite and is the same on every rank.
        shift = logits.max() if logits.numel() else logits.new_tensor(float("-inf"))
        if gather:
            shift = all_reduce(shift, "max")
        # Q is kept as [B, K] (Qᵀ of the paper) and scaled in place: on a CPU, a fresh
        # [B, K] tensor per operation costs more than the arithmetic at SwAV's sizes.
        q = logits.sub_(shift).exp_()
        k = q.shape[1]
        b_total = reduce(torch.tensor(float(q.shape[0]), dtype=dtype, device=q.device))
        q.div_(reduce(q.sum()))
        for _ in range(iterations):
            q.div_(reduce(q.sum(dim=0, keepdim=True)) * k)
            q.div_(q.sum(dim=1, keepdim=True) * b_total)
        q.mul_(b_total)
    return q


def swav(scores: Sequence[torch.Tensor], num_assign: int = 2, temperature: float = 0.1,
         epsilon: float = 0.05, iterations: int = 3,
         queue_scores: Sequence[torch.Tensor | None] | None = None,
         gather: bool = False) -> torch.Tensor:
    """Swapped-prediction loss over crops' [B, K] prototype scores.

    Crops 0 .. ``num_assign`` - 1 (the global crops) get codes from :func:`sinkhorn` on their
    detached scores; every other crop v predicts code i with the cross-entropy
    −Σ_k q_i log softmax(scores[v] / τ).  The loss is the batch mean, averaged over the
    len(scores) − 1 predicting crops and over the assigned crops, as in the official code.
    ``queue_scores[i]`` (optional, [Q, K]) are scores of queued features, prepended to crop
    i's scores for Sinkhorn; only the last B codes (the batch's) are kept.  No gradient
    flows through the codes.
    """
    scores = list(scores)
    if len(scores) < 2:
        raise ValueError(f"swav expects at least two crops, got {len(scores)}")
    shape = scores[0].shape
    if len(shape) != 2 or any(s.shape != shape for s in scores):
        raise ValueError(f"swav expects [B, K] scores of one shape per crop, got {[tuple(s.shape) for s in scores]}")
    if not 1 <= num_assign <= len(scores):
        raise ValueError(f"swav expects 1 <= num_assign <= {len(scores)}, got {num_assign}")
    if queue_scores is not None and len(queue_scores) != num_assign:
        raise ValueError(f"swav expects one queue_scores entry per assigned crop ({num_assign}), got {len(queue_scores)}")
    batch = shape[0]
    log_probs = [F.log_softmax(s / temperature, dim=1) for s in scores]
    loss = scores[0].new_zeros(())
    for i in range(num_assign):
        with torch.no_grad():
            s = scores[i].detach()
            queued = None if queue_scores is None else queue_scores[i]
            if queued is not None:
                if queued.dim() != 2 or queued.shape[1] != shape[1]:
                    raise ValueError(f"swav expects [Q, {shape[1]}] queue_scores, got {tuple(queued.shape)}")
                s = torch.cat([queued.detach().to(s.dtype), s])
            codes = sinkhorn(s, epsilon, iterations, gather=gather)[s.shape[0] - batch:]
        subloss = sum(-(codes * log_probs[v]).sum(dim=1).mean() for v in range(len(scores)) if v != i)
        loss = loss + subloss / (len(scores) - 1)
    return loss / num_assign

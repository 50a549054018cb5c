"""InfoNCE with a queue of negatives, the contrastive loss of MoCo.

He et al., "Momentum Contrast for Unsupervised Visual Representation Learning", CVPR 2020,
eq. (1) and Algorithm 1: each query's positive is the key of the same image (from the
momentum encoder) and its K negatives are the queued keys of earlier batches; logits are
cosine similarities divided by a temperature τ (paper default 0.07; our default too), with
the positive in column 0, and the loss is the cross-entropy against label 0.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..distributed import gather_with_grad, world_info


def info_nce(query: torch.Tensor, key: torch.Tensor, queue: torch.Tensor, temperature: float = 0.07,
             index: torch.Tensor | None = None, queue_index: torch.Tensor | None = None) -> torch.Tensor:
    """Mean InfoNCE of [N, D] queries against their [N, D] keys and a [K, D] queue.

    All three are L2-normalised inside.  ``key`` and ``queue`` are detached inside (in MoCo
    they come from the momentum encoder, which gets no gradient), so only ``query``
    receives a gradient.  ``queue`` may have K = 0 rows; then each query's only logit is
    its positive and the loss is 0.  With the queries' image ``index`` ([N]) and the
    queue's ``queue_index`` ([K]), a queued key of the query's own image is left out of its
    negatives (it would be a second positive counted as a negative).
    """
    if query.dim() != 2 or key.shape != query.shape:
        raise ValueError(f"info_nce expects query and key of one [N, D] shape, got {tuple(query.shape)} and {tuple(key.shape)}")
    if queue.dim() != 2 or queue.shape[1] != query.shape[1]:
        raise ValueError(f"info_nce expects a [K, D] queue with D = {query.shape[1]}, got {tuple(queue.shape)}")
    q = F.normalize(query, dim=1)
    k = F.normalize(key.detach().to(q.dtype), dim=1)
    negatives = F.normalize(queue.detach().to(q.dtype), dim=1)
    positive = (q * k).sum(dim=1, keepdim=True)
    negative = q @ negatives.T
    if index is not None and queue_index is not None:
        negative = negative.masked_fill(index.unsqueeze(1) == queue_index.unsqueeze(0), float("-inf"))
    logits = torch.cat([positive, negative], dim=1) / temperature
    target = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    return F.cross_entropy(logits, target)


def batch_info_nce(query: torch.Tensor, key: torch.Tensor, temperature: float = 0.07,
                   gather: bool = False) -> torch.Tensor:
    """Mean InfoNCE of [N, D] queries whose dictionary is the batch's own keys: query i's
    positive is key i, its negatives the other keys (the end-to-end dictionary of the MoCo
    paper's comparison, Fig. 2a).  Inputs are L2-normalised inside and keys keep their
    gradient.  With ``gather=True`` under DDP the keys of every rank, gathered with
    gradients, form the dictionary, so the loss equals the single-process loss on the
    global batch."""
    if query.dim() != 2 or key.shape != query.shape:
        raise ValueError(f"batch_info_nce expects query and key of one [N, D] shape, got {tuple(query.shape)} "
                         f"and {tuple(key.shape)}")
    q, k = F.normalize(query, dim=1), F.normalize(key, dim=1)
    rank = 0
    if gather:
        k, rank = gather_with_grad(k), world_info()[0]
    target = torch.arange(q.shape[0], device=q.device) + rank * q.shape[0]
    return F.cross_entropy(q @ k.T / temperature, target)


def sampled_info_nce(prediction: torch.Tensor, target: torch.Tensor, negative_index: torch.Tensor,
                     temperature: float = 1.0, normalize: bool = False) -> torch.Tensor:
    """Mean InfoNCE of [N, D] predictions against their [N, D] targets, with the targets at
    ``negative_index`` ([M] positions in 0..N−1, shared by every prediction) as negatives; a
    prediction's own target is masked out of its negatives.  Scores are dot products (CPC's
    log-bilinear model, Oord et al. 2018 eq. 3, with the bilinear map applied by the caller)
    divided by ``temperature``, or cosine similarities with ``normalize``.  Targets keep their
    gradient (CPC's encoder learns through both sides)."""
    if prediction.dim() != 2 or target.shape != prediction.shape:
        raise ValueError(f"sampled_info_nce expects prediction and target of one [N, D] shape, got "
                         f"{tuple(prediction.shape)} and {tuple(target.shape)}")
    if normalize:
        prediction, target = F.normalize(prediction, dim=1), F.normalize(target, dim=1)
    positive = (prediction * target).sum(dim=1, keepdim=True)
    negative = prediction @ target[negative_index].T
    own = negative_index.unsqueeze(0) == torch.arange(prediction.shape[0], device=prediction.device).unsqueeze(1)
    logits = torch.cat([positive, negative.masked_fill(own, float("-inf"))], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(prediction.shape[0], dtype=torch.long, device=prediction.device))

"""Losses that use class labels: supervised contrastive (SupCon) and the FaceNet triplet loss."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..distributed import gather_no_grad, gather_with_grad, world_info

TRIPLET_MINING = ("semi-hard", "hard", "all")


def supcon(features: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1,
           base_temperature: float = 0.07, gather: bool = False) -> torch.Tensor:
    """Supervised contrastive loss L_out (Khosla et al., NeurIPS 2020, eq. (2)).

    ``features`` is [N, V, D] (V views of N images), L2-normalised inside; ``labels`` is [N].
    Every one of the N·V views is an anchor; its positives are all other views with its label,
    its contrast set all other views; the per-anchor loss −(τ/τ_base)·mean_p log softmax is
    averaged over anchors that have a positive (with V ≥ 2 every anchor has one).  With
    ``gather=True`` under DDP, positives and the contrast set come from every rank (features
    gathered with gradients), each rank averaging over its own anchors.
    """
    if features.dim() != 3 or labels.shape != features.shape[:1]:
        raise ValueError(f"supcon expects [N, V, D] features and [N] labels, got {tuple(features.shape)} "
                         f"and {tuple(labels.shape)}")
    n, views, _ = features.shape
    features = F.normalize(features, dim=2)
    everything, all_labels, offset = features, labels, 0
    if gather:
        everything, all_labels = gather_with_grad(features), gather_no_grad(labels)
        offset = world_info()[0] * n
    total = everything.shape[0]
    anchors = features.transpose(0, 1).reshape(views * n, -1)  # view-major: row j*n + i is view j of image i
    candidates = everything.transpose(0, 1).reshape(views * total, -1)
    logits = anchors @ candidates.T / temperature
    rows = torch.arange(views * n, device=features.device)
    own = (rows // n) * total + offset + rows % n  # each anchor's own column
    not_self = torch.ones_like(logits, dtype=torch.bool)
    not_self[rows, own] = False
    positive = (labels.repeat(views)[:, None] == all_labels.repeat(views)[None, :]) & not_self
    log_prob = logits - torch.logsumexp(logits.masked_fill(~not_self, float("-inf")), dim=1, keepdim=True)
    counts = positive.sum(dim=1)
    has_positive = counts > 0
    if not has_positive.any():
        raise ValueError("supcon: no anchor has a positive (give V >= 2 views or repeated labels)")
    mean_log_prob = log_prob.masked_fill(~positive, 0.0).sum(dim=1)[has_positive] / counts[has_positive]
    return -(temperature / base_temperature) * mean_log_prob.mean()


def triplet(embeddings: torch.Tensor, labels: torch.Tensor, margin: float = 0.2,
            mining: str = "semi-hard") -> torch.Tensor:
    """FaceNet's triplet loss (Schroff et al., CVPR 2015, eq. (1)) with online mining in the batch.

    Distances are squared Euclidean between the rows of ``embeddings`` as given (FaceNet
    L2-normalises them first; the method does).  For every anchor-positive pair (same label,
    distinct rows) the loss is max(0, d(a,p) − d(a,n) + margin) with the negative n chosen by
    ``mining``: ``semi-hard`` (FaceNet Sec. 3.2): the closest negative farther than the positive,
    or the farthest negative if none is; ``hard``: per anchor, its farthest positive and closest
    negative (one term per anchor; Hermans et al. 2017); ``all``: every negative, averaged over
    all valid triplets.  Anchors without a positive or a negative contribute nothing.
    """
    if mining not in TRIPLET_MINING:
        raise ValueError(f"triplet mining must be one of {', '.join(TRIPLET_MINING)}, not {mining!r}")
    if embeddings.dim() != 2 or labels.shape != embeddings.shape[:1]:
        raise ValueError(f"triplet expects [N, D] embeddings and [N] labels, got {tuple(embeddings.shape)} "
                         f"and {tuple(labels.shape)}")
    squared = (embeddings * embeddings).sum(dim=1)
    distance = (squared[:, None] + squared[None, :] - 2 * embeddings @ embeddings.T).clamp_min(0)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    positive, negative = same & ~eye, ~same
    zero = embeddings.sum() * 0  # keeps the graph when nothing qualifies
    if mining == "hard":
        valid = positive.any(dim=1) & negative.any(dim=1)
        if not valid.any():
            return zero
        hardest_positive = distance.masked_fill(~positive, float("-inf")).max(dim=1).values
        hardest_negative = distance.masked_fill(~negative, float("inf")).min(dim=1).values
        return F.relu(hardest_positive - hardest_negative + margin)[valid].mean()
    d_ap = distance[:, :, None]  # [anchor, positive, 1]
    d_an = distance[:, None, :]  # [anchor, 1, negative]
    if mining == "all":
        valid = positive[:, :, None] & negative[:, None, :]
        return F.relu(d_ap - d_an + margin)[valid].mean() if valid.any() else zero
    candidates = negative[:, None, :].expand(-1, len(labels), -1)
    farther = candidates & (d_an > d_ap)
    closest_farther = d_an.expand_as(farther).masked_fill(~farther, float("inf")).min(dim=2).values
    farthest = distance.masked_fill(~negative, float("-inf")).max(dim=1).values[:, None].expand_as(closest_farther)
    chosen = torch.where(farther.any(dim=2), closest_farther, farthest)
    valid = positive & negative.any(dim=1, keepdim=True)
    return F.relu(distance - chosen + margin)[valid].mean() if valid.any() else zero

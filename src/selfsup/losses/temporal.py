"""The series losses.  TS2Vec's hierarchical contrastive loss (Yue et al., AAAI 2022, Sec.
3.3): per-step representations of two overlapping crops of the same series are contrasted
against other series at the same step (instance-wise) and against other steps of the same
series (temporal), at every scale of a max-pooling pyramid over time.  T-Loss's triplet loss
(Franceschi et al., NeurIPS 2019): a sub-series close to a sub-series that contains it, far
from sub-series of other series."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _paired_cross_entropy(z: torch.Tensor) -> torch.Tensor:
    """z: [G, 2N, D], the first N of each group paired with the last N.  For each group, the
    softmax over raw dot products with the other 2N − 1 members (no temperature, no
    normalisation, as TS2Vec), cross-entropy of each member's partner, averaged."""
    n = z.shape[1] // 2
    scores = z @ z.transpose(1, 2)  # [G, 2N, 2N]
    eye = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = scores.masked_fill(eye, float("-inf"))
    log_probs = F.log_softmax(logits, dim=-1)
    idx = torch.arange(n, device=z.device)
    return -(log_probs[:, idx, idx + n].mean() + log_probs[:, idx + n, idx].mean()) / 2


def instance_contrastive(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """z1, z2: [B, T, D].  At each step, series i of one crop against every other series of
    both crops; its partner is series i of the other crop.  0 for a batch of one series."""
    if z1.shape[0] == 1:
        return z1.new_zeros(())
    return _paired_cross_entropy(torch.cat([z1, z2], 0).transpose(0, 1))


def temporal_contrastive(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """z1, z2: [B, T, D].  Within each series, step t of one crop against every other step of
    both crops; its partner is step t of the other crop.  0 for a single step."""
    if z1.shape[1] == 1:
        return z1.new_zeros(())
    return _paired_cross_entropy(torch.cat([z1, z2], 1))


def hierarchical_contrastive(z1: torch.Tensor, z2: torch.Tensor, alpha: float = 0.5,
                             temporal_unit: int = 0) -> torch.Tensor:
    """TS2Vec's loss of two views [B, T, D] of the same steps: α·instance + (1 − α)·temporal at
    each level of max-pooling by 2 over time (temporal from level ``temporal_unit`` on; the
    last level, one step, instance only), averaged over the levels."""
    loss, levels = z1.new_zeros(()), 0
    while z1.shape[1] > 1:
        loss = loss + alpha * instance_contrastive(z1, z2)
        if levels >= temporal_unit:
            loss = loss + (1 - alpha) * temporal_contrastive(z1, z2)
        levels += 1
        z1 = F.max_pool1d(z1.transpose(1, 2), 2).transpose(1, 2)
        z2 = F.max_pool1d(z2.transpose(1, 2), 2).transpose(1, 2)
    if z1.shape[1] == 1:
        loss = loss + alpha * instance_contrastive(z1, z2)
        levels += 1
    return loss / levels


def t_loss(anchor: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor,
           negative_penalty: float = 1.0) -> torch.Tensor:
    """T-Loss's triplet loss (Franceschi et al. 2019, eq. 1): anchor, positive [B, D] and
    negatives [K, B, D] (raw dot products, no normalisation):
    −log σ(a·p) + (negative_penalty / K) Σ_k −log σ(−a·n_k), averaged over the batch."""
    attract = -F.logsigmoid((anchor * positive).sum(-1)).mean()
    repel = -F.logsigmoid(-(anchor.unsqueeze(0) * negatives).sum(-1)).mean(1).sum(0)
    return attract + negative_penalty / negatives.shape[0] * repel

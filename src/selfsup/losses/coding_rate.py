"""EMP-SSL: Tong, Chen, Ma, LeCun, "EMP-SSL: Towards Self-Supervised Learning in One Training
Epoch", 2023 (the total coding rate of Yu et al.'s MCR², NeurIPS 2020)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def total_coding_rate(z: torch.Tensor, eps: float = 0.2) -> torch.Tensor:
    """R(Z) = ½ logdet(I_d + d/(N·ε)·ZᵀZ) of [N, D] embeddings (EMP-SSL eq. (2), with the
    official code's ε, not ε², in the scale), computed as ½ logdet(I_N + d/(N·ε)·ZZᵀ), its
    equal by Sylvester's determinant identity, on the smaller of the two sides."""
    n, d = z.shape
    z = z.to(torch.promote_types(z.dtype, torch.float32))
    gram = z.T @ z if d <= n else z @ z.T
    identity = torch.eye(gram.shape[0], dtype=z.dtype, device=z.device)
    return torch.logdet(identity + d / (n * eps) * gram) / 2


def emp_ssl(patches: torch.Tensor, invariance_weight: float = 200.0, eps: float = 0.2) -> torch.Tensor:
    """EMP-SSL's objective (eq. (4)) for [P, N, D] embeddings of P patches of N images: the mean
    over patches of −R(Z_p) (``total_coding_rate`` of the batch's embeddings of patch p, which
    keeps them spread out) minus ``invariance_weight`` × the mean cosine similarity of each
    patch's embedding to the mean of its image's P patch embeddings (the mean keeps its
    gradient, as in the official code).  Embeddings are L2-normalised inside.  Computed on each
    rank's own batch (the official code does not gather)."""
    if patches.dim() != 3 or patches.shape[0] < 2:
        raise ValueError(f"emp_ssl expects [P, N, D] embeddings of at least two patches, got {tuple(patches.shape)}")
    z = F.normalize(patches.to(torch.promote_types(patches.dtype, torch.float32)), dim=2)
    coding_rate = torch.stack([total_coding_rate(patch, eps) for patch in z]).mean()
    invariance = F.cosine_similarity(z, z.mean(dim=0, keepdim=True), dim=2).mean()
    return -coding_rate - invariance_weight * invariance

"""Collapse diagnostics of an encoder's representation, for any method.

* ``normalized_std``: the standard deviation over samples of each dimension of the
  L2-normalised features, averaged over dimensions (SimSiam, Chen & He 2021, Fig. 2): about
  1/√d for features spread over the sphere, 0 when every image maps to one point.
* ``effective_rank``: exp of the entropy of the normalised eigenvalues of the features'
  covariance (Roy & Vetterli 2007), between 1 (one direction used) and d.
* ``rankme``: RankMe (Garrido et al. 2023, Eq. 1): exp of the entropy of the [N, d] feature
  matrix's singular values divided by their sum (plus ε = 1e-7, the paper's), uncentred; the
  paper finds it tracks downstream accuracy without labels.
* ``alignment`` (E‖f(x) − f(x⁺)‖², lower is better) and ``uniformity``
  (log E exp(−2‖f(x) − f(y)‖²), lower is better) of L2-normalised features (Wang & Isola 2020).

``embedding_diagnostics`` measures them on the backbone features (``Method.features``, what
every protocol evaluates) of a dataset, in eval mode; the positive pairs for alignment are two
views made with one fixed augmentation (SimCLR's defaults) for every method, so that the
numbers compare across methods.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from ..data.augment import AugmentConfig
from ..data.datasets import batch_inputs, collate_batch
from ..data.views import Normalization, ViewSpec, augment_for, clean_view, make_views
from .features import eval_mode


def normalized_std(features: torch.Tensor) -> float:
    """Mean over dimensions of the per-dimension std of the L2-normalised [N, d] features."""
    return F.normalize(features.double(), dim=1).std(dim=0).mean().item()


def effective_rank(features: torch.Tensor) -> float:
    """exp(H(p)) with p the covariance eigenvalues of [N, d] features divided by their sum."""
    centred = features.double() - features.double().mean(0)
    eigenvalues = torch.linalg.svdvals(centred.T @ centred / max(1, centred.shape[0] - 1))
    if eigenvalues.sum() <= 0:
        return 1.0
    p = eigenvalues / eigenvalues.sum()
    p = p[p > 0]
    return math.exp(-(p * p.log()).sum().item())


def rankme(features: torch.Tensor, eps: float = 1e-7) -> float:
    """exp(H(p)) with p_k = σ_k / ‖σ‖₁ + ε, σ the singular values of the [N, d] features."""
    sigma = torch.linalg.svdvals(features.double())
    p = sigma / sigma.sum().clamp_min(1e-300) + eps
    return math.exp(-(p * p.log()).sum().item())


def alignment(a: torch.Tensor, b: torch.Tensor, alpha: float = 2.0) -> float:
    """E ‖â − b̂‖^α over positive pairs (rows of ``a`` and ``b``), L2-normalised."""
    return (F.normalize(a.double(), dim=1) - F.normalize(b.double(), dim=1)).norm(dim=1).pow(alpha).mean().item()


def uniformity(features: torch.Tensor, t: float = 2.0) -> float:
    """log E exp(−t‖x̂ − ŷ‖²) over distinct pairs of L2-normalised rows."""
    distances = torch.pdist(F.normalize(features.double(), dim=1)).pow(2)
    return torch.logsumexp(-t * distances, dim=0).item() - math.log(distances.numel())


@torch.no_grad()
def embedding_diagnostics(method, dataset, norm: Normalization, device="cpu", seed: int = 0,
                          channels_last: bool = False, batch_size: int = 512,
                          clean: torch.Tensor | None = None) -> dict:
    """The diagnostics of ``method.features`` on ``dataset`` (clean images for the
    spread, two seeded augmented views per image for alignment), in eval mode. ``clean``: the
    clean images' features in dataset order where the caller has them already (not embedded again)."""
    generator = torch.Generator(device=device).manual_seed(seed)
    first, second, own_clean = [], [], []
    with eval_mode(method):
        for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_batch):
            images = batch_inputs(batch).to(device)
            pair = ViewSpec(augment_for(images, AugmentConfig()), count=2)
            views = make_views(images, [pair], norm, generator, channels_last)
            outputs = [first, second]
            if clean is None:
                x = clean_view(images, norm)
                views.append(x.contiguous(memory_format=torch.channels_last) if channels_last else x)
                outputs.append(own_clean)
            for out, inputs in zip(outputs, views):
                out.append(method.features(inputs).float().cpu())
    first, second = torch.cat(first), torch.cat(second)
    clean = torch.cat(own_clean) if clean is None else clean.float().cpu()
    return {"normalized_std": normalized_std(clean), "normalized_std_healthy": 1 / math.sqrt(clean.shape[1]),
            "effective_rank": effective_rank(clean), "rankme": rankme(clean), "feature_dim": clean.shape[1],
            "alignment": alignment(first, second), "uniformity": uniformity(clean)}

"""Noise-contrastive estimation against a memory bank, the loss of Instance Discrimination.

Wu et al., "Unsupervised Feature Learning via Non-Parametric Instance Discrimination",
CVPR 2018, Sec. 3.2: the non-parametric softmax P(i | f) = exp(v_i·f / τ) / Z over the n
instances is learnt by NCE, a binary classification of data against noise drawn from the
uniform distribution P_n = 1/n, m noise samples per data sample: with
h(i, f) = P(i | f) / (P(i | f) + m/n), the loss is −log h(i, f) for the data (the bank entry of
the image itself) − Σ log(1 − h(j, f)) for the noise entries j (eq. 6).  Z is a constant the
paper estimates once, from the first batches (``estimate_log_z``).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def estimate_log_z(similarities: torch.Tensor, temperature: float, data_size: int) -> torch.Tensor:
    """log Z with Z ≈ n·mean(exp(s / τ)) over a batch of cosine similarities to bank entries
    (eq. 7 of the paper); a detached scalar."""
    s = similarities.detach().double().flatten() / temperature
    return (torch.logsumexp(s, 0) - math.log(s.numel()) + math.log(data_size)).float()


def nce_memory(embeddings: torch.Tensor, positives: torch.Tensor, noise: torch.Tensor, temperature: float,
               log_z: torch.Tensor | float, data_size: int) -> torch.Tensor:
    """Mean NCE loss of [B, D] embeddings against their own [B, D] bank entries (the data)
    and [M, D] noise entries drawn uniformly from the bank (shared by the batch; the paper
    draws them per sample, the same in expectation).  Everything is L2-normalised inside;
    the bank entries are detached, so only ``embeddings`` gets a gradient.  Computed in log
    space: −log h = softplus(log(M/n) − log P), −log(1 − h) = softplus(log P − log(M/n)).
    """
    if embeddings.dim() != 2 or positives.shape != embeddings.shape:
        raise ValueError(f"nce_memory expects embeddings and positives of one [B, D] shape, got "
                         f"{tuple(embeddings.shape)} and {tuple(positives.shape)}")
    if noise.dim() != 2 or noise.shape[1] != embeddings.shape[1]:
        raise ValueError(f"nce_memory expects [M, {embeddings.shape[1]}] noise, got {tuple(noise.shape)}")
    f = F.normalize(embeddings, dim=1)
    positives = F.normalize(positives.detach().to(f.dtype), dim=1)
    noise = F.normalize(noise.detach().to(f.dtype), dim=1)
    log_noise = math.log(noise.shape[0] / data_size)  # log(m · P_n)
    log_p_data = (f * positives).sum(dim=1) / temperature - log_z
    log_p_noise = f @ noise.T / temperature - log_z
    return (F.softplus(log_noise - log_p_data) + F.softplus(log_p_noise - log_noise).sum(dim=1)).mean()


def bank_softmax(embeddings: torch.Tensor, bank: torch.Tensor, index: torch.Tensor, temperature: float) -> torch.Tensor:
    """The non-parametric softmax itself, computed exactly over every bank entry (eq. 2, which
    the paper's CIFAR-10 experiments compare with its NCE approximation): the mean over the
    batch of −log P(i | f), P(i | f) = exp(v_i·f / τ) / Σ_j exp(v_j·f / τ), where ``index``
    holds each embedding's own bank row i.  L2-normalised inside; the bank is detached."""
    if embeddings.dim() != 2 or bank.dim() != 2 or bank.shape[1] != embeddings.shape[1]:
        raise ValueError(f"bank_softmax expects [B, D] embeddings and an [N, D] bank, got {tuple(embeddings.shape)} "
                         f"and {tuple(bank.shape)}")
    f = F.normalize(embeddings, dim=1)
    return F.cross_entropy(f @ F.normalize(bank.detach().to(f.dtype), dim=1).T / temperature, index)

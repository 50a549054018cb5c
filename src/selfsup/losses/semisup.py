"""The pure pieces of the semi-supervised methods (``selfsup.methods.semisup``): how a
prediction on an unlabelled image becomes a target and how much it weighs.  Probabilities in,
tensors out; the methods keep the running statistics these read."""
from __future__ import annotations

import math

import torch


def sharpen(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """p^(1/T), renormalised over the classes (MixMatch's Sharpen; for a softmax it is
    softmax(z / T) of the same logits, UDA's sharpening)."""
    powered = probs ** (1 / temperature)
    return powered / powered.sum(-1, keepdim=True)


def align_distribution(probs: torch.Tensor, model_mean: torch.Tensor, target: torch.Tensor | None = None,
                       eps: float = 1e-6) -> torch.Tensor:
    """Distribution alignment (ReMixMatch; SoftMatch's uniform alignment): each row of
    ``probs`` times ``target`` (the class marginal to reach; None: uniform) over
    ``model_mean`` (the running mean of the model's predictions), renormalised."""
    target = torch.full_like(model_mean, 1 / model_mean.numel()) if target is None else target
    aligned = probs * (target + eps) / (model_mean + eps)
    return aligned / aligned.sum(-1, keepdim=True)


MAPPINGS = {"convex": lambda b: b / (2 - b), "linear": lambda b: b,
            "concave": lambda b: torch.log1p(b) / math.log(2)}


def flexmatch_thresholds(class_counts: torch.Tensor, unused: int | torch.Tensor, threshold: float,
                         mapping: str = "convex", warmup: bool = True) -> torch.Tensor:
    """FlexMatch's per-class thresholds (Zhang et al. 2021, eq. 6-11): the learning effect
    σ(c) (``class_counts``: unlabelled images whose latest confident prediction is c)
    normalised by the largest σ, or with ``warmup`` by the larger of that and the ``unused``
    images that have none yet; then mapped (convex x/(2−x), linear, concave) and scaled by
    ``threshold``.  With no image counted yet every threshold is 0 (the paper's start)."""
    counts = class_counts.float()
    scale = torch.maximum(counts.max(), torch.as_tensor(float(unused) if warmup else 0.0, device=counts.device))
    beta = counts / scale.clamp_min(1.0)
    return threshold * MAPPINGS[mapping](beta)


def freematch_thresholds(global_threshold: torch.Tensor, class_mean: torch.Tensor) -> torch.Tensor:
    """FreeMatch's self-adaptive thresholds (Wang et al. 2023, eq. 6): the global τ (running
    mean confidence) scaled per class by the running mean probability of that class over its
    largest (MaxNorm)."""
    return global_threshold * class_mean / class_mean.max()


def class_counts(classes: torch.Tensor, num_classes: int, weights: torch.Tensor | None = None) -> torch.Tensor:
    """How often each of ``num_classes`` classes occurs in ``classes`` (float), each occurrence
    counted with its ``weights`` entry (0 leaves it out; a negative class must have weight 0).
    Unlike ``torch.bincount`` it never reads a value on the host, so it costs a GPU no sync."""
    weights = torch.ones(classes.shape, device=classes.device) if weights is None else weights.float()
    return torch.zeros(num_classes, device=classes.device).scatter_add_(0, classes.clamp_min(0), weights)


def freematch_fairness(strong_probs: torch.Tensor, class_mean: torch.Tensor, class_histogram: torch.Tensor,
                       weights: torch.Tensor | None = None, eps: float = 1e-12) -> torch.Tensor:
    """FreeMatch's self-adaptive fairness term (eq. 9), to be minimised: Σ_c a_c log b_c with
    a = SumNorm(p̄ / h̄) from the running class mean ``class_mean`` and running histogram of
    predicted classes ``class_histogram``, and b = SumNorm(mean(p_s) / h_s) from
    ``strong_probs`` (the strong views of the images with a pseudo-label: those whose
    ``weights`` entry is 1, or all) and the histogram of their predicted classes (a class
    predicted nowhere contributes 0).  Minimising it pushes the strong predictions away from
    the running imbalance; 0 without images."""
    weights = torch.ones(strong_probs.shape[0], device=strong_probs.device) if weights is None else weights
    counts = class_counts(strong_probs.argmax(1), strong_probs.shape[1], weights).to(strong_probs.dtype)
    inverse = torch.where(counts > 0, counts.sum() / counts.clamp_min(1), torch.zeros_like(counts))
    model = class_mean / class_histogram
    model = (model / model.sum()).detach()
    strong = (strong_probs * weights[:, None]).sum(0) * inverse  # the mean's 1/n cancels in the SumNorm
    strong = strong / strong.sum().clamp_min(eps)
    return torch.where(counts.sum() > 0, (model * torch.log(strong + eps)).sum(), strong_probs.new_zeros(()))


def softmatch_weights(confidence: torch.Tensor, mean: torch.Tensor, variance: torch.Tensor,
                      n_sigma: float = 2.0) -> torch.Tensor:
    """SoftMatch's sample weights (Chen et al. 2023, eq. 7): 1 for a confidence at or above
    the running mean μ, else a Gaussian exp(−(c − μ)² / (2σ²/n_sigma²)) of its distance below
    (a truncated Gaussian with λmax 1; USB scales the variance by n_sigma = 2)."""
    below = (confidence - mean).clamp(max=0)
    return torch.exp(-below ** 2 / (2 * variance / n_sigma ** 2))


def tsa_threshold(progress: float, schedule: str, num_classes: int) -> float:
    """UDA's training-signal annealing (Xie et al. 2020, §3.3): a labelled image whose
    correct-class probability is above this is left out of the supervised loss; α_t at
    ``progress`` t of the run is t (linear), exp(5(t − 1)) (exp) or 1 − exp(−5t) (log), the
    threshold α_t(1 − 1/K) + 1/K; "none": 1 (every image counts)."""
    alphas = {"linear": progress, "exp": math.exp(5 * (progress - 1)), "log": 1 - math.exp(-5 * progress)}
    if schedule == "none":
        return 1.0
    return alphas[schedule] * (1 - 1 / num_classes) + 1 / num_classes

"""SoftMatch, Chen et al., ICLR 2023: FixMatch's hard threshold replaced by a weight per
pseudo-label, a truncated Gaussian of its confidence: 1 at or above the running mean μ of
the confidences, exp(−(c − μ)²/(2σ²/4)) below (``softmatch_weights``; μ and σ² are running
means, momentum ``ema_p`` 0.999, from 1/C and 1, of the batch's mean and unbiased variance).
The confidences are read after uniform alignment (the weak predictions times the uniform
marginal over their running mean, which starts at the first batch's mean); the
pseudo-labels are the classes of the unaligned predictions, as USB does.  Statistics over
the global batch.
"""
from __future__ import annotations

import torch

from ...distributed import gather_no_grad
from ...losses.semisup import align_distribution, softmatch_weights
from ..helpers import without
from .base import start_or_update, update_running
from .fixmatch import FixMatch


class SoftMatch(FixMatch):
    """SoftMatch (Chen et al. 2023): truncated-Gaussian weights and uniform alignment."""

    name = "softmatch"
    defaults = {**without(FixMatch.defaults, "threshold"), "ema_p": 0.999, "n_sigma": 2.0}
    limits = {**without(FixMatch.limits, "threshold"), "ema_p": (0, 1), "n_sigma": (1e-6, None)}

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        self.register_buffer("prediction_mean", torch.zeros(run.num_classes))  # all 0: no batch seen yet
        self.register_buffer("confidence_mean", torch.tensor(1 / run.num_classes))
        self.register_buffer("confidence_variance", torch.tensor(1.0))

    def confidence_weights(self, probs, indices):
        momentum = self.cfg["ema_p"]
        start_or_update(self.prediction_mean, gather_no_grad(probs.float()).mean(0), momentum)
        own = align_distribution(probs.float(), self.prediction_mean).max(1).values
        every = gather_no_grad(own)
        update_running(self.confidence_mean, every.mean(), momentum)
        update_running(self.confidence_variance, every.var() if len(every) > 1 else torch.zeros(()), momentum)
        return softmatch_weights(own, self.confidence_mean, self.confidence_variance, self.cfg["n_sigma"])

"""FreeMatch, Wang et al., ICLR 2023: FixMatch with self-adaptive thresholds and a fairness
term.  From the weak views' predictions, running means (momentum ``ema_p`` 0.999, from 1/C)
of the top confidence (the global threshold τ), of each class's probability p̃(c) and of the
histogram of predicted classes h̃; the class's threshold is τ·p̃(c)/max p̃, updated before
the step's mask as in USB.  The self-adaptive fairness term (``freematch_fairness``, weight
``lambda_f``: 0.001, USB's CIFAR-10 setting) uses the strong views of the images with a
pseudo-label.  The statistics are over the global batch.
"""
from __future__ import annotations

import torch

from ...distributed import gather_no_grad
from ...losses.semisup import class_counts, freematch_fairness, freematch_thresholds
from ..helpers import without
from .base import update_running
from .fixmatch import FixMatch


class FreeMatch(FixMatch):
    """FreeMatch (Wang et al. 2023): thresholds from running confidence, and fairness."""

    name = "freematch"
    defaults = {**without(FixMatch.defaults, "threshold"), "ema_p": 0.999, "lambda_f": 0.001}
    limits = {**without(FixMatch.limits, "threshold"), "ema_p": (0, 1), "lambda_f": (0, None)}

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        uniform = torch.full((run.num_classes,), 1 / run.num_classes)
        self.register_buffer("global_threshold", uniform.mean())
        self.register_buffer("class_mean", uniform.clone())
        self.register_buffer("class_histogram", uniform.clone())

    def class_thresholds(self):
        return freematch_thresholds(self.global_threshold, self.class_mean)

    def confidence_weights(self, probs, indices):
        every = gather_no_grad(probs.float())
        confidence, predicted = every.max(1)
        momentum = self.cfg["ema_p"]
        update_running(self.global_threshold, confidence.mean(), momentum)
        update_running(self.class_mean, every.mean(0), momentum)
        update_running(self.class_histogram, class_counts(predicted, every.shape[1]) / len(every), momentum)
        confidence, predicted = probs.max(1)
        return (confidence >= self.class_thresholds()[predicted]).float()

    def extra_terms(self, batch, weak_logits, strong_logits, weights, step):
        strong = strong_logits.float().softmax(1)
        return {"fairness": self.cfg["lambda_f"] * freematch_fairness(strong, self.class_mean, self.class_histogram,
                                                                      (weights > 0).float())}

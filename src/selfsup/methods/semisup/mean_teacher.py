"""Mean Teacher, Tarvainen & Valpola, NeurIPS 2017: the student's class probabilities on one
weak view of an unlabelled image are pulled (MSE, mean over classes and images) towards the
teacher's on another weak view, the teacher being the moving average of the student's
weights (the EMA network that also makes the predictions, ``ema``).  λu 50 with a linear
ramp over the first 40% of the steps (USB's settings; the paper ramps with a sigmoid);
μ 1 as in USB (an epoch is still one pass over the pool: seven times FixMatch's steps, each
with a seventh of its unlabelled images); no pseudo-labels, so no class balancing.  The teacher
sees its batch with BatchNorm's batch statistics, as in USB.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..helpers import without
from .base import SemiSupervised


class MeanTeacher(SemiSupervised):
    """Mean Teacher (Tarvainen & Valpola 2017): consistency with an EMA teacher."""

    name = "mean-teacher"
    hard_pseudo_labels = False
    defaults = {**without(SemiSupervised.defaults, "threshold"), "unlabelled_ratio": 1, "lambda_u": 50.0, "ramp": 0.4}
    limits = {**without(SemiSupervised.limits, "threshold"), "ramp": (0, 1)}
    unlabelled_views = ("weak", "weak")

    def unlabelled_loss(self, batch, step):
        unlabelled = batch["unlabeled"]
        with torch.no_grad():
            teacher = self.predict(unlabelled["views"][0]).float().softmax(1)
        self.count_pseudo_labels(teacher.argmax(1), unlabelled["label"])
        student = self.logits(unlabelled["views"][1]).float().softmax(1)
        return self.ramp(step) * F.mse_loss(student, teacher)

"""UDA, Xie et al., NeurIPS 2020: consistency between the weak view's prediction, sharpened
(softmax(z / T), T 0.4) and kept where its confidence reaches 0.8, and the strong
(RandAugment) view: cross-entropy to the soft target, which is the paper's KL up to a
constant.  Training-signal annealing (``tsa``: none, linear, exp or log; none by default as
in USB's CIFAR-10 setting) leaves a labelled image out of the supervised loss once its
correct-class probability passes the schedule's threshold (the mean stays over the whole
labelled batch, as in USB).  TSA tests the correct-class probability, as the paper and its
code (google-research/uda) do, where USB's tests the largest class probability.  USB's UDA
trains on the unsharpened softmax; we keep the paper's T.  λu 1 and the rest of FixMatch's
recipe.
"""
from __future__ import annotations

import torch.nn.functional as F

from ...losses.semisup import sharpen, tsa_threshold
from .fixmatch import FixMatch


class UDA(FixMatch):
    """UDA (Xie et al. 2020): sharpened soft targets from the weak view, confidence mask, TSA."""

    name = "uda"
    defaults = {**FixMatch.defaults, "threshold": 0.8, "temperature": 0.4, "tsa": "none"}
    limits = {**FixMatch.limits, "temperature": (1e-6, None)}
    choices = {**FixMatch.choices, "tsa": ("none", "linear", "exp", "log")}

    def supervised_loss(self, logits, labels, step):
        threshold = tsa_threshold(step / max(1, self.total_steps), self.cfg["tsa"], logits.shape[1])
        correct = logits.detach().softmax(1).gather(1, labels[:, None]).squeeze(1)
        return (F.cross_entropy(logits, labels, reduction="none") * (correct <= threshold)).mean()

    def consistency_targets(self, weak_logits, pseudo_labels):
        return sharpen(weak_logits.float().softmax(1), self.cfg["temperature"])

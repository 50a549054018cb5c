"""FlexMatch, Zhang et al., NeurIPS 2021: FixMatch with curriculum pseudo-labelling, a
threshold per class that rises with how well the class is learnt.  The learning effect σ(c)
counts the unlabelled images whose latest prediction with confidence ≥ τ (0.95) was c; β(c)
is σ(c) over the largest σ (with ``threshold_warmup``, over the larger of that and the
images not yet counted); the class's threshold is τ·M(β(c)) with the convex mapping
M(x) = x/(2−x) (``mapping``: convex, linear or concave).  The mask uses the thresholds from
before the step's update, as USB does; everything else is FixMatch's recipe.
"""
from __future__ import annotations

import torch

from ...distributed import gather_no_grad
from ...losses.semisup import MAPPINGS, class_counts, flexmatch_thresholds
from .fixmatch import FixMatch


class FlexMatch(FixMatch):
    """FlexMatch (Zhang et al. 2021): per-class thresholds from each class's learning effect."""

    name = "flexmatch"
    defaults = {**FixMatch.defaults, "mapping": "convex", "threshold_warmup": True}
    choices = {**FixMatch.choices, "mapping": tuple(MAPPINGS), "threshold_warmup": (True, False)}

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        # each pool image's latest confident predicted class; -1: none yet
        self.register_buffer("learnt_class", torch.full((run.train_size,), -1, dtype=torch.long))

    def class_thresholds(self):
        counted = self.learnt_class >= 0
        counts = class_counts(self.learnt_class, self.run.num_classes, counted)
        return flexmatch_thresholds(counts, (~counted).sum(), self.cfg["threshold"], self.cfg["mapping"],
                                    self.cfg["threshold_warmup"])

    def confidence_weights(self, probs, indices):
        confidence, predicted = probs.max(1)
        weights = (confidence >= self.class_thresholds()[predicted]).float()
        confidence, predicted = gather_no_grad(confidence), gather_no_grad(predicted)
        indices = gather_no_grad(indices.to(self.learnt_class.device))
        sure = confidence >= self.cfg["threshold"]  # the pool's indices are distinct within a step (one permutation)
        self.learnt_class[indices] = torch.where(sure, predicted, self.learnt_class[indices])
        return weights

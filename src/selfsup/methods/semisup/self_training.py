"""Self-training: train, label the pool, retrain (Scudder 1965; Yarowsky 1995; the survey's
iterative self-labelling): the run is cut into ``iterations`` rounds; at the start of each
round after the first, the EMA network labels every pool image, the confident ones become
fixed targets for the next round (training continues from the current weights, our choice).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ...errors import SelfSupError
from ...losses.semisup import class_counts
from .base import SemiSupervised

class PoolRelabelling:
    """Mixin for self-training: the run is cut into ``iterations`` rounds; at the start of each
    round after the first, the EMA network labels the pool, and the confident labels
    (class-balanced with ``balance`` data or hybrid: the n most confident of each class) are
    fixed targets (``assigned``) until the next round."""

    @classmethod
    def check_params(cls, params, run):
        super().check_params(params, run)
        if params["iterations"] > run.epochs:
            raise SelfSupError(f"--iterations {params['iterations']} needs at least as many epochs, got {run.epochs}")

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        self.register_buffer("assigned", torch.full((run.train_size,), -1, dtype=torch.long))  # -1: no pseudo-label

    def on_epoch_start(self, epoch, embed):
        stats = super().on_epoch_start(epoch, embed)
        round_length = self.run.epochs // self.cfg["iterations"]
        if epoch == 0 or epoch % round_length or epoch // round_length >= self.cfg["iterations"]:
            return stats
        scores, labels = embed(self.predict)
        confidence, targets = scores.softmax(1).max(1)
        confident = confidence >= self.cfg["threshold"]
        counts = class_counts(targets, self.run.num_classes, confident)
        if self.cfg["balance"] in ("data", "hybrid") and counts.sum() > 0:  # the n most confident of each class
            n = int(counts[counts > 0].min())
            chosen = torch.zeros_like(confident)
            for c in range(self.run.num_classes):
                members = torch.nonzero(confident & (targets == c)).flatten()
                chosen[members[confidence[members].argsort(descending=True)[:n]]] = True
            confident = chosen
        self.assigned.copy_(torch.where(confident, targets, torch.full_like(targets, -1)))
        labelled = self.assigned >= 0
        return {**(stats or {}), "round": epoch // round_length, "pool_labelled": float(labelled.float().mean()),
                "pool_top1": float((targets == labels.to(targets.device)).float().mean()),
                "pool_label_accuracy": float((self.assigned[labelled] == labels.to(self.assigned.device)[labelled])
                                             .float().mean()) if labelled.any() else 0.0,
                **{f"pool_class_{c}": float((self.assigned == c).sum()) for c in range(self.run.num_classes)}}

    def assigned_loss(self, logits: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of ``logits`` against the assigned labels of the pool images
        ``indices`` (loss-balanced with ``balance`` loss or hybrid), averaged over the batch: an
        image without a label adds 0, so the loss is 0 before the first round."""
        targets = self.assigned[indices.to(self.assigned.device)]
        has_target = targets >= 0
        _, weight = self.class_balance(class_counts(self.assigned, self.run.num_classes, self.assigned >= 0))
        weights = has_target.float() * weight[targets.clamp_min(0)]
        return (F.cross_entropy(logits, targets.clamp_min(0), reduction="none") * weights).mean()


class SelfTraining(PoolRelabelling, SemiSupervised):
    """Self-training: rounds of training, then labelling the pool with the confident predictions."""

    name = "self-training"
    defaults = {**SemiSupervised.defaults, "iterations": 3}
    limits = {**SemiSupervised.limits, "iterations": (1, None)}
    unlabelled_views = ("weak",)

    def unlabelled_loss(self, batch, step):
        unlabelled = batch["unlabeled"]
        return self.assigned_loss(self.logits(unlabelled["views"][0]), unlabelled["index"])

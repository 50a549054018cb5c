"""The base of the semi-supervised methods (see the package docstring) and supervised-only:
Js alone, the floor every other method is measured against.
"""
from __future__ import annotations

import math
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ...data.augment import AugmentConfig, ShiftConfig
from ...data.samplers import LabelledUnlabelledBatchSampler
from ...data.views import ViewSpec
from ...errors import SelfSupError
from ...losses.semisup import class_counts
from ..base import Method
from ..helpers import ema_update, frozen_copy
from ... import rng


WEAK = AugmentConfig(crop_scale=(0.6, 1.0), jitter_p=0.0, grayscale_p=0.0, blur_p=0.0, solarize_p=0.0)


def weak_augment(translate: float) -> AugmentConfig | ShiftConfig:
    """The weak view: flip and a shift of up to ``translate`` of the side (the papers'), or with
    ``translate`` 0 flip and a random crop of 60-100% of the image (our stand-in, the default)."""
    return ShiftConfig(translate=translate) if translate else WEAK


def ema_note(ema: float, steps: int) -> str | None:
    """A note when the EMA evaluation network would still hold over 1% of its random initial
    weights after ``steps`` updates at rate ``ema`` (FixMatch's 0.999 needs thousands of steps)."""
    left = ema ** steps
    if left <= 0.01:
        return None
    return (f"note: with params.ema={ema} over {steps} steps the EMA network that makes the predictions keeps "
            f"{left:.0%} of its random initial weights; a rate of {1 - 5 / steps:.4f} or lower keeps under 1% "
            "(--set params.ema=...)")


def update_running(statistic: torch.Tensor, value: torch.Tensor, momentum: float) -> None:
    """``statistic`` ← momentum · statistic + (1 − momentum) · value, in place (a running mean)."""
    statistic.mul_(momentum).add_(value.to(statistic.dtype), alpha=1 - momentum)


def start_or_update(statistic: torch.Tensor, value: torch.Tensor, momentum: float) -> None:
    """``update_running``, but a ``statistic`` still all 0 (nothing seen yet) becomes ``value``
    (a running mean of predictions that starts at the first batch's, as USB's alignment)."""
    if statistic.any():
        update_running(statistic, value, momentum)
    else:
        statistic.copy_(value)


# the params of the methods with strong views: how many RandAugment operations
STRONG_VIEW = ({"strong_ops": 2}, {"strong_ops": (1, 14)})


def labelled_indices(labels: np.ndarray, per_class: int, seed: int) -> torch.Tensor:
    """``per_class`` indices of each class, drawn with ``seed`` (the same on every call)."""
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in np.unique(labels)]
    return torch.from_numpy(np.sort(np.concatenate(chosen)))


class _SplitParts(Dataset):
    """Serves a batch of indices as {"labeled": the first ``labelled_batch``, "unlabeled": the rest}."""

    def __init__(self, dataset, labelled_batch: int):
        self.dataset, self.labelled_batch = dataset, labelled_batch
        self.decodes_files = getattr(dataset, "decodes_files", False)

    def __len__(self):
        return len(self.dataset)

    def __getitems__(self, indices):
        k = self.labelled_batch
        return {"labeled": self.dataset.__getitems__(indices[:k]), "unlabeled": self.dataset.__getitems__(indices[k:])}


class SemiSupervised(Method):
    """Base of the semi-supervised methods: labelled subset, mixed batches, classifier, EMA model."""

    supervised = True
    semi_supervised = True
    defaults = {"labels_per_class": 4, "label_seed": 0, "unlabelled_ratio": 7, "lambda_u": 1.0, "threshold": 0.95,
                "ema": 0.999, "balance": "none", "translate": 0.0}
    limits = {"labels_per_class": (1, None), "label_seed": (0, None), "unlabelled_ratio": (1, None),
              "lambda_u": (0, None), "threshold": (1e-6, 1.0), "ema": (0, 1), "translate": (0, 0.5)}
    choices = {"balance": ("none", "data", "loss", "hybrid")}
    #: views of each unlabelled image, in order: "weak" (``weak_augment``) or "strong" (the weak
    #: view, then ``strong_ops`` RandAugment operations and Cutout: FixMatch's strong view; a
    #: method with strong views adds ``STRONG_VIEW`` to its params)
    unlabelled_views: tuple[str, ...] = ()
    #: whether the unlabelled term trains on confident hard pseudo-labels (``pseudo_labels``),
    #: which class balancing re-weighs; methods with soft targets refuse ``balance``
    hard_pseudo_labels = True

    @classmethod
    def check_params(cls, params, run):
        super().check_params(params, run)
        if run.num_classes < 2:
            raise SelfSupError(f"{cls.name} needs a labelled dataset to draw its labelled images from")
        if params["balance"] != "none" and not cls.hard_pseudo_labels:
            raise SelfSupError(f"{cls.name} trains on soft targets, not hard pseudo-labels, so class balancing "
                               f"(--balance {params['balance']}) has nothing to re-weigh; leave it at none")
        if run.smallest_class and params["labels_per_class"] > run.smallest_class:
            raise SelfSupError(f"--labels-per-class {params['labels_per_class']} is more than the "
                               f"{run.smallest_class} images of the smallest class")

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        self.classifier = nn.Linear(self.feature_dim, run.num_classes)
        self.ema_backbone, self.ema_classifier = frozen_copy(self.backbone), frozen_copy(self.classifier)
        weak = weak_augment(cfg["translate"])
        self.views = [ViewSpec(weak)]
        self.unlabelled_specs = [ViewSpec(weak, rand_augment=cfg["strong_ops"] if kind == "strong" else 0)
                                 for kind in self.unlabelled_views]
        self.register_buffer("labelled", torch.zeros(cfg["labels_per_class"] * run.num_classes, dtype=torch.long))
        # confident predictions per class (before balancing) this epoch and the last: balancing's input
        self.register_buffer("confident_counts", torch.zeros(run.num_classes))
        self.register_buffer("previous_counts", torch.zeros(run.num_classes))
        # pseudo-labels used this epoch (after balancing): per class, and how many were right
        self.register_buffer("pseudo_counts", torch.zeros(run.num_classes))
        self.register_buffer("pseudo_correct", torch.zeros(()))
        self.register_buffer("pseudo_seen", torch.zeros(()))
        self.total_steps = 0  # optimiser steps of the run, set with the loader (every run and resume builds it first)

    def train_batches(self, dataset, batch_size, seed):
        self.labelled.copy_(labelled_indices(dataset.labels.numpy(), self.cfg["labels_per_class"],
                                             self.cfg["label_seed"]))
        sampler = LabelledUnlabelledBatchSampler(self.labelled.cpu(), len(dataset), batch_size,
                                                 self.cfg["unlabelled_ratio"], seed)
        # optimiser steps, as the ``step`` the schedules get counts them (Lightning steps on an epoch's last,
        # partly accumulated batches too)
        self.total_steps = self.run.epochs * math.ceil(len(sampler) / self.run.accumulate_grad_batches)
        note = ema_note(self.cfg["ema"], self.total_steps)
        if note:
            print(note, file=sys.stderr)
        return _SplitParts(dataset, batch_size), sampler

    def batch_size(self, batch):
        return batch["labeled"]["index"].shape[0] + batch["unlabeled"]["index"].shape[0]

    def prepare_batch(self, batch, make_views):
        batch["labeled"]["views"] = make_views(batch["labeled"]["image"], self.views)
        batch["unlabeled"]["views"] = make_views(batch["unlabeled"]["image"], self.unlabelled_specs) \
            if self.unlabelled_specs else []
        return batch

    def logits(self, x):
        return self.classifier(self.backbone(x))

    def predict(self, x):
        """Class scores of the EMA network (the evaluation model)."""
        return self.ema_classifier(self.ema_backbone(x))

    def on_step_end(self, step, total_steps):
        ema_update(self.ema_backbone, self.backbone, self.cfg["ema"])
        ema_update(self.ema_classifier, self.classifier, self.cfg["ema"])
        for target, online in zip(self.ema_backbone.buffers(), self.backbone.buffers()):
            target.copy_(online)  # BatchNorm statistics follow the online network

    def class_balance(self, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(keep probability, loss weight) per class from confident-prediction ``counts``."""
        ones = torch.ones_like(counts)
        if self.cfg["balance"] == "none":
            return ones, ones
        found = counts > 0
        rarest = torch.where(found, counts, counts.max()).min()
        seen = counts.clamp_min(rarest).clamp_min(1e-12)  # a class without confident predictions counts as the rarest one
        keep = rarest / seen if self.cfg["balance"] in ("data", "hybrid") else ones
        weight = ones
        if self.cfg["balance"] in ("loss", "hybrid"):
            weight = counts.mean() / seen
            weight = weight / weight.mean()
        none_yet = ~found.any()  # no confident prediction yet: no balancing (a tensor, so no device sync)
        return torch.where(none_yet, ones, keep), torch.where(none_yet, ones, weight)

    def ramp(self, step: int) -> float:
        """λu's ramp-up factor: linear from 0 to 1 over the first ``ramp`` fraction of the steps
        (1 throughout without a ``ramp`` param or with ramp 0)."""
        ramp = self.cfg.get("ramp", 0)
        return min(1.0, step / max(1.0, ramp * self.total_steps)) if ramp else 1.0

    def confidence_weights(self, probs: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """Each prediction's weight in the unlabelled term before class balancing, from the
        class probabilities ``probs`` of the unlabelled images ``indices``: here 1 when
        the top one reaches ``threshold``, else 0 (FixMatch).  Called once a training step, so
        methods with running statistics update them here."""
        return (probs.max(1).values >= self.cfg["threshold"]).float()

    def class_thresholds(self) -> torch.Tensor | None:
        """The confidence each class needs now, for methods whose thresholds move (reported at
        each epoch's start as ``threshold_class_C``); None: a fixed threshold."""
        return None

    def pseudo_labels(self, logits: torch.Tensor, true_labels: torch.Tensor,
                      indices: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(targets, per-image weights: 0 for images without a pseudo-label) from ``logits`` of
        the unlabelled images ``indices``: the predicted classes, weighted by
        ``confidence_weights`` and class-balanced; counted for the epoch's report."""
        probs = logits.detach().softmax(1)
        targets = probs.max(1).indices
        weights = self.confidence_weights(probs, indices)
        confident = weights > 0
        self.confident_counts += class_counts(targets, self.confident_counts.numel(), confident)
        keep, weight = self.class_balance(self.previous_counts)
        confident &= rng.rand(targets.shape, self.generator, device=targets.device) < keep[targets]
        self.count_pseudo_labels(targets, true_labels, confident)
        return targets, weights * confident * weight[targets]

    def count_pseudo_labels(self, targets: torch.Tensor, true_labels: torch.Tensor,
                            kept: torch.Tensor | None = None) -> None:
        """Counts the pseudo-labels ``targets`` of one step for the epoch's report: those
        ``kept`` (all when None) by class and against the ``true_labels``, all as seen."""
        kept = torch.ones_like(targets, dtype=torch.bool) if kept is None else kept
        self.pseudo_counts += class_counts(targets, self.pseudo_counts.numel(), kept)
        self.pseudo_correct += ((targets == true_labels) & kept).sum()
        self.pseudo_seen += targets.numel()

    def on_epoch_start(self, epoch, embed):
        self.previous_counts.copy_(self.confident_counts)
        self.confident_counts.zero_()
        thresholds = self.class_thresholds()
        thresholds = {} if thresholds is None else {f"threshold_class_{c}": float(t) for c, t in enumerate(thresholds)}
        if self.pseudo_seen == 0:
            return thresholds or None
        used = self.pseudo_counts.sum()
        stats = {"pseudo_label_rate": float(used / self.pseudo_seen),
                 "pseudo_label_accuracy": float(self.pseudo_correct / used.clamp_min(1)),
                 **{f"pseudo_labels_class_{c}": float(n) for c, n in enumerate(self.pseudo_counts)}}
        self.pseudo_counts.zero_(), self.pseudo_correct.zero_(), self.pseudo_seen.zero_()
        return {**stats, **thresholds}

    def unlabelled_loss(self, batch, step) -> torch.Tensor | None:
        return None

    def training_step(self, batch, step):
        labelled = batch["labeled"]
        supervised = F.cross_entropy(self.logits(labelled["views"][0]), labelled["label"])
        unlabelled = self.unlabelled_loss(batch, step)
        if unlabelled is None:
            return {"loss": supervised, "supervised": supervised.detach()}
        return {"loss": supervised + self.cfg["lambda_u"] * unlabelled, "supervised": supervised.detach(),
                "unlabelled": unlabelled.detach()}


class SupervisedOnly(SemiSupervised):
    """Supervised-only: the labelled images alone, with the same network and steps."""

    name = "supervised-only"

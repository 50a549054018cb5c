"""Semi-supervised learning from a few labels per class (the survey: J = λs·Js + λu·Ju).

The labelled set is ``labels_per_class`` images of every class, drawn from the training split
with ``label_seed``; the unlabelled pool is the whole split, its labels used only to report
how accurate the pseudo-labels are.  Each step sees ``batch_size`` labelled images and
``unlabelled_ratio`` (μ) times as many unlabelled ones; an epoch is one pass over the pool,
so every method here gets the same steps.  Predictions (``predict``, the ``test_top1`` of
metrics.json) come from an exponential moving average of the classifier network (FixMatch's
evaluation model, rate ``ema``).

* ``supervised-only``: Js alone, the floor every other method is measured against.
* ``pseudo-label``: Lee, ICML-W 2013: the class the network predicts for an unlabelled image is
  its target when the prediction's confidence reaches ``threshold``; λu ramps linearly from 0
  over the first ``ramp`` fraction of the steps (Lee ramps α from 0 to 3 over epochs 100-600;
  we keep λu at 1 and a threshold, as the issue and later papers do).
* ``self-training``: train, label the pool, retrain (Scudder 1965; Yarowsky 1995; the survey's
  iterative self-labelling): the run is cut into ``iterations`` rounds; at the start of each
  round after the first, the EMA network labels every pool image, the confident ones become
  fixed targets for the next round (training continues from the current weights, our choice).
* ``frost``: Liu & Smith, "FROST: Faster and more Robust One-shot Semi-supervised Training"
  (2020): FixMatch plus ``lambda_ss`` times a registered
  self-supervised method's loss on the unlabelled images (``self_supervised``, SimCLR by
  default, sharing the backbone and hosted with its own hooks as multitask's tasks are; its
  params are its packaged defaults) plus self-training rounds with
  class balancing (``balance: data`` by default); ``--init`` starts it from a pretrained
  checkpoint.
* ``fixmatch``: Sohn et al., NeurIPS 2020: the weak view's prediction, when confident
  (≥ 0.95), is the target of the strong view (RandAugment with random magnitudes, then
  Cutout); λu 1, μ 7, SGD lr 0.03 Nesterov, weight decay 5e-4, EMA 0.999; the learning rate
  follows a cosine to 0 (ours: the paper's cos(7πk/16K) ends near 0.2·lr).  Labelled,
  weak and strong images go through the network in one batch, as in the paper (BatchNorm
  sees all of them).  Weak view: flip and a random crop of 60-100% of the image (our
  stand-in for the paper's flip and ±12.5% translation).

Class balancing (``balance``, after BOSS, Smith & Conovaloff 2020, and FROST): the confident
predictions of the previous epoch counted per class (n_c) drive ``data``-level resampling
(a pseudo-label of class c is kept with probability min n / n_c; self-training keeps the
min n most confident of each class), ``loss``-level weights (mean n / n_c, normalised to
mean 1 over the classes), or both (``hybrid``); min n is over the classes with a count, and a
class without one is treated as that rarest class.

The pseudo-label figures (rate, accuracy, per-class counts) are counted over an epoch and
reported by the next epoch's start, so the ``epoch_history`` entry of epoch e describes epoch
e − 1 and the last epoch's figures are not reported.
"""
from __future__ import annotations

import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ..data.augment import AugmentConfig
from ..data.samplers import LabelledUnlabelledBatchSampler
from ..data.views import ViewSpec
from ..errors import SelfSupError
from .base import Method
from .helpers import ema_update, frozen_copy
from .multitask import HostsMethods
from .. import rng

WEAK = AugmentConfig(crop_scale=(0.6, 1.0), jitter_p=0.0, grayscale_p=0.0, blur_p=0.0, solarize_p=0.0)


def ema_note(ema: float, steps: int) -> str | None:
    """A note when the EMA evaluation network would still hold over 1% of its random initial
    weights after ``steps`` updates at rate ``ema`` (FixMatch's 0.999 needs thousands of steps)."""
    left = ema ** steps
    if left <= 0.01:
        return None
    return (f"note: with params.ema={ema} over {steps} steps the EMA network that makes the predictions keeps "
            f"{left:.0%} of its random initial weights; a rate of {1 - 5 / steps:.4f} or lower keeps under 1% "
            "(--set params.ema=...)")


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
                "ema": 0.999, "balance": "none"}
    limits = {"labels_per_class": (1, None), "label_seed": (0, None), "unlabelled_ratio": (1, None),
              "lambda_u": (0, None), "threshold": (1e-6, 1.0), "ema": (0, 1)}
    choices = {"balance": ("none", "data", "loss", "hybrid")}
    #: views of the unlabelled images: none, weak only, or weak and strong
    unlabelled_views: list[ViewSpec] = []

    @classmethod
    def check_params(cls, params, run):
        super().check_params(params, run)
        if run.num_classes < 2:
            raise SelfSupError(f"{cls.name} needs a labelled dataset to draw its labelled images from")
        if run.smallest_class and params["labels_per_class"] > run.smallest_class:
            raise SelfSupError(f"--labels-per-class {params['labels_per_class']} is more than the "
                               f"{run.smallest_class} images of the smallest class")

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        self.classifier = nn.Linear(self.feature_dim, run.num_classes)
        self.ema_backbone, self.ema_classifier = frozen_copy(self.backbone), frozen_copy(self.classifier)
        self.views = [ViewSpec(WEAK)]
        self.register_buffer("labelled", torch.zeros(cfg["labels_per_class"] * run.num_classes, dtype=torch.long))
        # confident predictions per class (before balancing) this epoch and the last: balancing's input
        self.register_buffer("confident_counts", torch.zeros(run.num_classes))
        self.register_buffer("previous_counts", torch.zeros(run.num_classes))
        # pseudo-labels used this epoch (after balancing): per class, and how many were right
        self.register_buffer("pseudo_counts", torch.zeros(run.num_classes))
        self.register_buffer("pseudo_correct", torch.zeros(()))
        self.register_buffer("pseudo_seen", torch.zeros(()))
        self.total_steps = 0  # set with the loader (every run and resume builds it before the first step)

    def train_batches(self, dataset, batch_size, seed):
        self.labelled.copy_(labelled_indices(dataset.labels.numpy(), self.cfg["labels_per_class"],
                                             self.cfg["label_seed"]))
        sampler = LabelledUnlabelledBatchSampler(self.labelled.cpu(), len(dataset), batch_size,
                                                 self.cfg["unlabelled_ratio"], seed)
        self.total_steps = self.run.epochs * len(sampler)
        note = ema_note(self.cfg["ema"], self.total_steps)
        if note:
            print(note, file=sys.stderr)
        return _SplitParts(dataset, batch_size), sampler

    def batch_size(self, batch):
        return batch["labeled"]["index"].shape[0] + batch["unlabeled"]["index"].shape[0]

    def prepare_batch(self, batch, make_views):
        batch["labeled"]["views"] = make_views(batch["labeled"]["image"], self.views)
        batch["unlabeled"]["views"] = make_views(batch["unlabeled"]["image"], self.unlabelled_views) \
            if self.unlabelled_views else []
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
        if counts.sum() == 0 or self.cfg["balance"] == "none":
            return ones, ones
        rarest = counts[counts > 0].min()
        seen = counts.clamp_min(rarest)  # a class without confident predictions counts as the rarest one
        keep = rarest / seen if self.cfg["balance"] in ("data", "hybrid") else ones
        weight = ones
        if self.cfg["balance"] in ("loss", "hybrid"):
            weight = counts.mean() / seen
            weight = weight / weight.mean()
        return keep, weight

    def pseudo_labels(self, logits: torch.Tensor, true_labels: torch.Tensor):
        """(targets, per-image weights: 0 for images without a pseudo-label) from ``logits``:
        the confident predictions, class-balanced; counted for the epoch's report."""
        probs = logits.detach().softmax(1)
        confidence, targets = probs.max(1)
        mask = confidence >= self.cfg["threshold"]
        self.confident_counts += torch.bincount(targets[mask], minlength=self.confident_counts.numel()).float()
        keep, weight = self.class_balance(self.previous_counts)
        mask &= rng.rand(targets.shape, self.generator, device=targets.device) < keep[targets]
        self.count_pseudo_labels(targets[mask], true_labels[mask], targets.numel())
        return targets, mask.float() * weight[targets]

    def count_pseudo_labels(self, targets: torch.Tensor, true_labels: torch.Tensor, seen: int) -> None:
        self.pseudo_counts += torch.bincount(targets, minlength=self.pseudo_counts.numel()).float()
        self.pseudo_correct += (targets == true_labels).sum()
        self.pseudo_seen += seen

    def on_epoch_start(self, epoch, embed):
        self.previous_counts.copy_(self.confident_counts)
        self.confident_counts.zero_()
        if self.pseudo_seen == 0:
            return None
        used = self.pseudo_counts.sum()
        stats = {"pseudo_label_rate": float(used / self.pseudo_seen),
                 "pseudo_label_accuracy": float(self.pseudo_correct / used.clamp_min(1)),
                 **{f"pseudo_labels_class_{c}": float(n) for c, n in enumerate(self.pseudo_counts)}}
        self.pseudo_counts.zero_(), self.pseudo_correct.zero_(), self.pseudo_seen.zero_()
        return stats

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


class PseudoLabel(SemiSupervised):
    """Pseudo-Label (Lee 2013): confident predictions on unlabelled images as their targets."""

    name = "pseudo-label"
    defaults = {**SemiSupervised.defaults, "ramp": 0.4}
    limits = {**SemiSupervised.limits, "ramp": (0, 1)}
    unlabelled_views = [ViewSpec(WEAK)]

    def unlabelled_loss(self, batch, step):
        unlabelled = batch["unlabeled"]
        logits = self.logits(unlabelled["views"][0])
        targets, weights = self.pseudo_labels(logits, unlabelled["label"])
        ramp = min(1.0, step / max(1.0, self.cfg["ramp"] * self.total_steps)) if self.cfg["ramp"] else 1.0
        return ramp * (F.cross_entropy(logits, targets, reduction="none") * weights).mean()


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
        counts = torch.bincount(targets[confident], minlength=self.run.num_classes).float()
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

    def assigned_loss(self, logits: torch.Tensor, indices: torch.Tensor) -> torch.Tensor | None:
        """Cross-entropy of ``logits`` against the assigned labels of the pool images
        ``indices`` (loss-balanced with ``balance`` loss or hybrid); None before the first round."""
        targets = self.assigned[indices.to(self.assigned.device)]
        has_target = targets >= 0
        if not has_target.any():
            return None
        counts = torch.bincount(self.assigned[self.assigned >= 0], minlength=self.run.num_classes).float()
        _, weight = self.class_balance(counts)
        weights = has_target.float() * weight[targets.clamp_min(0)]
        return (F.cross_entropy(logits, targets.clamp_min(0), reduction="none") * weights).mean()


class SelfTraining(PoolRelabelling, SemiSupervised):
    """Self-training: rounds of training, then labelling the pool with the confident predictions."""

    name = "self-training"
    defaults = {**SemiSupervised.defaults, "iterations": 3}
    limits = {**SemiSupervised.limits, "iterations": (1, None)}
    unlabelled_views = [ViewSpec(WEAK)]

    def unlabelled_loss(self, batch, step):
        unlabelled = batch["unlabeled"]
        return self.assigned_loss(self.logits(unlabelled["views"][0]), unlabelled["index"])


class FixMatch(SemiSupervised):
    """FixMatch (Sohn et al. 2020): the weak view's confident prediction is the strong view's target."""

    name = "fixmatch"
    revision = 2  # 2: RandAugment's Equalize is histogram equalisation (2026-11-30; 1: it ranked equal pixels apart)
    unlabelled_views = [ViewSpec(WEAK), ViewSpec(WEAK, rand_augment=2)]

    def extra_terms(self, batch, weak_logits: torch.Tensor, step: int) -> dict:
        """Further loss terms (name -> weighted tensor), for methods built on FixMatch."""
        return {}

    def training_step(self, batch, step):
        labelled, unlabelled = batch["labeled"], batch["unlabeled"]
        n, m = labelled["views"][0].shape[0], unlabelled["views"][0].shape[0]
        logits = self.logits(torch.cat([labelled["views"][0], *unlabelled["views"][:2]]))
        supervised = F.cross_entropy(logits[:n], labelled["label"])
        weak, strong = logits[n:n + m], logits[n + m:]
        targets, weights = self.pseudo_labels(weak, unlabelled["label"])
        consistency = (F.cross_entropy(strong, targets, reduction="none") * weights).mean()
        extra = self.extra_terms(batch, weak, step)
        loss = supervised + self.cfg["lambda_u"] * consistency + sum(extra.values())
        return {"loss": loss, "supervised": supervised.detach(), "unlabelled": consistency.detach(),
                "mask_rate": (weights > 0).float().mean(), **{k: v.detach() for k, v in extra.items()}}


class Frost(HostsMethods, PoolRelabelling, FixMatch):
    """FROST (Liu & Smith 2020): FixMatch + a self-supervised term + class-balanced self-training."""

    name = "frost"
    revision = 2  # 2: FixMatch's Equalize fix and its hosted method's step and epoch hooks (both 2026-11-30)
    defaults = {**FixMatch.defaults, "iterations": 3, "balance": "data", "self_supervised": "simclr",
                "lambda_ss": 1.0, "task_params": {}}
    limits = {**FixMatch.limits, "iterations": (1, None), "lambda_ss": (0, None)}

    @classmethod
    def check_params(cls, params, run):
        super().check_params(params, run)
        from . import METHODS

        name = params["self_supervised"]
        if name not in METHODS or METHODS[name].semi_supervised or METHODS[name].supervised:
            raise SelfSupError(f"params.self_supervised must name a self-supervised method, not {name!r}")
        cls.check_hosted(name, params, run)

    @classmethod
    def hosted_methods(cls, params):
        from . import METHODS

        return [params["self_supervised"]] if params.get("self_supervised") in METHODS else []

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        from . import method_class

        name = cfg["self_supervised"]
        self.self_supervised = method_class(name)(self.backbone, self.hosted_params(name, cfg), run)
        self.generator = self.generator  # hand the generator to the self-supervised method

    def hosted(self):
        return {"self_supervised": self.self_supervised} if "self_supervised" in self._modules else {}

    def prepare_batch(self, batch, make_views):
        batch = super().prepare_batch(batch, make_views)
        unlabelled = batch["unlabeled"]
        batch["self_supervised"] = self.self_supervised.prepare_batch(
            {k: unlabelled[k] for k in ("image", "index", "label")}, make_views)
        return batch

    def extra_terms(self, batch, weak_logits, step):
        terms = {"self_supervised": self.cfg["lambda_ss"]
                 * self.self_supervised.training_step(batch["self_supervised"], step)["loss"]}
        self_training = self.assigned_loss(weak_logits, batch["unlabeled"]["index"])
        if self_training is not None:
            terms["self_training"] = self_training
        return terms

"""Methods that learn from the class labels, marked ``supervised`` in every benchmark table:
the supervised baseline (DESIGN's third baseline: the same backbone, cross-entropy on the
labels, one augmented view per image), Supervised Contrastive learning and the FaceNet
triplet loss.  All read ``batch["label"]``.

Supervised: a linear classifier on the backbone's features, cross-entropy (label smoothing an
option, off), SGD lr 0.1·batch/256, momentum 0.9, weight decay 5e-4, cosine — the usual
ResNet recipe — and SimCLR's view pipeline without colour changes.

SupCon: Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020.  Two SimCLR views per
image, a 2-layer MLP head to 128-d, ``supcon`` (L_out) with τ 0.1 and base τ 0.07 over the
global batch.  Optimiser from the authors' CIFAR recipe: SGD lr 0.05·batch/256, momentum 0.9,
weight decay 1e-4, cosine; a head without BatchNorm (Linear-ReLU-Linear, ``head_batch_norm``).
Our choices: SimCLR's views, crops of 8-100%
with blur (their CIFAR script: 20-100%, no blur); an anchor without a positive (one view, no
other image of its class in the batch) is left out of the mean.

Triplet: Schroff, Kalenichenko, Philbin, "FaceNet", CVPR 2015.  One augmented view per image,
a 2-layer MLP head to L2-normalised 128-d embeddings, ``triplet`` with margin 0.2 and online
semi-hard mining (``hard`` and ``all`` as options) in P×K batches (P classes × K images,
``ClassBatchSampler``).  FaceNet used AdaGrad on faces; our choice is SupCon's SGD recipe (without its decay of biases
and norms) and
P = 8 classes per batch when the batch divides by 8 (K = batch / P), which keeps several
negative classes per anchor on 10-class data.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..data.augment import SIMCLR_VIEWS, AugmentConfig, crops_only
from ..data.samplers import ClassBatchSampler
from ..data.views import ViewSpec
from ..errors import SelfSupError
from ..losses import supcon, triplet
from ..losses.supervised import TRIPLET_MINING
from ..models.heads import mlp
from .base import Method
from .helpers import classification


class LabelledMethod(Method):
    """A method that needs class labels: refuses unlabelled data; one view per image unless
    ``views`` says otherwise."""

    supervised = True

    @classmethod
    def check_params(cls, params, run):
        super().check_params(params, run)
        if run.num_classes < 2:
            raise SelfSupError(f"{cls.name} is supervised and needs a labelled dataset; this one has no classes")

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        self.views = [ViewSpec(AugmentConfig(**cfg["augment"]), count=cfg.get("views", 1))]


class Supervised(LabelledMethod):
    """Supervised baseline: the backbone and a linear classifier trained with cross-entropy."""

    name = "supervised"
    defaults = {"label_smoothing": 0.0, "augment": crops_only(0.08)}
    limits = {"label_smoothing": (0, 1)}

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        self.classifier = nn.Linear(self.feature_dim, run.num_classes)

    def predict(self, x):
        return self.classifier(self.backbone(x))

    def training_step(self, batch, step):
        (view,) = batch["views"]
        logits = self.predict(view)
        return classification(logits, batch["label"], label_smoothing=self.cfg["label_smoothing"])


class EmbeddingMethod(LabelledMethod):
    """A labelled method with a 2-layer MLP head to an embedding (BatchNorm after its hidden
    layer where ``head_batch_norm``)."""

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        self.projector = mlp(self.feature_dim, cfg["proj_hidden_dim"] or self.feature_dim, cfg["proj_dim"],
                             batch_norm=cfg["head_batch_norm"])


class SupCon(EmbeddingMethod):
    """SupCon (Khosla et al. 2020): contrastive loss whose positives are all views of the class."""

    name = "supcon"
    # 2: weight decay on every parameter, as the reference code (1: weights only); 3: a head without
    # BatchNorm, as the reference code (1-2: with it)
    revision = 3
    defaults = {"temperature": 0.1, "base_temperature": 0.07, "views": 2, "proj_hidden_dim": None,
                "proj_dim": 128, "head_batch_norm": False, "augment": SIMCLR_VIEWS}
    earlier_runs = {"head_batch_norm": True}
    choices = {"head_batch_norm": (True, False)}
    limits = {"temperature": (1e-4, None), "base_temperature": (1e-4, None), "views": (1, None),
              "proj_hidden_dim": (1, None), "proj_dim": (1, None)}

    def training_step(self, batch, step):
        z = self.projector(self.backbone(torch.cat(batch["views"])))
        features = torch.stack(z.chunk(len(batch["views"])), dim=1)  # [N, V, D]
        return {"loss": supcon(features, batch["label"], self.cfg["temperature"], self.cfg["base_temperature"],
                               gather=True)}


class Triplet(EmbeddingMethod):
    """Triplet loss (Schroff et al. 2015) with online mining in P×K class batches."""

    name = "triplet"
    defaults = {"margin": 0.2, "mining": "semi-hard", "classes_per_batch": None, "proj_hidden_dim": None,
                "proj_dim": 128, "head_batch_norm": True, "augment": SIMCLR_VIEWS}
    limits = {"margin": (0, None), "classes_per_batch": (2, None), "proj_hidden_dim": (1, None), "proj_dim": (1, None)}
    choices = {"mining": TRIPLET_MINING, "head_batch_norm": (True, False)}

    @staticmethod
    def classes_per_batch(params, run) -> int:
        """P: the option, or the largest divisor of the batch size up to min(8, classes)."""
        if params["classes_per_batch"]:
            return params["classes_per_batch"]
        divisors = [p for p in range(2, min(8, run.num_classes) + 1) if run.batch_size % p == 0]
        return divisors[-1] if divisors else min(8, run.num_classes)

    @classmethod
    def check_params(cls, params, run):
        super().check_params(params, run)
        p = cls.classes_per_batch(params, run)
        if p > run.num_classes:
            raise SelfSupError(f"params.classes_per_batch={p} is more classes than the dataset's {run.num_classes}")
        if run.smallest_class and run.batch_size // p > run.smallest_class:
            raise SelfSupError(f"P x K batches need K = {run.batch_size // p} images of each class, but the smallest "
                               f"class has {run.smallest_class}; lower --batch-size or raise params.classes_per_batch")
        if run.batch_size % p or run.batch_size // p < 2:
            raise SelfSupError(f"the batch size {run.batch_size} must be a multiple of params.classes_per_batch={p} "
                               "with at least 2 images per class (P x K batches); change --batch-size or set "
                               "params.classes_per_batch")

    def train_batches(self, dataset, batch_size, seed):
        p = self.classes_per_batch(self.cfg, self.run)
        return dataset, ClassBatchSampler(dataset.labels, p, batch_size // p, seed)

    def training_step(self, batch, step):
        (view,) = batch["views"]
        embeddings = F.normalize(self.projector(self.backbone(view)), dim=1)
        return {"loss": triplet(embeddings, batch["label"], self.cfg["margin"], self.cfg["mining"])}

"""MoCo: He et al., "Momentum Contrast for Unsupervised Visual Representation Learning",
CVPR 2020 (v1), and Chen et al., "Improved Baselines with Momentum Contrastive Learning",
2020 (v2: MLP head, τ 0.2, blur, crop scale 0.2).

The query encoder learns by ``info_nce`` against the key of the same image, computed by a
momentum copy of the encoder (m = 0.999), and against a queue of earlier keys (65536 in
the papers).  The queue remembers each key's image index and a query never takes an earlier
key of its own image as a negative: on ImageNet the queue holds about 5% of the images and
this never happens; on a dataset smaller than the queue it would happen at every step (our
choice, which keeps the paper's property at any dataset size).
Keys are computed on a shuffled batch so that BatchNorm cannot leak which key belongs to
which query: across ranks the global batch is shuffled (shuffle BN); on one device the
``split`` BatchNorm policy (the config's default) gives each of ``bn_splits`` groups its
own statistics, and the shuffle moves images between groups (the paper's CIFAR demo).
The queue holds the keys of every rank, gathered and written on every rank.
Our options: ``symmetric`` also makes the second view a query of the first view's key and
averages both losses (MoCo v3 symmetrises so too, but sums them; off by default, as in v1/v2), and ``head_batch_norm`` puts BatchNorm after the head's hidden layer (as SimCLR's and
MoCo v3's heads do; off by default, as in MoCo v2).  From a random start on small images the
BN-free head maps every image to nearly one direction and MoCo needs many epochs to leave it
(benchmarks/tuning-fmnist-quick.md).
``negatives`` selects the dictionary, for the MoCo paper's comparison of mechanisms (Fig. 3):
``queue`` (MoCo: momentum keys, FIFO of ``queue_size``), ``batch`` (end-to-end: keys from the
query encoder with gradient, computed in their own shuffled pass like the momentum keys, the
dictionary is the global batch, ``batch_info_nce``) or
``bank`` (memory bank of Wu et al.: one entry per image, updated with ``bank_momentum`` 0.5;
the positive is the image's own entry and ``queue_size`` entries drawn uniformly by the
method's generator, other than the image's own, are the negatives).  Only ``queue`` builds the key encoder.
Optimiser (SGD lr 0.03·batch/256, momentum 0.9, weight decay 1e-4, cosine) from the papers.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.augment import INSTDISC_VIEWS, MOCO_V2_VIEWS, AugmentConfig
from ..data.views import ViewSpec
from ..errors import SelfSupError
from ..losses import batch_info_nce, info_nce
from ..models.heads import mlp
from .base import Method
from .helpers import FeatureQueue, MemoryBank, ema_update, frozen_copy, shuffle_across_ranks, unshuffle_across_ranks

NEGATIVES = ("queue", "batch", "bank")


class MoCoV2(Method):
    """MoCo v2 (Chen et al. 2020): momentum key encoder, queue of keys, MLP head, shuffle BN."""

    name = "moco-v2"
    # 2: own-image keys never negatives, the queue no longer clamped to the dataset, end-to-end keys on a
    # shuffled batch, weight decay on every parameter as the reference code
    revision = 2
    defaults = {"temperature": 0.2, "queue_size": 65536, "key_momentum": 0.999, "mlp_head": True,
                "head_batch_norm": False, "symmetric": False, "proj_hidden_dim": None, "proj_dim": 128,
                "negatives": "queue", "bank_momentum": 0.5, "augment": MOCO_V2_VIEWS}
    limits = {"temperature": (1e-4, None), "queue_size": (0, None), "key_momentum": (0, 1),
              "proj_hidden_dim": (1, None), "proj_dim": (1, None), "bank_momentum": (0, 1)}
    choices = {"negatives": NEGATIVES}

    @classmethod
    def check_params(cls, params, run):
        super().check_params(params, run)
        if params["negatives"] != "batch" and 0 < params["queue_size"] < run.batch_size:
            raise SelfSupError(f"params.queue_size={params['queue_size']} must be at least the batch size "
                               f"{run.batch_size} (or 0 for no negatives beyond the positive)")

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        hidden = cfg["proj_hidden_dim"] or self.feature_dim
        self.projector = mlp(self.feature_dim, hidden, cfg["proj_dim"], layers=2 if cfg["mlp_head"] else 1,
                             batch_norm=cfg["head_batch_norm"])
        self.dictionary_size = cfg["queue_size"]
        if cfg["negatives"] == "queue":
            self.key_backbone, self.key_projector = frozen_copy(self.backbone), frozen_copy(self.projector)
            self.queue = FeatureQueue(self.dictionary_size, cfg["proj_dim"], random_init=True)
        elif cfg["negatives"] == "bank":
            self.memory = MemoryBank(run.train_size, cfg["proj_dim"], torch.Generator().manual_seed(run.seed))
        self.views = [ViewSpec(AugmentConfig(**cfg["augment"]), count=2)]

    def training_step(self, batch, step):
        pairs = [batch["views"]] + ([batch["views"][::-1]] if self.cfg["symmetric"] else [])
        loss = getattr(self, f"{self.cfg['negatives']}_loss")
        queued = ((self.queue.items().clone(), self.queue.indices().clone())  # both passes see the same queue
                  if self.cfg["negatives"] == "queue" else None)
        return {"loss": sum(loss(q, k, batch, step * 2 + i, queued) for i, (q, k) in enumerate(pairs)) / len(pairs)}

    def queue_loss(self, x_query, x_key, batch, pass_index, negatives):
        with torch.no_grad():
            key = self.shuffled_keys(self.key_backbone, self.key_projector, x_key, pass_index)
        index, (negatives, negatives_index) = batch["index"], negatives
        loss = info_nce(self.projector(self.backbone(x_query)), key, negatives, self.cfg["temperature"],
                        index=index, queue_index=negatives_index)
        self.queue.push(F.normalize(key, dim=1), index)
        return loss

    def batch_loss(self, x_query, x_key, batch, pass_index, queued):
        query = self.projector(self.backbone(x_query))
        key = self.shuffled_keys(self.backbone, self.projector, x_key, pass_index)
        return batch_info_nce(query, key, self.cfg["temperature"], gather=True)

    def bank_loss(self, x_query, x_key, batch, pass_index, queued):
        query, index = self.projector(self.backbone(x_query)), batch["index"]
        sampled = self.memory.sample(self.dictionary_size, self.generator)
        loss = info_nce(query, self.memory[index], self.memory[sampled], self.cfg["temperature"],
                        index=index, queue_index=sampled)
        self.memory.update(index, query.detach(), self.cfg["bank_momentum"])
        return loss

    def shuffled_keys(self, backbone, projector, x, pass_index):
        """Keys of ``x`` computed on a shuffled batch (shuffle BN), returned in ``x``'s order."""
        shuffled, restore = shuffle_across_ranks(x, self.run.seed * 1_000_003 * 2 + pass_index)
        return unshuffle_across_ranks(projector(backbone(shuffled)), restore)

    def on_step_end(self, step, total_steps):
        if self.cfg["negatives"] != "queue":
            return
        ema_update(self.key_backbone, self.backbone, self.cfg["key_momentum"])
        ema_update(self.key_projector, self.projector, self.cfg["key_momentum"])


class MoCoV1(MoCoV2):
    """MoCo v1 (He et al. 2020): as v2 with a linear head, τ 0.07 and no blur (configs/moco-v1.yaml)."""

    name = "moco-v1"
    defaults = dict(MoCoV2.defaults, temperature=0.07, mlp_head=False, augment=INSTDISC_VIEWS)

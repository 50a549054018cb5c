"""Instance Discrimination: Wu, Xiong, Yu, Lin, "Unsupervised Feature Learning via
Non-Parametric Instance Discrimination", CVPR 2018.

Every training image is its own class.  One augmented view per image goes through the
backbone and a linear layer to a 128-d L2-normalised embedding f.  A memory bank keeps one
vector per image (random unit vectors at the start; after each step the batch's entries
become normalise(0.5·v + 0.5·f), gathered from every rank and written on every rank).  The
non-parametric softmax over all images is learnt by ``nce_memory`` with m = 4096 noise
entries (at most the dataset size) drawn uniformly from the bank by the method's generator
(shared by the batch — our choice, B times less memory than per-sample noise), τ 0.07, and the normalising constant Z
estimated once, at the first step, from that batch's similarities to the noise (averaged
over ranks) as in the paper; it is a buffer, so a resumed run keeps it.  ``proximal`` > 0
adds the paper's proximal regulariser λ·‖f − v‖² between an image's embedding and its bank
entry (off by default).  ``embed(x)`` gives the 128-d embeddings the bank holds, for the
paper's bank-based kNN.  ``bank_init: embeddings`` (ours, for short runs) starts the bank
from the network's own embeddings of the clean training images instead of random vectors:
each entry is refreshed once per epoch, so for the first epochs of a short run the paper's
random bank makes every image's target a random direction, which on Fashion-MNIST took the
features below the random-init network's (benchmarks/tuning-fmnist-quick.md).  ``loss: softmax``
computes the non-parametric softmax exactly over the whole bank (``bank_softmax``) instead of
its NCE estimate, as the paper does on CIFAR-10; affordable for banks of up to a few hundred
thousand images.
Optimiser (SGD lr 0.03, momentum 0.9, weight decay 5e-4, batch 256) from the paper; cosine
decay instead of its step schedule.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..data.augment import INSTDISC_VIEWS, AugmentConfig
from ..data.views import ViewSpec
from ..distributed import all_reduce_sum, world_info
from ..losses import bank_softmax, estimate_log_z, nce_memory
from .base import Method
from .helpers import MemoryBank


class InstDisc(Method):
    """InstDisc (Wu et al. 2018): NCE against a memory bank with one entry per image."""

    name = "instdisc"
    revision = 2  # 2: weight decay on every parameter, as the reference code (1: weights only)
    defaults = {"temperature": 0.07, "noise_samples": 4096, "bank_momentum": 0.5, "proximal": 0.0, "proj_dim": 128,
                "bank_init": "random", "loss": "nce", "augment": INSTDISC_VIEWS}
    choices = {"bank_init": ("random", "embeddings"), "loss": ("nce", "softmax")}
    limits = {"temperature": (1e-4, None), "noise_samples": (1, None), "bank_momentum": (0, 1), "proximal": (0, None),
              "proj_dim": (1, None)}

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        self.projector = nn.Linear(self.feature_dim, cfg["proj_dim"])
        self.memory = MemoryBank(run.train_size, cfg["proj_dim"], torch.Generator().manual_seed(run.seed))
        if cfg["loss"] == "nce":  # log Z, estimated at the first step (NaN until then; known on the host too)
            self.register_buffer("log_z", torch.tensor(float("nan")))
        self.log_z_known = False
        self.noise_samples = min(cfg["noise_samples"], run.train_size)
        self.views = [ViewSpec(AugmentConfig(**cfg["augment"]), count=1)]

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self.log_z_known = hasattr(self, "log_z") and not torch.isnan(self.log_z).item()

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.projector(self.backbone(x)), dim=1)

    def on_epoch_start(self, epoch, embed):
        if epoch == 0 and self.cfg["bank_init"] == "embeddings":
            features, _ = embed(self.embed)
            self.memory.bank.copy_(F.normalize(features, dim=1).to(self.memory.bank))

    def training_step(self, batch, step):
        (view,) = batch["views"]
        f, index = self.embed(view), batch["index"]
        positives = self.memory[index]
        if self.cfg["loss"] == "softmax":
            loss = bank_softmax(f, self.memory.bank, index, self.cfg["temperature"])
        else:
            noise = self.memory[self.memory.sample(self.noise_samples, self.generator)]
            if not self.log_z_known:
                mean_exp = estimate_log_z(f @ noise.T, self.cfg["temperature"], self.run.train_size).exp()
                self.log_z.copy_((all_reduce_sum(mean_exp) / world_info()[1]).log())
                self.log_z_known = True
            loss = nce_memory(f, positives, noise, self.cfg["temperature"], self.log_z, self.run.train_size)
        out = {self.cfg["loss"]: loss.detach()}
        if self.cfg["proximal"]:
            loss = loss + self.cfg["proximal"] * ((f - positives) ** 2).sum(dim=1).mean()
        self.memory.update(index, f.detach(), self.cfg["bank_momentum"])
        return {"loss": loss, **out}

"""The ``Method`` interface every self-supervised method implements.

A method owns its networks and its per-step objective, never a training loop:

* ``views`` lists the augmented views it needs (``ViewSpec``); the engine makes them from
  each uint8 batch on the device and stores them in ``batch["views"]``.  Methods that need
  another batch layout (labelled + unlabelled sources, patch sequences, pretext labels)
  override ``prepare_batch``.
* ``training_step(batch, step)`` returns ``{"loss": tensor, **scalars_to_log}``.
* ``on_step_end`` / ``on_epoch_start`` carry EMA targets, queues, memory banks, prototype
  freezing and re-clustering.  State they keep is registered as buffers or sub-modules, so it
  is saved in checkpoints and restored on resume.
* ``train_loader`` may return the method's own DataLoader over the pretraining split (a
  uniform-over-clusters or P×K class sampler, labelled + unlabelled sources); by default the
  engine shuffles the split with a sampler seeded by (seed, epoch).
* ``parameter_groups`` lets a method give some parameters their own learning rate or
  weight decay (SimSiam's fixed-lr predictor, LARS exclusions).

So a method can be used in any loop:
``loss = method.training_step(method.prepare_batch(batch, make), step)["loss"]``.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..data.views import ViewSpec


class Method(nn.Module):
    name: str = ""
    #: configuration keys the method reads, with their defaults (documented in its config file)
    defaults: dict = {}

    def __init__(self, backbone: nn.Module, feature_dim: int, cfg: dict):
        super().__init__()
        self.backbone = backbone
        self.feature_dim = feature_dim
        self.cfg = cfg
        self.views: list[ViewSpec] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Backbone features: what every evaluation protocol uses."""
        return self.backbone(images)

    def prepare_batch(self, batch: dict, make_views: Callable[[torch.Tensor, list[ViewSpec]], list[torch.Tensor]]) -> dict:
        batch["views"] = make_views(batch["image"], self.views)
        return batch

    def training_step(self, batch: dict, step: int) -> dict:
        raise NotImplementedError

    def on_step_end(self, step: int, total_steps: int) -> None:
        """Called after each optimiser step."""

    def on_epoch_start(self, epoch: int, loader) -> None:
        """Called before each training epoch with the training DataLoader."""

    def train_loader(self, dataset, batch_size: int, seed: int):
        """The method's own training DataLoader, or None for the engine's default."""
        return None

    def parameter_groups(self) -> list[dict]:
        """Optimiser parameter groups; biases and normalisation weights are kept apart so that
        the optimiser can exclude them from weight decay and LARS adaptation (SimCLR, BYOL)."""
        decay, no_decay = [], []
        for param in self.parameters():
            if param.requires_grad:
                (no_decay if param.ndim <= 1 else decay).append(param)
        return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0, "lars_exclude": True}]

"""Exemplar CNN: Dosovitskiy, Springenberg, Riedmiller, Brox, "Discriminative Unsupervised
Feature Learning with Convolutional Neural Networks", NIPS 2014.

N seed images, each its own surrogate class, are shown over and over under heavy random
transformations and the network classifies which seed it sees (parametric N-way softmax).
The paper's transformations, all drawn per image from the method's generator: translation
by up to 0.2 of the image side, scaling by 0.7–1.4, rotation by up to ±20° (one affine warp,
``grid_sample``, zeros — the dataset mean — outside the image), plus contrast, brightness
and, on colour images, saturation and hue changes (the view's colour jitter).  N defaults to
one seed per 8 training images, at most 8000 (the paper's largest STL-10 setting that still
improved); the seeds are a seeded random subset of the training split, kept as a buffer,
and each epoch draws as many samples from them as the split has images.  Optimiser: SGD lr
0.1·batch/256, momentum 0.9, weight decay 5e-4, cosine (our choice).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..data.augment import AugmentConfig, crops_only
from ..data.samplers import ResampleBatchSampler
from ..data.views import ViewSpec
from ..errors import SelfSupError
from .base import Method
from .helpers import classification
from .. import rng


class Exemplar(Method):
    """Exemplar CNN (Dosovitskiy et al. 2014): each seed image is a class, seen under heavy transformations."""

    name = "exemplar"
    defaults = {"surrogate_classes": None, "translation": 0.2, "scale": [0.7, 1.4], "rotation": 20.0,
                "augment": {**crops_only(1.0), "jitter_p": 1.0}}
    limits = {"surrogate_classes": (2, None), "translation": (0, 1), "rotation": (0, 180)}

    @staticmethod
    def class_count(params, run) -> int:
        return params["surrogate_classes"] or max(2, min(8000, run.train_size // 8))

    @classmethod
    def check_params(cls, params, run):
        super().check_params(params, run)
        if cls.class_count(params, run) > run.train_size:
            raise SelfSupError(f"params.surrogate_classes={params['surrogate_classes']} is more seed images than the "
                               f"{run.train_size} training images")
        low, high = params["scale"]
        if not 0 < low <= high:
            raise SelfSupError(f"params.scale of exemplar must be [low, high] with 0 < low <= high, got {params['scale']}")

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        n = self.class_count(cfg, run)
        seeds = rng.randperm(run.train_size, rng.cpu_generator(run.seed))[:n].sort().values
        class_of = torch.full((run.train_size,), -1, dtype=torch.long)
        class_of[seeds] = torch.arange(n)
        self.register_buffer("seeds", seeds)
        self.register_buffer("class_of", class_of)
        self.classifier = nn.Linear(self.feature_dim, n)
        self.views = [ViewSpec(AugmentConfig(**cfg["augment"]), count=1)]

    def train_batches(self, dataset, batch_size, seed):
        return dataset, ResampleBatchSampler(self.seeds.cpu(), len(dataset), batch_size, seed)

    def warp(self, x: torch.Tensor) -> torch.Tensor:
        """Each image translated, scaled and rotated by its own random amounts."""
        b = x.shape[0]
        draw = lambda low, high: low + (high - low) * rng.rand(b, self.generator)  # noqa: E731
        angle = draw(-self.cfg["rotation"], self.cfg["rotation"]) * math.pi / 180
        zoom = 1 / draw(*self.cfg["scale"])  # the sampling grid shrinks as the content grows
        shift = 2 * self.cfg["translation"]  # normalised coordinates span 2 per image side
        theta = torch.stack([torch.stack([zoom * angle.cos(), -zoom * angle.sin(), draw(-shift, shift)], 1),
                             torch.stack([zoom * angle.sin(), zoom * angle.cos(), draw(-shift, shift)], 1)], 1)
        grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, padding_mode="zeros", align_corners=False)

    def training_step(self, batch, step):
        (view,) = batch["views"]
        target = self.class_of[batch["index"].to(self.class_of.device)]
        logits = self.classifier(self.backbone(self.warp(view)))
        return classification(logits, target)

"""Linear probe on frozen features.

The survey's protocol (conv1..conv5 tables): a single linear layer trained with
cross-entropy on frozen, globally pooled features of each stage.  We precompute the features
of the clean (un-augmented) images once and train the layer on them; papers that train with
crop+flip augmentation for 90-100 epochs report a little higher.  Features are standardised
with training-set statistics (equivalent to the affine-free BatchNorm MoCo and MAE put
before the probe).  Optimiser: Adam, cosine decay, no weight decay by default.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..data.views import Normalization
from .features import method_features
from .. import rng


def train_linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                       num_classes: int, epochs: int = 100, batch_size: int = 256, lr: float = 1e-3,
                       weight_decay: float = 0.0, seed: int = 0) -> dict:
    """Train a linear classifier on ``train_x``; returns train and test top-1 (fractions)."""
    generator = torch.Generator().manual_seed(seed)
    mean, std = train_x.mean(0, keepdim=True), train_x.std(0, keepdim=True).clamp_min(1e-6)
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    torch.manual_seed(seed)
    layer = nn.Linear(train_x.shape[1], num_classes)
    optimizer = torch.optim.Adam(layer.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = max(1, -(-train_x.shape[0] // batch_size))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * steps_per_epoch)
    for _ in range(epochs):
        order = rng.randperm(train_x.shape[0], generator)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            loss = F.cross_entropy(layer(train_x[idx]), train_y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    with torch.no_grad():
        train_acc = (layer(train_x).argmax(1) == train_y).float().mean().item()
        test_acc = (layer(test_x).argmax(1) == test_y).float().mean().item()
    return {"train_top1": train_acc, "test_top1": test_acc}


def linear_probe(method, train, test, norm: Normalization, num_classes: int, layers: bool = False,
                 batch_size: int = 512, device="cpu", channels_last: bool = False, progress: bool = False,
                 size: int | None = None, **probe_options) -> dict:
    """Probe ``method.features`` (or, with ``layers``, each of ``method.feature_layers``, named by
    ``method.layer_names``) on ``train``, in eval mode, images resized to ``size`` if given; returns
    {layer name: {"train_top1", "test_top1"}}."""
    common = dict(layers=layers, batch_size=batch_size, device=device, channels_last=channels_last, progress=progress,
                  size=size)
    train_x, train_y = method_features(method, train, norm, desc="train features", **common)
    test_x, test_y = method_features(method, test, norm, desc="test features", **common)
    train_layers = train_x if layers else [train_x]
    test_layers = test_x if layers else [test_x]
    names = method.layer_names if layers else ["features"]
    return {name: train_linear_probe(tr, train_y, te, test_y, num_classes, **probe_options)
            for name, tr, te in zip(names, train_layers, test_layers)}

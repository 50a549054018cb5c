"""Frozen-feature extraction shared by every evaluation protocol.

``method_features`` is the one path from a method to features: ``Method.features`` (or
``Method.feature_layers`` for per-layer probes) on clean, normalised images, in eval mode on
the given device, the method's mode restored afterwards.  The kNN monitor, the final kNN and
linear probe of ``pretrain``, ``selfsup evaluate`` and the random-init baseline all use it.
"""
from __future__ import annotations

import contextlib

import torch
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from ..data.datasets import batch_inputs, collate_batch
from ..data.views import Normalization, clean_view
from ..distributed import gather_no_grad, world_info


@torch.no_grad()
def extract_features(encode, dataset, norm: Normalization, batch_size: int = 512,
                     device: torch.device | str = "cpu", size: int | None = None,
                     channels_last: bool = False, progress: bool = False, desc: str = "features"):
    """Run ``encode`` (inputs -> features, or -> list of per-layer features) over ``dataset``
    with the clean view; returns (features or list of them, labels) on the CPU."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_batch)
    outputs, labels = [], []
    for batch in tqdm(loader, desc=desc, disable=not progress, leave=False):
        x = clean_view(batch_inputs(batch).to(device), norm, size)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out = encode(x)
        outputs.append([o.float().cpu() for o in out] if isinstance(out, (list, tuple)) else out.float().cpu())
        labels.append(batch["label"])
    labels = torch.cat(labels)
    if isinstance(outputs[0], list):
        return [torch.cat(layer) for layer in zip(*outputs)], labels
    return torch.cat(outputs), labels


@contextlib.contextmanager
def eval_mode(module: torch.nn.Module):
    """``module`` in eval mode for the block, its own mode restored afterwards."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


def evaluated_network(method) -> tuple[list, torch.nn.Module]:
    """What ``method.features`` and ``feature_layers`` compute from, as cache-key parts: where
    they are defined (a method that overrides either adds its settings, which with the seed
    fix its other modules, e.g. an input filter) and the backbone, structure and weights.
    Methods that build the same backbone at one seed (SimCLR, SimSiam, BYOL) share the key."""
    owners = [type(method).features.__qualname__, type(method).feature_layers.__qualname__]
    overridden = owners != ["Method.features", "Method.feature_layers"]
    return [owners, method.cfg if overridden else None], method.backbone


def method_features(method, dataset, norm: Normalization, layers: bool = False, encode=None, **options):
    """(features, labels) of ``dataset`` by ``method.features`` (``layers``: a list, one per
    ``method.feature_layers`` stage; ``encode``: another of the method's encoders, e.g.
    InstDisc's ``embed``), in eval mode; ``options`` go to ``extract_features``."""
    with eval_mode(method):
        encode = encode or (method.feature_layers if layers else method.features)
        return extract_features(encode, dataset, norm, **options)


def classifier_top1(method, encode, dataset, norm: Normalization, **options) -> float:
    """Top-1 of the class scores ``encode`` (one of ``method``'s classifiers) on ``dataset``, in eval mode."""
    scores, labels = method_features(method, dataset, norm, encode=encode, **options)
    return (scores.argmax(1) == labels).float().mean().item()


@torch.no_grad()
def embed_split(encode, method, dataset, norm: Normalization, device, channels_last: bool = False,
                batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """(features on ``device``, labels) of the whole ``dataset`` in its order, in eval mode.
    Under DDP each rank embeds one contiguous shard and the shards are gathered, so every rank
    returns the same tensor at a 1/world share of the work."""
    rank, world = world_info()
    per_rank = -(-len(dataset) // world)
    shard = range(rank * per_rank, min(len(dataset), (rank + 1) * per_rank))
    with eval_mode(method):
        features, _ = extract_features(encode, Subset(dataset, list(shard)) if world > 1 else dataset, norm,
                                       batch_size, device, channels_last=channels_last)
    features = features.to(device)
    if world > 1:
        padded = features.new_zeros(per_rank, features.shape[1])
        padded[:len(features)] = features
        features = gather_no_grad(padded)[:len(dataset)]
    return features, dataset.labels

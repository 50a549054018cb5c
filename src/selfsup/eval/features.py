"""Frozen-feature extraction shared by every evaluation protocol."""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..data.datasets import collate_batch
from ..data.views import Normalization, clean_view


@torch.no_grad()
def extract_features(encode, dataset, norm: Normalization, batch_size: int = 512,
                     device: torch.device | str = "cpu", size: int | None = None,
                     channels_last: bool = False, progress: bool = False, desc: str = "features"):
    """Run ``encode`` (images -> features, or -> list of per-layer features) over ``dataset``
    with the clean view; returns (features or list of them, labels) on the CPU."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_batch)
    outputs, labels = [], []
    for batch in tqdm(loader, desc=desc, disable=not progress, leave=False):
        x = clean_view(batch["image"].to(device), norm, size)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out = encode(x)
        outputs.append([o.float().cpu() for o in out] if isinstance(out, (list, tuple)) else out.float().cpu())
        labels.append(batch["label"])
    labels = torch.cat(labels)
    if isinstance(outputs[0], list):
        return [torch.cat(layer) for layer in zip(*outputs)], labels
    return torch.cat(outputs), labels

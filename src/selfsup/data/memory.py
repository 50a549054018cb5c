"""The in-memory dataset every image and series split that fits in memory is held in."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset


class InMemoryDataset(Dataset):
    """Samples [N, ...] and int64 labels [N] in memory, served a whole batch at a time
    (``__getitems__``, one indexing operation): ``{KEY: samples, "label": ..., "index": ...}``
    with ``key`` "image" or "series"."""

    key = ""

    def __init__(self, samples: torch.Tensor, labels: torch.Tensor, num_classes: int):
        self.samples, self.labels, self.num_classes = samples, labels, num_classes

    def __len__(self) -> int:
        return self.samples.shape[0]

    def __getitems__(self, indices: list[int]) -> dict:
        index = torch.as_tensor(indices, dtype=torch.long)
        return {self.key: self.samples[index], "label": self.labels[index], "index": index}

    def content_key(self) -> tuple:
        """What the split's content follows from, for cache keys (``io.content_hash``): its samples and labels."""
        return self.samples, self.labels

    def __getitem__(self, i: int) -> dict:
        return {self.key: self.samples[i], "label": self.labels[i], "index": torch.tensor(i)}

    def subset(self, indices: np.ndarray):
        index = torch.as_tensor(indices, dtype=torch.long)
        return type(self)(self.samples[index], self.labels[index], self.num_classes)

"""Batch samplers that know the DDP rank.

Lightning's sampler injection is turned off (``use_distributed_sampler=False``): these
samplers shard themselves.  Each epoch a sampler draws one global order from a generator
seeded by (seed, epoch) only, cuts it into batches, and gives batch ``i`` to rank
``i % world``; every rank gets the same number of batches (the tail that cannot fill one
batch on every rank is dropped).  So the ranks' indices are disjoint, the order changes
each epoch, and a resumed run sees exactly the batches the uninterrupted run saw.

``__iter__`` is a generator: the order is drawn at the first batch, after the engine's
``set_epoch`` and after the method's epoch-start hook (which may have changed the labels a
``UniformLabelBatchSampler`` reads, as DeepCluster's re-clustering does).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch.utils.data import Sampler

from ..distributed import world_info
from ..errors import SelfSupError
from .. import rng


class RankBatchSampler(Sampler[list[int]]):
    """Base class: subclasses define ``order(generator)``, a 1-D tensor of ``num_samples`` indices."""

    def __init__(self, num_samples: int, batch_size: int, seed: int):
        if batch_size < 1 or num_samples < batch_size:
            raise ValueError(f"cannot make batches of {batch_size} from {num_samples} samples")
        self.num_samples, self.batch_size, self.seed, self.epoch = num_samples, batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def __iter__(self):
        rank, world = world_info()
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = self.order(generator)
        for batch in range(len(self)):
            start = (batch * world + rank) * self.batch_size
            yield order[start:start + self.batch_size].tolist()

    def __len__(self) -> int:
        return self.num_samples // (self.batch_size * world_info()[1])


class ShuffleBatchSampler(RankBatchSampler):
    """A fresh permutation of the dataset each epoch (the default sampler)."""

    def order(self, generator):
        return rng.randperm(self.num_samples, generator)


class ClassBatchSampler(RankBatchSampler):
    """P×K batches: ``classes_per_batch`` classes drawn at random, ``per_class`` images of each
    (FaceNet's online-mining batches, SupCon).  Images of a class are drawn without
    replacement while the class has enough, with replacement otherwise."""

    def __init__(self, labels: torch.Tensor, classes_per_batch: int, per_class: int, seed: int):
        self.labels = torch.as_tensor(labels)
        self.classes = self.labels.unique()
        if classes_per_batch > len(self.classes):
            raise ValueError(f"{classes_per_batch} classes per batch, but the data has {len(self.classes)}")
        self.classes_per_batch, self.per_class = classes_per_batch, per_class
        super().__init__(len(self.labels), classes_per_batch * per_class, seed)

    def order(self, generator):
        members = [torch.nonzero(self.labels == c).flatten() for c in self.classes]
        batches = []
        for _ in range(self.num_samples // self.batch_size):
            for c in rng.randperm(len(members), generator)[:self.classes_per_batch].tolist():
                pool = members[c]
                if len(pool) >= self.per_class:
                    pick = rng.randperm(len(pool), generator)[:self.per_class]
                else:
                    pick = rng.randint(0, len(pool), self.per_class, generator)
                batches.append(pool[pick])
        return torch.cat(batches)


class UniformLabelBatchSampler(RankBatchSampler):
    """As many samples per (pseudo-)label for every non-empty label, shuffled: DeepCluster's
    sampling "uniformly over clusters", which keeps large clusters from dominating.
    ``labels`` is called at the start of each epoch, so it sees the latest assignment."""

    def __init__(self, labels: Callable[[], torch.Tensor], num_samples: int, batch_size: int, seed: int):
        self.labels = labels
        super().__init__(num_samples, batch_size, seed)

    def order(self, generator):
        labels = self.labels().cpu()
        groups = [torch.nonzero(labels == c).flatten() for c in labels.unique()]
        per_label = self.num_samples // len(groups) + 1
        picks = []
        for group in groups:
            if len(group) >= per_label:
                picks.append(group[rng.randperm(len(group), generator)[:per_label]])
            else:
                picks.append(group[rng.randint(0, len(group), per_label, generator)])
        everything = torch.cat(picks)
        return everything[rng.randperm(len(everything), generator)][:self.num_samples]


class ResampleBatchSampler(RankBatchSampler):
    """``num_samples`` draws with replacement from a fixed set of dataset ``indices`` each
    epoch (Exemplar's surrogate classes: a few seed images, each seen many times)."""

    def __init__(self, indices: torch.Tensor, num_samples: int, batch_size: int, seed: int):
        self.indices = torch.as_tensor(indices)
        super().__init__(num_samples, batch_size, seed)

    def order(self, generator):
        return self.indices[rng.randint(0, len(self.indices), self.num_samples, generator)]


class LabelledUnlabelledBatchSampler(RankBatchSampler):
    """Semi-supervised steps (FixMatch's batches): each batch is ``labelled_batch`` indices
    from ``labelled`` (reshuffled whenever used up) followed by ``unlabelled_ratio`` times
    as many from the whole pool of ``pool_size`` images; an epoch is one pass over the pool."""

    def __init__(self, labelled: torch.Tensor, pool_size: int, labelled_batch: int, unlabelled_ratio: int, seed: int):
        self.labelled, self.labelled_batch = labelled, labelled_batch
        self.unlabelled_batch = labelled_batch * unlabelled_ratio
        steps = pool_size // self.unlabelled_batch
        if steps < 1:
            raise SelfSupError(f"a step takes {self.unlabelled_batch} unlabelled images (batch size {labelled_batch} x "
                               f"params.unlabelled_ratio {unlabelled_ratio}) but the pool holds {pool_size}; lower "
                               "--batch-size or params.unlabelled_ratio")
        self.pool_size = pool_size
        super().__init__(steps * (labelled_batch + self.unlabelled_batch), labelled_batch + self.unlabelled_batch, seed)

    def order(self, generator):
        steps = self.num_samples // self.batch_size
        unlabelled = rng.randperm(self.pool_size, generator)[:steps * self.unlabelled_batch]
        rounds = -(-steps * self.labelled_batch // len(self.labelled))
        labelled = torch.cat([self.labelled[rng.randperm(len(self.labelled), generator)]
                              for _ in range(rounds)])[:steps * self.labelled_batch]
        return torch.cat([labelled.view(steps, -1), unlabelled.view(steps, -1)], dim=1).flatten()

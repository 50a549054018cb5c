"""Test-only methods and datasets that stress the Method contract: a method drawing its own
random numbers, a labelled + unlabelled batch, a 1-D series batch, and a method recording
the sample indices each rank sees.  ``register(monkeypatch)`` adds them to the registries."""
from __future__ import annotations

import json
import os

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from selfsup.data.augment import AugmentConfig
from selfsup.data.datasets import DATASETS, DatasetInfo
from selfsup.data.samplers import ShuffleBatchSampler
from selfsup.data.views import Normalization, ViewSpec
from selfsup.losses import nt_xent
from selfsup.distributed import world_info
from selfsup.methods import METHODS, Method
from selfsup.models.heads import mlp


class NoisyContrast(Method):
    """SimCLR-like, plus Gaussian noise and a random feature mask drawn from ``self.generator``."""

    name = "toy-noisy"

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        self.projector = mlp(self.feature_dim, self.feature_dim, 16)
        self.views = [ViewSpec(AugmentConfig(), count=2)]

    def training_step(self, batch, step):
        noisy = [v + 0.3 * torch.randn(v.shape, generator=self.generator, device=v.device) for v in batch["views"]]
        z1, z2 = self.projector(self.backbone(torch.cat(noisy))).chunk(2)
        mask = (torch.rand(z1.shape[1], generator=self.generator, device=z1.device) > 0.3).float()
        return {"loss": nt_xent(z1 * mask, z2 * mask, 0.5)}


class HalfLabelled(Dataset):
    """Serves each batch of indices as a labelled half and an unlabelled half."""

    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitems__(self, indices):
        half = len(indices) // 2
        return {"labeled": self.images.__getitems__(indices[:half]),
                "unlabeled": self.images.__getitems__(indices[half:])}


class LabelledPlusUnlabelled(Method):
    """Semi-supervised shape: cross-entropy on the labelled part, view consistency on the rest."""

    name = "toy-semisup"

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        self.classifier = nn.Linear(self.feature_dim, run.num_classes)
        self.views = [ViewSpec(AugmentConfig(), count=2)]

    def train_batches(self, dataset, batch_size, seed):
        return HalfLabelled(dataset), ShuffleBatchSampler(len(dataset), batch_size, seed)

    def batch_size(self, batch):
        return batch["labeled"]["index"].shape[0] + batch["unlabeled"]["index"].shape[0]

    def prepare_batch(self, batch, make_views):
        batch["labeled"]["views"] = make_views(batch["labeled"]["image"], self.views[:1])[:1]
        batch["unlabeled"]["views"] = make_views(batch["unlabeled"]["image"], self.views)
        return batch

    def training_step(self, batch, step):
        supervised = F.cross_entropy(self.classifier(self.backbone(batch["labeled"]["views"][0])),
                                     batch["labeled"]["label"])
        weak, strong = (self.classifier(self.backbone(v)) for v in batch["unlabeled"]["views"])
        consistency = F.mse_loss(strong.softmax(1), weak.softmax(1).detach())
        return {"loss": supervised + consistency, "supervised": supervised}


class SeriesDataset(Dataset):
    """Noisy sines of two frequencies, [1, T] float series with labels."""

    def __init__(self, n=256, length=32, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(n) % 2
        t = torch.linspace(0, 6.28, length)
        freq = 1.0 + 2.0 * self.labels.float()
        self.series = (torch.sin(freq[:, None] * t) + 0.3 * torch.randn(n, length, generator=g)).unsqueeze(1)
        self.num_classes = 2

    def __len__(self):
        return len(self.series)

    def __getitems__(self, indices):
        index = torch.as_tensor(indices)
        return {"series": self.series[index], "label": self.labels[index], "index": index}

    def __getitem__(self, i):
        return self.__getitems__([i])


class Conv1dEncoder(nn.Module):
    def __init__(self, channels, width):
        super().__init__()
        self.net = nn.Sequential(nn.Conv1d(channels, width, 5, padding=2), nn.BatchNorm1d(width), nn.ReLU(),
                                 nn.Conv1d(width, width, 5, padding=2), nn.ReLU(), nn.AdaptiveAvgPool1d(1),
                                 nn.Flatten())
        self.feature_dim = width

    def forward(self, x):
        return self.net(x)


class SeriesContrast(Method):
    """1-D series: its own encoder, its own views (random crop-and-resize and jitter), NT-Xent."""

    name = "toy-series"
    modalities = ("series",)

    @classmethod
    def build_backbone(cls, cfg, run):
        return Conv1dEncoder(run.channels, cfg["backbone"]["width"])

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        self.projector = mlp(self.feature_dim, self.feature_dim, 8)

    def feature_layers(self, x):
        return [self.features(x)]

    def prepare_batch(self, batch, make_views):
        x, g = batch["series"], self.generator
        views = []
        for _ in range(2):
            start = int(torch.randint(0, 8, (1,), generator=g, device=g.device))
            crop = F.interpolate(x[..., start:start + 24], size=x.shape[-1], mode="linear")
            views.append(crop + 0.1 * torch.randn(crop.shape, generator=g, device=g.device))
        batch["views"] = views
        return batch

    def training_step(self, batch, step):
        z1, z2 = self.projector(self.backbone(torch.cat(batch["views"]))).chunk(2)
        return {"loss": nt_xent(z1, z2, 0.5)}


class IndexRecorder(NoisyContrast):
    """Appends, per epoch, the sample indices this rank trained on to RECORD_DIR/rank{R}.jsonl."""

    name = "toy-recorder"

    def on_epoch_start(self, epoch, embed):
        self.seen = {"epoch": epoch, "indices": []}

    def training_step(self, batch, step):
        self.seen["indices"] += batch["index"].tolist()
        return super().training_step(batch, step)

    def on_step_end(self, step, total_steps):
        if len(self.seen["indices"]) == self.run.batches_per_epoch * self.run.batch_size:
            rank, _ = world_info()
            with open(os.path.join(os.environ["RECORD_DIR"], f"rank{rank}.jsonl"), "a") as f:
                f.write(json.dumps(self.seen) + "\n")


SERIES_INFO = DatasetInfo("toy-sines", "two-frequency sines (tests)", 1, 32, 2, Normalization((0.0,), (1.0,)),
                          ("train",), "train", lambda path, split, options: SeriesDataset(), needs_dir=False,
                          modality="series")
TOY_METHODS = [NoisyContrast, LabelledPlusUnlabelled, SeriesContrast, IndexRecorder]


def register(setitem) -> None:
    """Register the toy methods and dataset with ``setitem(mapping, key, value)``
    (pytest's ``monkeypatch.setitem``, or ``dict.__setitem__`` in a script)."""
    for cls in TOY_METHODS:
        setitem(METHODS, cls.name, cls)
    setitem(DATASETS, SERIES_INFO.name, SERIES_INFO)

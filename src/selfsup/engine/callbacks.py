"""Callbacks: atomic checkpoints, throughput timing, the kNN monitor."""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ..eval.baselines import encoder_knn
from ..eval.diagnostics import embedding_diagnostics
from ..eval.features import classifier_top1


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint to a temporary file in the same directory and renames it over the
    target, so a run killed mid-write never leaves a truncated ``last.ckpt``."""

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            torch.save(checkpoint, tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


class EpochCheckpoint(L.Callback):
    """Saves ``last.ckpt`` at the end of every training epoch (after the monitors)."""

    def __init__(self, path: Path):
        self.path = path

    def on_train_epoch_end(self, trainer, pl_module):
        trainer.save_checkpoint(self.path)


class Throughput(L.Callback):
    """Time spent in training epochs, images seen (each image once, whatever its views), and
    the wall time of ``fit``; all three are kept in checkpoints, so that a resumed run reports
    its whole training (up to its last checkpoint before the interruption, plus the rest)."""

    def __init__(self):
        self.train_seconds = 0.0
        self.images = 0
        self.earlier_wall_seconds = 0.0  # of the run's segments before this process resumed it
        self._start = self._fit_start = None

    def state_dict(self):
        return {"train_seconds": self.train_seconds, "images": self.images, "wall_seconds": self.wall_seconds}

    def load_state_dict(self, state):
        self.train_seconds, self.images = state["train_seconds"], state["images"]
        self.earlier_wall_seconds = state["wall_seconds"]

    @property
    def wall_seconds(self) -> float:
        return self.earlier_wall_seconds + (time.perf_counter() - self._fit_start if self._fit_start else 0.0)

    def on_fit_start(self, trainer, pl_module):
        self._fit_start = time.perf_counter()

    def on_train_epoch_start(self, trainer, pl_module):
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.images += pl_module.method.batch_size(batch) * trainer.world_size

    def on_train_epoch_end(self, trainer, pl_module):
        self.train_seconds += time.perf_counter() - self._start


class KNNMonitor(L.Callback):
    """kNN top-1 of backbone features on held-out data every ``every_n_epochs`` epochs, logged
    as ``knn_top1`` (and shown on the progress bar), with the collapse diagnostics of the
    queries' features (``selfsup.eval.diagnostics``), logged as ``diagnostics/NAME``, and the
    online probe's top-1 on the same images (``online_top1``) where the run trains one."""

    def __init__(self, bank, queries, num_classes: int, k: int, temperature: float, every_n_epochs: int):
        self.bank, self.queries, self.num_classes = bank, queries, num_classes
        self.k, self.temperature, self.every = k, temperature, every_n_epochs
        self.history: list[dict] = []

    def state_dict(self):  # a resumed run's curve starts at epoch 1
        return {"history": self.history}

    def load_state_dict(self, state):
        self.history = list(state["history"])

    @torch.no_grad()
    def on_train_epoch_end(self, trainer, pl_module):
        epoch = trainer.current_epoch + 1
        if self.every <= 0 or (epoch % self.every and epoch != trainer.max_epochs):
            return
        top1 = encoder_knn(pl_module.method, self.bank, self.queries, pl_module.norm, self.num_classes, self.k,
                           self.temperature, pl_module.device, pl_module.channels_last)
        diagnostics = embedding_diagnostics(pl_module.method, self.queries, pl_module.norm, pl_module.device,
                                            channels_last=pl_module.channels_last)
        online = {}
        if pl_module.online_probe is not None:
            online["online_top1"] = classifier_top1(pl_module.method, pl_module.online_scores, self.queries,
                                                    pl_module.norm, device=pl_module.device,
                                                    channels_last=pl_module.channels_last)
            pl_module.log("online_top1", online["online_top1"], prog_bar=True, on_epoch=True, sync_dist=False)
        self.history.append({"epoch": epoch, "knn_top1": top1, **online, **diagnostics})
        pl_module.log("knn_top1", top1, prog_bar=True, on_epoch=True, sync_dist=False)
        for name, value in diagnostics.items():
            pl_module.log(f"diagnostics/{name}", float(value), on_epoch=True, sync_dist=False)


class ProgressBar(TQDMProgressBar):
    """Lightning's bar without the logger version number (meaningless with two loggers)."""

    def get_metrics(self, trainer, pl_module):
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics

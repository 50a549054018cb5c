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

from ..eval.diagnostics import embedding_diagnostics
from ..eval.features import classifier_top1, method_features
from ..eval.knn import knn_top1
from ..eval.linear import train_linear_probe


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


class LossHistory(L.Callback):
    """Appends each epoch's mean training loss (this rank's), the step it ended at, the
    precision it trained in and its ``seconds`` (wall time since the previous epoch ended, or
    since training began or resumed: monitors and checkpoints included) to the module's
    ``loss_history`` (kept in checkpoints, written to ``metrics.json``, read by the report where
    the CSV logs are gone, and by ``selfsup status`` for the time left); placed before
    ``EpochCheckpoint``.  ``earlier_precision`` names the precision of resumed epochs whose entries
    lack one (written before entries named it): the one config.yaml recorded for the run."""

    def __init__(self, earlier_precision: str | None = None):
        self.earlier_precision = earlier_precision
        self._since = 0.0

    def on_train_start(self, trainer, pl_module):
        for entry in pl_module.loss_history:
            entry.setdefault("precision", self.earlier_precision)
        self._since = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        loss, now = trainer.callback_metrics.get("loss_epoch"), time.perf_counter()
        if loss is not None:
            pl_module.loss_history.append({"epoch": trainer.current_epoch, "step": trainer.global_step,
                                           "loss": float(loss), "precision": str(trainer.precision),
                                           "seconds": round(now - self._since, 2)})
        self._since = now


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
    """kNN top-1 of backbone features on held-out data every ``knn.every_n_epochs`` epochs (or
    every ``knn.every_n_steps`` optimiser steps and after the last), logged as ``knn_top1`` (and
    shown on the progress bar), with the collapse diagnostics of the queries' features
    (``selfsup.eval.diagnostics``), logged as ``diagnostics/NAME``, and the online probe's top-1 on
    the same images (``online_top1``) where the run trains one.

    With ``knn.target_knn`` (and ``knn.target_linear``: a linear probe on the same features,
    trained at checks whose kNN reached its target, and at the run's last check, so that a run
    that missed says how far its probe got) the first check that reaches the targets stops
    training and is kept as ``reached``, with the training time up to it: the run's wall time
    from ``clock`` less the time all checks took."""

    def __init__(self, bank, queries, num_classes: int, knn, clock: Throughput, seed: int = 0):
        self.bank, self.queries, self.num_classes = bank, queries, num_classes
        self.knn, self.clock, self.seed = knn, clock, seed
        self.history: list[dict] = []
        self.check_seconds = 0.0
        self.reached: dict | None = None
        self._checked_step = -1

    def state_dict(self):  # a resumed run's curve starts at epoch 1
        return {"history": self.history, "check_seconds": self.check_seconds, "reached": self.reached}

    def load_state_dict(self, state):
        self.history = list(state["history"])
        self.check_seconds, self.reached = state.get("check_seconds", 0.0), state.get("reached")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        every, step = self.knn.every_n_steps, trainer.global_step
        last = trainer.is_last_batch and trainer.current_epoch + 1 == trainer.max_epochs
        if every > 0 and (step % every == 0 or last) and step != self._checked_step and not self.reached:
            self._checked_step = step
            self.check(trainer, pl_module, last)

    def on_train_epoch_end(self, trainer, pl_module):
        every, epoch = self.knn.every_n_epochs, trainer.current_epoch + 1
        if self.knn.every_n_steps == 0 and every > 0 and (epoch % every == 0 or epoch == trainer.max_epochs):
            self.check(trainer, pl_module, epoch == trainer.max_epochs)

    @torch.no_grad()
    def check(self, trainer, pl_module, last: bool = False):
        started, train_seconds = time.perf_counter(), self.clock.wall_seconds - self.check_seconds
        device, norm, channels_last = pl_module.device, pl_module.norm, pl_module.channels_last
        common = dict(device=device, channels_last=channels_last)
        bank_x, bank_y = method_features(pl_module.method, self.bank, norm, desc="kNN bank", **common)
        test_x, test_y = method_features(pl_module.method, self.queries, norm, desc="kNN queries", **common)
        top1 = knn_top1(bank_x, bank_y, test_x, test_y, self.num_classes, self.knn.k, self.knn.temperature)
        diagnostics = embedding_diagnostics(pl_module.method, self.queries, norm, device, channels_last=channels_last,
                                            clean=test_x)
        extra = {}
        if pl_module.online_probe is not None:
            extra["online_top1"] = classifier_top1(pl_module.method, pl_module.online_scores, self.queries, norm,
                                                   **common)
            pl_module.log("online_top1", extra["online_top1"], prog_bar=True, on_epoch=True, sync_dist=False)
        reached = self.knn.target_knn is not None and top1 >= self.knn.target_knn
        if (reached or last) and self.knn.target_linear is not None:
            with torch.enable_grad():
                extra["linear_top1"] = train_linear_probe(bank_x, bank_y, test_x, test_y, self.num_classes,
                                                          epochs=self.knn.target_probe_epochs, seed=self.seed)["test_top1"]
            reached = reached and extra["linear_top1"] >= self.knn.target_linear
        steps_per_epoch = max(1, trainer.num_training_batches)
        point = {"epoch": round(trainer.global_step / steps_per_epoch, 4) if self.knn.every_n_steps else
                 trainer.current_epoch + 1, "step": trainer.global_step, "train_seconds": round(train_seconds, 2),
                 "knn_top1": top1, **extra, **diagnostics}
        self.history.append(point)
        pl_module.log("knn_top1", top1, prog_bar=True, on_epoch=True, sync_dist=False)
        for name, value in diagnostics.items():
            pl_module.log(f"diagnostics/{name}", float(value), on_epoch=True, sync_dist=False)
        if reached:
            self.reached = point
            trainer.should_stop = True
        self.check_seconds += time.perf_counter() - started


class ProgressBar(TQDMProgressBar):
    """Lightning's bar without the logger version number (meaningless with two loggers)."""

    def get_metrics(self, trainer, pl_module):
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics

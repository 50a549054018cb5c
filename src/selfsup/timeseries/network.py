"""The self-boosted forecasting network and its training (Lightning).

Architecture from the paper (Nguyen et al. 2019): a stack of causal dilated 1-D
convolutions (dilations 1, 2, 4, ...) over the input lags, a GRU, a dense layer shared by
all tasks, and one linear output per task (task 0: the series at t + h; then the auxiliary
components), trained with MSE and Adam.  Our choices where the paper leaves details open:
kernel size 2 and as many conv layers as make the receptive field cover the lags, 32
channels / GRU units / dense units, ReLU, loss = MSE(main) + ``aux_weight`` * mean
MSE(auxiliary) with ``aux_weight`` 0.5, Adam at 1e-3 with batch 32, every input channel and
task standardised with the training samples' mean and std, and the series read relative to
its value at the origin with task 0 its change to t + h (``samples.network_arrays``).  The
per-task linear outputs are the rows of one ``Linear(dense, tasks)`` (the same function as
separate heads).

The epoch with the lowest validation NRMSE is kept: its weights live in the module
(``best_state``) and in every checkpoint, so a resumed run keeps them too.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ..data.samplers import ShuffleBatchSampler
from ..rundir import RunDirectory
from ..engine.callbacks import AtomicCheckpointIO, EpochCheckpoint, ProgressBar
from ..engine.train import quiet_lightning
from .samples import Arrays


def causal_conv(in_channels: int, out_channels: int, kernel_size: int, dilation: int) -> nn.Sequential:
    """A convolution whose output at step i reads inputs at steps <= i only (left padding)."""
    return nn.Sequential(nn.ConstantPad1d(((kernel_size - 1) * dilation, 0), 0.0),
                         nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation), nn.ReLU())


class ForecastNet(nn.Module):
    """[batch, channels, lags] -> [batch, tasks]."""

    def __init__(self, in_channels: int, tasks: int, lags: int, channels: int = 32, hidden: int = 32, dense: int = 32,
                 kernel_size: int = 2):
        super().__init__()
        layers = 1  # then enough to cover the lags: receptive field 1 + (k - 1)(2^layers - 1)
        while kernel_size > 1 and 1 + (kernel_size - 1) * (2 ** layers - 1) < lags:
            layers += 1
        self.convs = nn.Sequential(*[causal_conv(in_channels if i == 0 else channels, channels, kernel_size, 2 ** i)
                                     for i in range(layers)])
        self.gru = nn.GRU(channels, hidden, batch_first=True)
        self.shared = nn.Sequential(nn.Linear(hidden, dense), nn.ReLU())
        self.heads = nn.Linear(dense, tasks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, last = self.gru(self.convs(x).transpose(1, 2))
        return self.heads(self.shared(last[-1]))


class ForecastModule(L.LightningModule):
    """Trains ``ForecastNet`` on standardised arrays; tracks the best validation epoch.
    ``nrmse_scale`` turns the RMSE of task 0 into the validation NRMSE (the target's scale
    over the standard deviation of the validation targets)."""

    def __init__(self, cfg: dict, in_channels: int, tasks: int, nrmse_scale: float = 1.0):
        super().__init__()
        self.save_hyperparameters()
        n = cfg["network"]
        self.net = ForecastNet(in_channels, tasks, cfg["lags"], n["channels"], n["hidden"], n["dense"],
                               n["kernel_size"])
        self.aux_weight, self.lr, self.weight_decay = n["aux_weight"], n["lr"], n["weight_decay"]
        self.nrmse_scale = nrmse_scale
        self.best_state: dict | None = None
        self.best_epoch, self.best_val = 0, math.inf
        self.history: list[dict] = []
        self._losses: list[float] = []
        self._val: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x):
        return self.net(x)

    def loss(self, forecast, target):
        main = nn.functional.mse_loss(forecast[:, 0], target[:, 0])
        if target.shape[1] == 1:
            return main
        return main + self.aux_weight * nn.functional.mse_loss(forecast[:, 1:], target[:, 1:])

    def on_train_epoch_start(self):
        self._losses = []

    def training_step(self, batch, batch_idx):
        loss = self.loss(self(batch[0]), batch[1])
        self._losses.append(float(loss))
        self.log("loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        self._val.append((self(batch[0])[:, 0], batch[1][:, 0]))

    def on_validation_epoch_end(self):
        forecast, target = (torch.cat(part) for part in zip(*self._val))
        self._val = []
        value = float(torch.sqrt(torch.mean((forecast - target) ** 2))) * self.nrmse_scale
        epoch = self.current_epoch + 1
        self.history.append({"epoch": epoch, "train_loss": float(np.mean(self._losses)), "val_nrmse": value})
        if value < self.best_val:
            self.best_val, self.best_epoch = value, epoch
            self.best_state = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
        self.log("val_nrmse", value, prog_bar=True)

    def on_save_checkpoint(self, checkpoint):
        checkpoint["forecast"] = {"best_state": self.best_state, "best_epoch": self.best_epoch,
                                  "best_val": self.best_val, "history": self.history}

    def on_load_checkpoint(self, checkpoint):
        saved = checkpoint["forecast"]
        self.best_state, self.best_epoch, self.best_val = saved["best_state"], saved["best_epoch"], saved["best_val"]
        self.history = saved["history"]

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)

    @torch.no_grad()
    def predict_main(self, inputs: np.ndarray) -> np.ndarray:
        """Task 0's standardised forecasts with the best epoch's weights."""
        if self.best_state is not None:
            self.net.load_state_dict(self.best_state)
        self.eval()
        return self(torch.as_tensor(inputs, dtype=torch.float32))[:, 0].numpy()


def _tensors(arrays: Arrays) -> TensorDataset:
    return TensorDataset(torch.as_tensor(arrays.inputs, dtype=torch.float32),
                         torch.as_tensor(arrays.targets, dtype=torch.float32))


def train_network(cfg: dict, out: Path, train: Arrays, val: Arrays, ckpt: Path | None,
                  nrmse_scale: float = 1.0) -> tuple[ForecastModule, float]:
    """(trained module, seconds) for standardised arrays; checkpoints every epoch into the run
    directory ``out``'s checkpoint and continues from ``ckpt`` when given."""
    n = cfg["network"]
    quiet_lightning()
    L.seed_everything(cfg["seed"], verbose=False)
    module = ForecastModule(cfg, train.inputs.shape[1], train.targets.shape[1], nrmse_scale)
    batch = min(n["batch_size"], len(train.inputs))
    loader = DataLoader(_tensors(train), batch_sampler=ShuffleBatchSampler(len(train.inputs), batch, cfg["seed"]))
    val_loader = DataLoader(_tensors(val), batch_size=len(val.inputs))
    progress = bool(cfg["trainer"]["progress_bar"])
    trainer = L.Trainer(max_epochs=n["epochs"], accelerator=cfg["trainer"]["accelerator"], devices=1, logger=False,
                        callbacks=[EpochCheckpoint(RunDirectory(out).checkpoint)]
                        + ([ProgressBar(refresh_rate=5)] if progress else []),
                        plugins=[AtomicCheckpointIO()], enable_checkpointing=False, enable_progress_bar=progress,
                        enable_model_summary=False, num_sanity_val_steps=0, use_distributed_sampler=False,
                        log_every_n_steps=1, default_root_dir=out)
    start = time.perf_counter()
    trainer.fit(module, loader, val_loader, ckpt_path=str(ckpt) if ckpt else None, weights_only=True)
    module.cpu()
    return module, time.perf_counter() - start

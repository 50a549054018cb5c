"""The one Lightning module that trains any ``Method``."""
from __future__ import annotations

import functools
import zlib

import lightning as L
import torch

from ..data.views import Normalization, make_views
from ..errors import SelfSupError
from ..losses import world_info
from ..methods import method_class
from ..models.backbones import build_backbone
from .optim import build_optimizer, warmup_cosine


class NonFiniteLossError(SelfSupError):
    pass


def build_method(cfg: dict):
    """The method of a resolved config, with its backbone (fresh weights)."""
    data, bb = cfg["data"], cfg["backbone"]
    backbone = build_backbone(bb["name"], data["channels"], bb["width"], bb["small_stem"])
    return method_class(cfg["method"])(backbone, backbone.feature_dim, cfg["params"])


def run_normalization(cfg: dict) -> Normalization:
    """The input normalisation a resolved config trains with."""
    return Normalization(tuple(cfg["data"]["mean"]), tuple(cfg["data"]["std"]))


class PretrainModule(L.LightningModule):
    """Makes the method's views on the device, calls its step, owns optimiser and schedule."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.save_hyperparameters({"cfg": cfg})
        self.cfg = cfg
        self.method = build_method(cfg)
        self.norm = run_normalization(cfg)
        self.channels_last = bool(cfg["trainer"]["channels_last"])
        if self.channels_last:
            self.method.to(memory_format=torch.channels_last)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.method(images)

    def _generator(self, batch_idx: int) -> torch.Generator:
        """Random numbers for one step's augmentations, a function of (seed, epoch, batch,
        rank) only: a resumed run draws exactly what the uninterrupted run drew."""
        rank, _ = world_info()
        key = f"{self.cfg['seed']}/{self.current_epoch}/{batch_idx}/{rank}".encode()
        return torch.Generator(device=self.device).manual_seed(zlib.crc32(key))

    def training_step(self, batch, batch_idx):
        view_maker = functools.partial(make_views, norm=self.norm, generator=self._generator(batch_idx),
                                       channels_last=self.channels_last)
        batch = self.method.prepare_batch(batch, view_maker)
        out = self.method.training_step(batch, self.global_step)
        loss = out["loss"]
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"the loss became {loss.item()} at epoch {self.current_epoch}, step {self.global_step}; "
                "the last checkpoint (end of the previous epoch) is intact. Lower optimizer.lr, "
                "raise schedule.warmup_epochs, or use precision 32-true")
        size = batch["index"].shape[0]
        self.log("loss", loss.detach(), prog_bar=True, on_step=True, on_epoch=True, batch_size=size)
        extra = {f"train/{k}": (v.detach() if torch.is_tensor(v) else v) for k, v in out.items() if k != "loss"}
        if extra:
            self.log_dict(extra, on_step=True, on_epoch=False, batch_size=size)
        return loss

    def on_train_start(self):
        self._steps_seen = self.global_step

    def on_train_batch_end(self, outputs, batch, batch_idx):
        if self.global_step != self._steps_seen:  # an optimiser step happened (not so between accumulated batches)
            self._steps_seen = self.global_step
            self.method.on_step_end(self.global_step, int(self.trainer.estimated_stepping_batches))

    def on_train_epoch_start(self):
        self.method.on_epoch_start(self.current_epoch, self.trainer.train_dataloader)

    def configure_optimizers(self):
        t = self.cfg["trainer"]
        effective_batch = self.cfg["batch_size"] * t["accumulate_grad_batches"] * self.trainer.world_size
        optimizer = build_optimizer(self.method.parameter_groups(), self.cfg["optimizer"], effective_batch)
        total = int(self.trainer.estimated_stepping_batches)
        steps_per_epoch = max(1, total // max(1, self.cfg["epochs"]))
        warmup = min(int(self.cfg["schedule"]["warmup_epochs"] * steps_per_epoch), total // 10)
        final = self.cfg["schedule"]["final_lr_ratio"]
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, functools.partial(warmup_cosine, total_steps=total, warmup_steps=warmup, final_ratio=final))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

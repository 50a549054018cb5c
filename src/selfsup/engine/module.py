"""The one Lightning module that trains any ``Method``."""
from __future__ import annotations

import functools
import zlib

import lightning as L
import torch

from ..data.views import Normalization, make_views
from ..errors import SelfSupError
from ..eval.features import embed_split
from ..losses import world_info
from ..methods import METHODS, RunContext, method_class
from ..models.backbones import SERIES_BACKBONES, default_backbone
from ..models.norm import BATCHNORM_POLICIES, apply_batchnorm_policy
from .optim import build_optimizer, warmup_cosine


class NonFiniteLossError(SelfSupError):
    pass


def run_context(cfg: dict) -> RunContext:
    """The ``RunContext`` of a resolved config whose ``run`` facts the engine has filled."""
    data, run = cfg["data"], cfg["run"]
    return RunContext(train_size=run["train_size"], num_classes=data["num_classes"], image_size=data["image_size"],
                      channels=data["channels"], epochs=cfg["epochs"], batch_size=cfg["batch_size"],
                      batches_per_epoch=run["batches_per_epoch"], world_size=run["world_size"], seed=cfg["seed"],
                      smallest_class=run.get("smallest_class", 0), mean=tuple(data.get("mean", ())),
                      std=tuple(data.get("std", ())), modality=data.get("modality", "image"))


def build_method(cfg: dict):
    """The method of a resolved config, with its backbone (fresh weights) and BatchNorm policy."""
    run = run_context(cfg)
    cls = method_class(cfg["method"])
    if cfg["backbone"]["name"] == "auto":
        cfg["backbone"]["name"] = default_backbone(run.modality)
    if run.modality not in cls.modalities:
        usable = ", ".join(name for name, c in METHODS.items() if run.modality in c.modalities)
        raise SelfSupError(f"{cls.name} learns from {' and '.join(cls.modalities)} data, but {cfg['dataset']} holds "
                           f"{run.modality} data; methods for it: {usable}")
    if (cfg["backbone"]["name"] in SERIES_BACKBONES) != (run.modality == "series"):
        kind = "series (conv1d)" if run.modality == "series" else "images (resnet18, resnet34, resnet50)"
        raise SelfSupError(f"backbone {cfg['backbone']['name']} does not fit {cfg['dataset']}: its data needs a backbone "
                           f"for {kind}; leave --backbone out (auto) or pick one of those")
    cls.check_params(cfg["params"], run)
    backbone = cls.build_backbone(cfg, run)
    if cfg["backbone"].get("init"):
        load_backbone(backbone, cfg["backbone"]["init"])
    method = cls(backbone, cfg["params"], run)
    norm, splits = cfg["backbone"]["batchnorm"], cfg["backbone"]["bn_splits"]
    if norm not in BATCHNORM_POLICIES:
        raise SelfSupError(f"backbone.batchnorm must be one of {', '.join(BATCHNORM_POLICIES)}, not {norm!r}")
    if norm == "split" and run.world_size == 1 and (not isinstance(splits, int) or splits < 1 or run.batch_size % splits):
        raise SelfSupError(f"split BatchNorm cuts each batch into backbone.bn_splits={splits!r} groups, which must "
                           f"divide the batch size {run.batch_size}; change --batch-size or --set backbone.bn_splits=N")
    # split-BN emulates per-device statistics on one device; with several devices they are per-device anyway
    return apply_batchnorm_policy(method, "local" if norm == "split" and run.world_size > 1 else norm, splits)


def load_backbone(backbone: torch.nn.Module, path: str) -> None:
    """Copy the backbone weights of the selfsup checkpoint at ``path`` into ``backbone`` (the
    ``backbone.init`` option: fine-tuning and semi-supervised runs from a pretrained encoder)."""
    from .checkpoint import read_checkpoint

    checkpoint, saved = read_checkpoint(path)
    prefix = "method.backbone."
    weights = {k[len(prefix):]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    try:
        backbone.load_state_dict(weights)
    except RuntimeError as exc:
        raise SelfSupError(f"backbone.init: the backbone in {path} ({saved['backbone']['name']}, width "
                           f"{saved['backbone']['width']}, {saved['data']['channels']}-channel input) does not fit this "
                           f"run's; pretrain on data with the same channels and use the same --backbone and --width") from exc


def run_normalization(cfg: dict) -> Normalization:
    """The input normalisation a resolved config trains with."""
    return Normalization(tuple(cfg["data"]["mean"]), tuple(cfg["data"]["std"]))


def seeded_generator(device, *key) -> torch.Generator:
    """A generator on ``device`` seeded by a hash of ``key`` (e.g. seed, epoch, batch, rank)."""
    return torch.Generator(device=device).manual_seed(zlib.crc32("/".join(map(str, key)).encode()))


class PretrainModule(L.LightningModule):
    """Makes the method's views on the device, calls its hooks and step, owns optimiser and
    schedule.  ``train_set`` (set by ``pretrain``) is what the epoch-start ``embed`` helper reads."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.save_hyperparameters({"cfg": cfg})
        self.cfg = cfg
        self.method = build_method(cfg)
        self.norm = run_normalization(cfg)
        # PyTorch 2.14's CPU backward of channels-last strided 1x1 convolutions (ResNet
        # shortcuts) corrupts memory for odd batch sizes, so odd batches train in NCHW.
        self.channels_last = (bool(cfg["trainer"]["channels_last"]) and cfg["batch_size"] % 2 == 0
                              and cfg["data"].get("modality", "image") == "image")
        self.train_set = None
        self.epoch_history: list[dict] = []  # what the method's epoch-start hook reported
        if self.channels_last:
            self.method.to(memory_format=torch.channels_last)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.method.features(images)

    def training_step(self, batch, batch_idx):
        # Random numbers for the step, a function of (seed, epoch, batch, rank) only: a resumed
        # run draws exactly what the uninterrupted run drew.
        rank, _ = world_info()
        key = (self.cfg["seed"], self.current_epoch, batch_idx, rank)
        view_maker = functools.partial(make_views, norm=self.norm, generator=seeded_generator(self.device, *key),
                                       channels_last=self.channels_last)
        self.method.generator = seeded_generator(self.device, *key, "method")
        batch = self.method.prepare_batch(batch, view_maker)
        out = self.method.training_step(batch, self.global_step)
        loss = out["loss"]
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"the loss became {loss.item()} at epoch {self.current_epoch}, step {self.global_step}; "
                "the last checkpoint (end of the previous epoch) is intact. Lower optimizer.lr, "
                "raise schedule.warmup_epochs, or use precision 32-true")
        size = self.method.batch_size(batch)
        self.log("loss", loss.detach(), prog_bar=True, on_step=True, on_epoch=True, batch_size=size)
        extra = {f"train/{k}": (v.detach() if torch.is_tensor(v) else v) for k, v in out.items() if k != "loss"}
        if extra:
            self.log_dict(extra, on_step=True, on_epoch=False, batch_size=size)
        return loss

    def on_before_optimizer_step(self, optimizer):
        self.method.on_before_optimizer_step(self.current_epoch, self.global_step)

    def on_train_start(self):
        self._steps_seen = self.global_step

    def on_train_batch_end(self, outputs, batch, batch_idx):
        if self.global_step != self._steps_seen:  # an optimiser step happened (not so between accumulated batches)
            self._steps_seen = self.global_step
            self.method.on_step_end(self.global_step, int(self.trainer.estimated_stepping_batches))

    def embed_training_set(self, encode=None):
        """(features, labels) of the whole clean training split on this device, every rank the same."""
        return embed_split(encode or self.method.features, self.method, self.train_set, self.norm, self.device,
                           self.channels_last)

    def on_train_epoch_start(self):
        # Our samplers draw their order lazily at the first batch, i.e. after this hook.
        sampler = self.trainer.train_dataloader.batch_sampler
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self.current_epoch)
        self.method.generator = seeded_generator(self.device, self.cfg["seed"], self.current_epoch, "epoch")
        stats = self.method.on_epoch_start(self.current_epoch, self.embed_training_set)
        if stats:
            self.epoch_history.append({"epoch": self.current_epoch, **stats})
            self.log_dict({f"epoch/{k}": float(v) for k, v in stats.items()}, on_step=False, on_epoch=True)
        reset = self.method.take_reinitialized()
        for optimizer in (self.trainer.optimizers if reset else []):
            for param in reset:
                optimizer.state.pop(param, None)

    def on_save_checkpoint(self, checkpoint):
        checkpoint["epoch_history"] = self.epoch_history

    def on_load_checkpoint(self, checkpoint):
        self.epoch_history = list(checkpoint.get("epoch_history", []))

    def configure_optimizers(self):
        t = self.cfg["trainer"]
        effective_batch = self.cfg["batch_size"] * t["accumulate_grad_batches"] * self.trainer.world_size
        groups = self.method.parameter_groups()
        optimizer = build_optimizer(groups, self.cfg["optimizer"], effective_batch)
        total = int(self.trainer.estimated_stepping_batches)
        steps_per_epoch = max(1, total // max(1, self.cfg["epochs"]))
        warmup = min(int(self.cfg["schedule"]["warmup_epochs"] * steps_per_epoch), total // 10)
        scheduled = functools.partial(warmup_cosine, total_steps=total, warmup_steps=warmup,
                                      final_ratio=self.cfg["schedule"]["final_lr_ratio"])
        # groups marked fixed_lr keep their rate: no warm-up, no decay (SimSiam's predictor)
        rules = [(lambda step: 1.0) if group.get("fixed_lr") else scheduled for group in optimizer.param_groups]
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, rules)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

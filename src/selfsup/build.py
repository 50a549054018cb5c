"""Building a method from a resolved config, and loading a pretrained one back from its
checkpoint without the training engine (what evaluation, the suites and other programs need)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .config import expand_hosted
from .data.views import Normalization
from .errors import SelfSupError
from .io import read_checkpoint
from .methods import METHODS, RunContext, method_class
from .models.backbones import IMAGE_BACKBONES, SERIES_BACKBONES, default_backbone
from .models.vit import VIT_BACKBONES
from .models.norm import BATCHNORM_POLICIES, apply_batchnorm_policy


def run_context(cfg: dict) -> RunContext:
    """The ``RunContext`` of a resolved config whose ``run`` facts the engine has filled."""
    data, run = cfg["data"], cfg["run"]
    return RunContext(train_size=run["train_size"], num_classes=data["num_classes"], image_size=data["image_size"],
                      channels=data["channels"], epochs=cfg["epochs"], batch_size=cfg["batch_size"],
                      batches_per_epoch=run["batches_per_epoch"], world_size=run["world_size"], seed=cfg["seed"],
                      accumulate_grad_batches=cfg.get("trainer", {}).get("accumulate_grad_batches", 1),
                      smallest_class=run.get("smallest_class", 0), mean=tuple(data.get("mean", ())),
                      std=tuple(data.get("std", ())), modality=data.get("modality", "image"))


def build_method(cfg: dict):
    """The method of a resolved config, with its backbone (fresh weights) and BatchNorm policy."""
    cls = method_class(cfg["method"])
    # a run written before the method gained an option: the value it trained with
    cfg["params"] = cls.completed_params(cfg["params"])
    expand_hosted(cfg)  # a config changed after it was resolved: hosted params as resolving gives them
    run = run_context(cfg)
    if cfg["backbone"]["name"] == "auto":
        cfg["backbone"]["name"] = default_backbone(run.modality)
    if run.modality not in cls.modalities:
        usable = ", ".join(name for name, c in METHODS.items() if run.modality in c.modalities)
        raise SelfSupError(f"{cls.name} learns from {' and '.join(cls.modalities)} data, but {cfg['dataset']} holds "
                           f"{run.modality} data; methods for it: {usable}")
    if (cfg["backbone"]["name"] in SERIES_BACKBONES) != (run.modality == "series"):
        kind = (f"series ({', '.join(SERIES_BACKBONES)})" if run.modality == "series"
                else f"images ({', '.join(IMAGE_BACKBONES)})")
        raise SelfSupError(f"backbone {cfg['backbone']['name']} does not fit {cfg['dataset']}: its data needs a backbone "
                           f"for {kind}; leave --backbone out (auto) or pick one of those")
    if cls.needs_tokens and cfg["backbone"]["name"] not in VIT_BACKBONES:
        raise SelfSupError(f"{cls.name} reads patch tokens, which backbone {cfg['backbone']['name']} does not make; "
                           f"use a vision transformer: --backbone {' | '.join(VIT_BACKBONES)}")
    if run.batch_size < cls.min_batch_size:
        raise SelfSupError(f"{cls.name} needs batches of at least {cls.min_batch_size} samples, got --batch-size "
                           f"{run.batch_size}")
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


def _weights_under(state_dict: dict, prefix: str) -> dict:
    """The entries of a checkpoint's ``state_dict`` under ``prefix``, with the prefix taken off."""
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def load_backbone(backbone: torch.nn.Module, path: str) -> None:
    """Copy the backbone weights of the selfsup checkpoint at ``path`` into ``backbone`` (the
    ``backbone.init`` option: fine-tuning and semi-supervised runs from a pretrained encoder)."""
    checkpoint, saved = read_checkpoint(path)
    try:
        backbone.load_state_dict(_weights_under(checkpoint["state_dict"], "method.backbone."))
    except RuntimeError as exc:
        raise SelfSupError(f"backbone.init: the backbone in {path} ({saved['backbone']['name']}, width "
                           f"{saved['backbone']['width']}, {saved['data']['channels']}-channel input) does not fit this "
                           f"run's; pretrain on data with the same channels and use the same --backbone and --width") from exc


def run_normalization(cfg: dict) -> Normalization:
    """The input normalisation a resolved config trains with."""
    return Normalization(tuple(cfg["data"]["mean"]), tuple(cfg["data"]["std"]))


def uses_channels_last(cfg: dict) -> bool:
    """Whether a run of ``cfg`` keeps its images and weights channels-last.  PyTorch 2.14's CPU
    backward of channels-last strided 1x1 convolutions (ResNet shortcuts) corrupts memory for
    odd batch sizes, so odd batches train in NCHW."""
    return (bool(cfg["trainer"]["channels_last"]) and cfg["batch_size"] % 2 == 0
            and cfg["data"].get("modality", "image") == "image")


@dataclass
class Pretrained:
    """A method loaded from a selfsup checkpoint, with its run's config and input normalisation."""

    method: torch.nn.Module
    cfg: dict
    norm: Normalization
    channels_last: bool

    def to(self, device) -> "Pretrained":
        self.method.to(device)
        return self


def load_pretrained(path: str | Path) -> Pretrained:
    """The method saved in a selfsup checkpoint, in eval mode on the CPU."""
    checkpoint, cfg = read_checkpoint(path)
    # build_method completes the saved params: options added since take the values the run trained
    # with, and a hosting method's checkpoint from before its hosted params were written out gets them
    method = build_method(cfg)
    try:
        method.load_state_dict(_weights_under(checkpoint["state_dict"], "method."))
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise SelfSupError(f"checkpoint {path} does not match its own configuration ({first}); "
                           "it was written by an incompatible version of selfsup") from exc
    channels_last = uses_channels_last(cfg)
    if channels_last:
        method.to(memory_format=torch.channels_last)
    return Pretrained(method.eval(), cfg, run_normalization(cfg), channels_last)

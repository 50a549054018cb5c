"""Fine-tuning on a fraction of the labels: the semi-supervised protocol of SimCLR (Chen et
al. 2020, Sec. 6 and B.5), after Zhai et al. (S4L) and Hénaff et al. (CPC v2).

The whole encoder (``Method.features``, so a method's input filter or patch grid is part of
it) and a new linear layer are trained with cross-entropy on a seeded, class-balanced subset
of the labelled training split, and tested in eval mode on the full test split.  The same
run from the method's random initialisation, on the same labels with the same schedule, is
the baseline that says what pretraining adds.  From the paper: Nesterov SGD, momentum 0.9, no
weight decay, lr 0.05·batch/256, random crop and flip, 60 epochs for 1% of the labels and 30
for 10% (our default: 60 below 10%, 30 from there).  Our choices for small data: batches of
the largest even number up to min(256, labelled images), the checkpoint's training precision
(``trainer.precision``; bf16-mixed trains 1.6x faster on our CPU), crops of 8-100% of the image (the supervised baseline's), cosine
decay per step after a linear warm-up over the first 10% of the steps, and gradient-norm clipping at 1 (without the
last two, fine-tuning SimSiam's and DeepCluster's 5-epoch Fashion-MNIST checkpoints on 1% of the labels diverged to
chance at the paper's rate; the from-scratch baseline gets the same recipe); full batches of an even size only (each epoch drops the remainder, a new
one every epoch): on the CPU, PyTorch 2.14's channels-last backward of strided 1x1
convolutions corrupts memory for odd batches.
"""
from __future__ import annotations

import functools

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ..data.augment import AugmentConfig
from ..data.datasets import balanced_subset_indices, batch_inputs, collate_batch
from ..data.views import Normalization, ViewSpec, augment_for, make_views
from ..rng import seeded_generator
from ..optim import build_optimizer, warmup_cosine
from ..precision import note_emulated_bf16
from ..errors import SelfSupError
from ..io import content_hash
from .features import classifier_top1, evaluated_network

FINETUNE_AUGMENT = AugmentConfig(crop_scale=(0.08, 1.0), jitter_p=0.0, grayscale_p=0.0, blur_p=0.0, solarize_p=0.0)


def label_subset(train, fraction: float | None = None, per_class: int | None = None, seed: int = 0):
    """The seeded class-balanced labelled subset: ``fraction`` of the split, or ``per_class``
    images of every class."""
    counts = np.bincount(train.labels.numpy(), minlength=train.num_classes)
    if per_class is not None:
        if per_class < 1:
            raise SelfSupError(f"--labels-per-class must be at least 1, got {per_class}")
        if per_class > counts.min():
            raise SelfSupError(f"--labels-per-class {per_class} is more than the {counts.min()} images of the "
                               "smallest class")
        n = per_class * train.num_classes
    else:
        if fraction is None or not 0 < fraction <= 1:
            raise SelfSupError(f"--label-fraction must be in (0, 1], got {fraction}")
        n = max(train.num_classes, round(fraction * len(train)))
    return train.subset(balanced_subset_indices(train.labels.numpy(), n, seed))


#: 2 since 2026-12-07: the pretrained network fine-tunes in train mode; results without a
#: ``revision`` (1) fine-tuned a loaded checkpoint in eval mode (frozen BatchNorm statistics)
#: while its from-scratch network trained in train mode
REVISION = 2


def default_epochs(labelled: int, total: int) -> int:
    """SimCLR's schedule: 60 epochs below 10% of the labels, 30 from there."""
    return 60 if labelled < 0.1 * total else 30


def scratch_fingerprint(method: nn.Module, labelled, test, norm: Normalization, epochs: int, seed: int,
                        device: str, channels_last: bool, precision: str, layer_decay: float = 1.0) -> str:
    """A sha256 of everything a fine-tuning run of ``method`` at its random initialisation
    depends on: its evaluated network (``evaluated_network``), the labelled and test data,
    normalisation, epochs, seed, device, memory format, precision and layer-wise decay (when
    it applies), so that checkpoints of methods that build the same network make the run once
    (``--baseline-cache``)."""
    where, backbone = evaluated_network(method)
    decay = [layer_decay] if layer_decay != 1.0 else []  # keys made before the option stay valid
    return content_hash([where, epochs, seed, device, channels_last, precision, list(norm.mean), list(norm.std),
                         *decay], backbone, *labelled.content_key(), *test.content_key())


def default_layer_decay(method: nn.Module) -> float:
    """0.75 for a backbone with layer ids (a ViT: MAE's value for ViT-L and ViT-H; its ViT-B and
    BEiT's base model use 0.65), 1 (none) for the others."""
    return 0.75 if hasattr(method.backbone, "layer_id") else 1.0


def layer_decay_groups(model: nn.Module, backbone: nn.Module, prefix: str, decay: float) -> list[dict]:
    """Parameter groups of ``model`` whose learning rate is scaled by ``decay`` ** (layers above):
    the backbone's parameters (named ``prefix`` + their name in it) by ``backbone.layer_id``, the
    rest (the classifier) at the full rate.  ``decay`` 1: one group."""
    if decay == 1.0:
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]
    top = len(backbone.layer_names) + 1  # the final norm: one above the last block
    scales: dict[float, list] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            depth = backbone.layer_id(name[len(prefix):]) if name.startswith(prefix) else top
            scales.setdefault(decay ** (top - depth), []).append(param)
    return [{"params": params, "lr_scale": scale} for scale, params in scales.items()]


class Finetuner(L.LightningModule):
    """``method.features`` and a linear classifier trained end to end on labelled batches."""

    def __init__(self, method: nn.Module, num_classes: int, norm: Normalization, lr: float, seed: int,
                 channels_last: bool = False, layer_decay: float = 1.0):
        super().__init__()
        self.method, self.norm, self.lr, self.seed, self.channels_last = method, norm, lr, seed, channels_last
        self.layer_decay = layer_decay
        self.classifier = nn.Linear(method.feature_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.method.features(x))

    def training_step(self, batch, batch_idx):
        generator = seeded_generator(self.device, self.seed, self.current_epoch, batch_idx, "finetune")
        inputs = batch_inputs(batch)
        spec = ViewSpec(augment_for(inputs, FINETUNE_AUGMENT))
        (view,) = make_views(inputs, [spec], self.norm, generator, self.channels_last)
        loss = F.cross_entropy(self(view), batch["label"])
        self.log("loss", loss.detach(), prog_bar=True, batch_size=view.shape[0])
        return loss

    def configure_optimizers(self):
        groups = layer_decay_groups(self, self.method.backbone, "method.backbone.", self.layer_decay)
        optimizer = build_optimizer(groups, {"name": "sgd", "lr": self.lr, "lr_scaling": "none", "weight_decay": 0.0,
                                             "momentum": 0.9, "nesterov": True}, batch_size=0)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, functools.partial(warmup_cosine, total_steps=total,
                                                                                  warmup_steps=total // 10))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def finetune(method: nn.Module, labelled, test, norm: Normalization, num_classes: int, epochs: int, seed: int = 0,
             device: str = "cpu", channels_last: bool = False, progress: bool = False, batch_size: int = 512,
             precision: str = "32-true", layer_decay: float = 1.0) -> float:
    """Fine-tune ``method`` (changed in place) on ``labelled`` at Lightning's ``precision``, the
    backbone's layers at learning rates decayed by ``layer_decay`` per layer from the top;
    test top-1 on ``test`` (in full precision)."""
    note_emulated_bf16(precision, device)
    L.seed_everything(seed, verbose=False)
    train_batch = min(256, len(labelled) - len(labelled) % 2)
    model = Finetuner(method, num_classes, norm, 0.05 * train_batch / 256, seed, channels_last, layer_decay)
    loader = DataLoader(labelled, batch_size=train_batch, shuffle=True, drop_last=True, collate_fn=collate_batch,
                        generator=torch.Generator().manual_seed(seed))
    trainer = L.Trainer(max_epochs=epochs, accelerator="gpu" if device == "cuda" else "cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=progress,
                        log_every_n_steps=1, gradient_clip_val=1.0, precision=precision)
    model.train()  # the papers fine-tune in train mode (BatchNorm statistics, dropout); Lightning keeps a loaded
    trainer.fit(model, loader)  # checkpoint's eval mode otherwise
    model.to(device)
    return classifier_top1(model, model, test, norm, device=device, channels_last=channels_last, batch_size=batch_size)

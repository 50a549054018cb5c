"""DINO: Caron et al., "Emerging Properties in Self-Supervised Vision Transformers", ICCV 2021.

A student (backbone + head) matches the output distribution of a teacher of the same shape,
an EMA of the student (momentum 0.996 rising to 1 on a cosine), on every pair of different
views: the teacher sees the 2 global crops, the student every crop (``dino``).  Collapse is
avoided by centring the teacher's scores (a centre kept as an EMA of their batch mean,
momentum 0.9, ``dino_center``) and sharpening them (τ_t 0.04 warmed up linearly over 30
epochs, reaching 0.07 at the 30th as the code's ``linspace``; τ_s 0.1).  From the paper and its
code: head a 3-layer MLP (hidden 2048, GELU, no BatchNorm; weights from a normal of std 0.02,
the code's ``trunc_normal_``, zero biases) to a 256-d bottleneck, L2-normalised, then a weight-normalised
linear layer with its norm fixed to 1 (``norm_last_layer``; false: the norms are trained from 1,
the code's advice for ViT-S), whose gradients are dropped during the first epoch; multi-crop of 2
global crops (scale 0.4-1, blur 1.0 / 0.1, solarisation 0 / 0.2 on the second) and 8 local
crops (scale 0.05-0.4, 96/224 of the side, blur 0.5); AdamW, lr 5e-4·batch/256, weight decay
0.04 rising to 0.4 along a cosine (``schedule.final_weight_decay``), 10 warm-up epochs; each
parameter's gradient norm clipped at 3.  Our choices: 4096 outputs (the paper's 65,536 are for
ImageNet; 4096 is solo-learn's CIFAR setting); we evaluate the student's backbone as for every
other method (the paper reports the teacher, an average of the student); no stochastic depth
(the code's ViT student: 0.1; ``backbone.drop_path``, the teacher never drops paths); on a ResNet we keep this
recipe, where the paper's ResNet-50 run used SGD at lr 0.03, weight decay 1e-4 throughout,
crops of 0.14-1 and 0.05-0.14 and τ_t 0.04 throughout.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from ..data.augment import AugmentConfig, views
from ..data.views import ViewSpec
from ..losses.distillation import dino, dino_center
from .base import Method
from .helpers import cosine_momentum, ema_update, encode_by_resolution, frozen_copy, small_crops

DINO_VIEWS = views(crop_scale=(0.4, 1.0), saturation=0.2, blur_p=1.0)


class WeightNormalizedLinear(nn.Module):
    """A linear layer without bias whose rows are ``weight``'s directions times ``norm`` (weight
    normalisation): the norms fixed to 1 unless ``trained_norm`` (then a parameter starting at 1)."""

    def __init__(self, in_dim: int, out_dim: int, trained_norm: bool = False):
        super().__init__()
        self.weight = nn.Linear(in_dim, out_dim, bias=False).weight
        self.norm = nn.Parameter(torch.ones(out_dim, 1)) if trained_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = F.normalize(self.weight, dim=1)
        return F.linear(x, weight if self.norm is None else weight * self.norm)


class DINOHead(nn.Module):
    """MLP to an L2-normalised bottleneck, then a weight-normalised linear layer (row norms fixed
    to 1 when ``norm_last_layer``); on [..., in_dim] (iBOT applies it to every token)."""

    def __init__(self, in_dim: int, hidden_dim: int, bottleneck_dim: int, out_dim: int, norm_last_layer: bool = True):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, hidden_dim),
                                 nn.GELU(), nn.Linear(hidden_dim, bottleneck_dim))
        for layer in self.mlp[::2]:
            nn.init.trunc_normal_(layer.weight, std=0.02)
            nn.init.zeros_(layer.bias)
        self.last_layer = WeightNormalizedLinear(bottleneck_dim, out_dim, trained_norm=not norm_last_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_layer(F.normalize(self.mlp(x), dim=-1))


class DINO(Method):
    """DINO (Caron et al. 2021): self-distillation from an EMA teacher with centring and sharpening."""

    name = "dino"
    revision = 3  # 2: weight decay 0.04 -> 0.4 along a cosine (the paper's), where revision 1 kept 0.04;
    # 3: the head's MLP initialised as the code's (truncated normal, std 0.02), τ_t reaching its final
    # value at the last warm-up epoch (revision 2: one epoch later)
    defaults = {"out_dim": 4096, "proj_hidden_dim": 2048, "bottleneck_dim": 256, "student_temperature": 0.1,
                "teacher_temperature": 0.04, "final_teacher_temperature": 0.07, "teacher_temperature_warmup_epochs": 30,
                "center_momentum": 0.9, "base_momentum": 0.996, "final_momentum": 1.0, "freeze_last_layer_epochs": 1,
                "norm_last_layer": True,
                "clip_grad": 3.0, "local_crops": 8, "local_crop_size": None, "local_crop_scale": [0.05, 0.4],
                "augment": DINO_VIEWS, "augment_second": {"blur_p": 0.1, "solarize_p": 0.2},
                "augment_local": {"blur_p": 0.5}}
    choices = {"norm_last_layer": (True, False)}
    limits = {"out_dim": (1, None), "proj_hidden_dim": (1, None), "bottleneck_dim": (1, None),
              "student_temperature": (1e-4, None), "teacher_temperature": (1e-4, None),
              "final_teacher_temperature": (1e-4, None), "teacher_temperature_warmup_epochs": (0, None),
              "center_momentum": (0, 1), "base_momentum": (0, 1), "final_momentum": (0, 1),
              "freeze_last_layer_epochs": (0, None), "clip_grad": (0, None), "local_crops": (0, None),
              "local_crop_size": (1, None)}

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        self.head = DINOHead(self.feature_dim, cfg["proj_hidden_dim"], cfg["bottleneck_dim"], cfg["out_dim"],
                             cfg["norm_last_layer"])
        self.teacher_backbone, self.teacher_head = frozen_copy(self.backbone), frozen_copy(self.head)
        self.register_buffer("center", torch.zeros(cfg["out_dim"]))
        first = AugmentConfig(**cfg["augment"])
        self.views = [ViewSpec(first), ViewSpec(dataclasses.replace(first, **cfg["augment_second"]))]
        self.views += small_crops(first, cfg["local_crops"], cfg["local_crop_scale"], cfg["local_crop_size"],
                                  run.image_size, **cfg["augment_local"])
        self.epoch = 0

    def on_epoch_start(self, epoch, embed):
        self.epoch = epoch

    def teacher_temperature(self) -> float:
        """τ_t of the current epoch: linear from ``teacher_temperature`` at the first epoch to
        the final value at the last warm-up epoch, then constant (the code's per-epoch ``linspace``)."""
        cfg, warmup = self.cfg, self.cfg["teacher_temperature_warmup_epochs"]
        progress = 1.0 if self.epoch >= warmup else self.epoch / (warmup - 1) if warmup > 1 else 0.0
        return cfg["teacher_temperature"] + progress * (cfg["final_teacher_temperature"] - cfg["teacher_temperature"])

    def training_step(self, batch, step):
        crops = batch["views"]
        student = self.head(encode_by_resolution(self.backbone, crops)).chunk(len(crops))
        with torch.no_grad():
            teacher = self.teacher_head(self.teacher_backbone(torch.cat(crops[:2]))).chunk(2)
        tau_t = self.teacher_temperature()
        loss = dino(student, teacher, self.center, self.cfg["student_temperature"], tau_t)
        self.center.copy_(dino_center(teacher, self.center, self.cfg["center_momentum"]))
        return {"loss": loss, "teacher_temperature": tau_t}

    def on_before_optimizer_step(self, epoch, step):
        if epoch < self.cfg["freeze_last_layer_epochs"]:
            for param in self.head.last_layer.parameters():
                param.grad = None
        if self.cfg["clip_grad"]:
            for param in self.parameters():
                if param.grad is not None:
                    torch.nn.utils.clip_grad_norm_(param, self.cfg["clip_grad"])

    def on_step_end(self, step, total_steps):
        momentum = cosine_momentum(step, total_steps, self.cfg["base_momentum"], self.cfg["final_momentum"])
        ema_update(self.teacher_backbone, self.backbone, momentum)
        ema_update(self.teacher_head, self.head, momentum)

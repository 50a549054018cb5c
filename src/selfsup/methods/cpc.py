"""Contrastive Predictive Coding on images and series: van den Oord, Li, Vinyals,
"Representation Learning with Contrastive Predictive Coding", 2018 (Sec. 3.1 audio, 3.2
images), and Hénaff et al. 2020 (v2).

Each augmented image is cut into a grid of overlapping square patches (the paper: 64-px
patches with stride 32 on 256-px images, a 7×7 grid; here the patch side scales as 2/7 of the
image — 8 px on 28-px images — the stride is half a patch, and the image is padded by half a
stride on every side, which gives the same 7×7 grid on 28 px).  The backbone (forced to its
small-image stem) encodes every patch to z; an autoregressive context network runs down the
grid, and its output c at row t predicts z at rows t + 1 .. t + k through one linear map per
step (k = ``prediction_steps``, default 2).  The paper's context (Sec. 3.2) is a PixelCNN-style
autoregressive model, with a convolutional row-GRU (PixelRNN) as an alternative that gave
similar results; ours (our choice) is either ``context: gru`` (the default), a GRU that runs down
each column separately, or ``masked-conv``, a 1×1 projection then 5 residual blocks of causal
3×3 convolutions (each sees the current and two previous rows), so that row t sees every row
up to t, as CPC v2's PixelCNN-style context of 5 residual blocks (the blocks' inner layout is
ours).  ``sampled_info_nce``
scores each prediction against its target patch and ``num_negatives`` targets drawn by the
method's generator from all patches of the batch (other positions and other images; shared by
the batch, our choice to keep the score matrix small), with the log-bilinear score z·W_k c of
the paper.
Evaluation features: the patch encodings, mean-pooled over the grid.
Optimiser (Adam lr 2e-4) from the paper; augmentation: random crops and flips, no colour
changes (our choice).

On series (a dataset of modality "series") the same method runs on the strided 1-D
convolutional encoder (``Conv1dEncoder``, backbone ``conv1d``): its encodings over time are
the rows of a one-column grid, so the context (GRU over time, the paper's audio setting) and
the k-steps-ahead InfoNCE with negatives drawn from every time step of the batch are the
image code unchanged.  Views: ``series_augment`` (mild crop, scaling and jitter, our choice;
the paper trains on raw audio).  Evaluation features: the encodings averaged over time.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from ..data.augment import AugmentConfig, crops_only
from ..data.series import SERIES_VIEWS
from ..data.views import ViewSpec
from ..errors import SelfSupError
from ..losses import sampled_info_nce
from ..models.backbones import Conv1dEncoder, build_backbone
from .base import Method
from .. import rng

CONTEXTS = ("gru", "masked-conv")


@dataclasses.dataclass(frozen=True)
class PatchGrid:
    """Square patches of ``size`` px every ``stride`` px after ``pad`` px of zero padding: ``grid`` × ``grid``."""

    size: int
    stride: int
    pad: int
    grid: int

    @classmethod
    def for_image(cls, image_size: int, size: int | None, stride: int | None) -> "PatchGrid":
        size = size or max(2, round(image_size * 2 / 7))
        stride = stride or max(1, size // 2)
        pad = stride // 2
        return cls(size, stride, pad, (image_size + 2 * pad - size) // stride + 1)

    def cut(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] → [B·grid·grid, C, size, size], row by row."""
        x = F.pad(x, (self.pad,) * 4)
        patches = x.unfold(2, self.size, self.stride).unfold(3, self.size, self.stride)[:, :, :self.grid, :self.grid]
        return patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, x.shape[1], self.size, self.size)


class CausalRowBlock(nn.Module):
    """A residual block whose output row t sees rows t−2..t of its input (all columns ±1)."""

    def __init__(self, dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.ReLU(), nn.ConstantPad2d((1, 1, 2, 0), 0.0), nn.Conv2d(dim, dim, 3), nn.ReLU(),
                                 nn.Conv2d(dim, dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class MaskedConvContext(nn.Module):
    """Causal context over rows: a 1×1 projection, then ``blocks`` causal residual blocks, so that
    output row t sees rows t − 2·blocks .. t of the grid (every row above on grids of up to
    2·blocks + 1 rows: 11 with CPC v2's 5)."""

    def __init__(self, in_dim: int, out_dim: int, blocks: int = 5):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(in_dim, out_dim, 1), *(CausalRowBlock(out_dim) for _ in range(blocks)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # [B, rows, cols, D] → [B, rows, cols, out]
        return self.net(z.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class GRUContext(nn.Module):
    """A GRU running down each column of the grid, each column separately."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.gru = nn.GRU(in_dim, out_dim, batch_first=True)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        b, rows, cols, d = z.shape
        out, _ = self.gru(z.transpose(1, 2).reshape(b * cols, rows, d))
        return out.reshape(b, cols, rows, -1).transpose(1, 2)


class CPC(Method):
    """CPC (van den Oord et al. 2018): patch encodings, a context down the rows, InfoNCE k rows ahead."""

    name = "cpc"
    modalities = ("image", "series")
    defaults = {"patch_size": None, "patch_stride": None, "context": "gru", "context_dim": None, "prediction_steps": 2,
                "num_negatives": 1024, "augment": crops_only(0.6),
                "series_augment": SERIES_VIEWS}
    limits = {"patch_size": (2, None), "patch_stride": (1, None), "context_dim": (1, None), "prediction_steps": (1, None),
              "num_negatives": (1, None)}
    choices = {"context": CONTEXTS}

    @classmethod
    def check_params(cls, params, run):
        super().check_params(params, run)
        if run.modality == "series":
            rows, what = Conv1dEncoder.output_length(run.image_size), f"encodings of a {run.image_size}-step series"
        else:
            if params["patch_size"] and params["patch_size"] > run.image_size:
                raise SelfSupError(f"params.patch_size={params['patch_size']} is larger than the {run.image_size}-px images")
            rows = PatchGrid.for_image(run.image_size, params["patch_size"], params["patch_stride"]).grid
            what = "rows of the patch grid"
        if params["prediction_steps"] >= rows:
            raise SelfSupError(f"params.prediction_steps={params['prediction_steps']} must be smaller than the "
                               f"{rows} {what}")

    @classmethod
    def build_backbone(cls, cfg, run):
        return build_backbone({**cfg["backbone"], "small_stem": True}, run.channels, run.image_size)

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        self.series = run.modality == "series"
        self.patches = None if self.series else PatchGrid.for_image(run.image_size, cfg["patch_size"], cfg["patch_stride"])
        context_dim = cfg["context_dim"] or self.feature_dim
        self.context = (GRUContext if cfg["context"] == "gru" else MaskedConvContext)(self.feature_dim, context_dim)
        self.predictors = nn.ModuleList(nn.Linear(context_dim, self.feature_dim, bias=False)
                                        for _ in range(cfg["prediction_steps"]))
        self.views = [ViewSpec(AugmentConfig(**cfg["augment"]), count=1)]  # on series: params.series_augment

    def _grid(self, flat: torch.Tensor, batch: int) -> torch.Tensor:
        return flat.reshape(batch, self.patches.grid, self.patches.grid, -1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Patch encodings z, [B, rows, cols, D] (series: [B, time, 1, D])."""
        if self.series:
            return self.backbone.forward_sequence(x).unsqueeze(2)
        return self._grid(self.backbone(self.patches.cut(x)), x.shape[0])

    def features(self, x):
        return self.encode(x).mean(dim=(1, 2))

    def feature_layers(self, x):
        if self.series:
            return self.backbone.forward_stages(x)
        return [self._grid(layer, x.shape[0]).mean(dim=(1, 2)) for layer in self.backbone.forward_stages(self.patches.cut(x))]

    def training_step(self, batch, step):
        (view,) = batch["views"]
        z = self.encode(view)
        c = self.context(z)
        losses = {}
        for k, predictor in enumerate(self.predictors, start=1):
            prediction = predictor(c[:, :-k]).reshape(-1, z.shape[-1])
            target = z[:, k:].reshape(-1, z.shape[-1])
            negatives = rng.randint(0, target.shape[0], self.cfg["num_negatives"], self.generator, device=target.device)
            losses[f"infonce_{k}"] = sampled_info_nce(prediction, target, negatives.to(target.device))
        loss = sum(losses.values()) / len(losses)
        return {"loss": loss, **{name: value.detach() for name, value in losses.items()}}

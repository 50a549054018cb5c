"""TS2Vec, Yue et al., "TS2Vec: Towards Universal Representation of Time Series", AAAI 2022.

Two overlapping random crops of each series (one crop length a batch, drawn from
[2^(temporal_unit+1), T], per-series offsets; TS2Vec's contextual consistency) go through the
dilated-convolution encoder (backbone ``dilated-conv``), each with its own timestamp mask
(each step's projection zeroed with probability ``mask_p`` 0.5); the representations of the
steps both crops share are contrasted with ``hierarchical_contrastive`` (α 0.5, instance-wise
and temporal at every max-pooling scale), after dropout (``dropout`` 0.1) on the
representations.  Series longer than ``max_train_length`` (3000)
are cut to a random window of that length first.  Instance features: the maximum over time of
the unmasked full series.  Defaults from the paper's code: AdamW lr 1e-3 (weight decay 0.01,
PyTorch's default there), constant rate, batch 8, about 200 steps on a small problem (the
suite sets the epochs per problem).  Our choice: no SWA average of the weights (the code
encodes with one; the paper does not mention it).
"""
from __future__ import annotations

import torch

from ..data.series import windows
from ..data.views import ViewSpec
from ..errors import SelfSupError
from ..losses.temporal import hierarchical_contrastive
from ..models.dilated_conv import DilatedConvEncoder
from .base import Method
from .. import rng


class TS2Vec(Method):
    """TS2Vec (Yue et al. 2022): hierarchical contrasting of overlapping, masked crops."""

    name = "ts2vec"
    modalities = ("series",)
    # one series: the temporal term alone (the instance term is 0), as our forecasting protocol trains
    # (timeseries/representation.py); the paper's code cuts a training part of at least 2 x 3000 steps
    # into sections of 3000, so that its instance term works, and uses one instance on shorter ones
    min_batch_size = 1
    defaults = {"alpha": 0.5, "temporal_unit": 0, "mask_p": 0.5, "dropout": 0.1, "max_train_length": 3000}
    limits = {"alpha": (0, 1), "temporal_unit": (0, None), "mask_p": (0, 1), "dropout": (0, 0.99),
              "max_train_length": (2, None)}

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        if not isinstance(backbone, DilatedConvEncoder):
            raise SelfSupError("ts2vec needs per-step representations with a timestamp mask: --backbone dilated-conv")
        if run.image_size < 2 ** (cfg["temporal_unit"] + 1):
            raise SelfSupError(f"ts2vec's crops need series of at least {2 ** (cfg['temporal_unit'] + 1)} steps "
                               f"(params.temporal_unit {cfg['temporal_unit']}); these have {run.image_size}")
        self.views = [ViewSpec(None)]

    def masked_encoding(self, x: torch.Tensor) -> torch.Tensor:
        """Per-step representations of a crop with a fresh timestamp mask, then dropout."""
        keep = rng.rand(x.shape[::2], self.generator, device=x.device) >= self.cfg["mask_p"]
        z = self.backbone.forward_sequence(x, keep)
        kept = rng.rand(z.shape, self.generator, device=z.device) >= self.cfg["dropout"]
        return z * kept / (1 - self.cfg["dropout"])

    def training_step(self, batch, step):
        x, g = batch["views"][0], self.generator
        b, length = x.shape[0], x.shape[-1]
        if length > self.cfg["max_train_length"]:
            start = rng.integers(0, length - self.cfg["max_train_length"], 1, g).expand(b)
            x, length = windows(x, rng.onto(start, x.device), self.cfg["max_train_length"]), self.cfg["max_train_length"]
        crop = int(rng.integers(2 ** (self.cfg["temporal_unit"] + 1), length, 1, g))
        left = int(rng.integers(0, length - crop, 1, g))
        right = left + crop
        extended_left, extended_right = int(rng.integers(0, left, 1, g)), int(rng.integers(right, length, 1, g))
        offsets = rng.onto(rng.integers(-extended_left, length - extended_right, b, g), x.device)
        first = self.masked_encoding(windows(x, offsets + extended_left, right - extended_left))[:, -crop:]
        second = self.masked_encoding(windows(x, offsets + left, extended_right - left))[:, :crop]
        loss = hierarchical_contrastive(first, second, self.cfg["alpha"], self.cfg["temporal_unit"])
        return {"loss": loss, "crop_length": torch.tensor(float(crop))}

"""T-Loss, Franceschi, Dieuleveut, Jaggi, "Unsupervised Scalable Representation Learning for
Multivariate Time Series", NeurIPS 2019.

Time-based sampling (Sec. 3, Algorithm 1): one batch draws a positive/negative length s_pos
in [1, L] and an anchor length in [s_pos, L] (L: the series length, or ``compared_length``
if shorter); each series gets an anchor window at a random start, a positive window of
s_pos steps inside its anchor, and ``negatives`` (K, 10) windows of s_pos steps at random
starts in series drawn at random; the causal dilated encoder (backbone ``causal-conv``)
embeds every window, and ``t_loss`` pulls anchor and positive together and pushes the
negatives away.  Defaults from the paper's code: Adam lr 1e-3, batch 10, 1500 steps
(the series-ssl suite sets the epochs), negative penalty 1.  Our choice: the negatives'
series are drawn (with replacement) from the batch rather than the whole training set, so
that a step sees only its batch.  Instance features: the encoder on the whole series.
"""
from __future__ import annotations

import torch

from ..data.series import windows
from ..data.views import ViewSpec
from ..errors import SelfSupError
from ..losses.temporal import t_loss
from ..models.dilated_conv import CausalConvEncoder
from .base import Method
from .. import rng


class TLoss(Method):
    """T-Loss (Franceschi et al. 2019): triplets of sub-series with time-based negative sampling."""

    name = "t-loss"
    modalities = ("series",)
    defaults = {"negatives": 10, "negative_penalty": 1.0, "compared_length": None}
    limits = {"negatives": (1, None), "negative_penalty": (0, None), "compared_length": (1, None)}

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        if not isinstance(backbone, CausalConvEncoder):
            raise SelfSupError("t-loss trains T-Loss's causal dilated encoder: --backbone causal-conv")
        self.views = [ViewSpec(None)]

    def training_step(self, batch, step):
        x, g = batch["views"][0], self.generator
        b, length = x.shape[0], x.shape[-1]
        length = min(length, self.cfg["compared_length"] or length)
        short = int(rng.integers(1, length, 1, g))
        anchor_length = int(rng.integers(short, length, 1, g))
        anchor_starts = rng.integers(0, length - anchor_length, b, g)
        positive_starts = anchor_starts + rng.integers(0, anchor_length - short, b, g)
        k = self.cfg["negatives"]
        negative_series = rng.integers(0, b - 1, k * b, g)
        negative_starts = rng.integers(0, length - short, k * b, g)
        device = x.device
        anchor = self.backbone(windows(x, rng.onto(anchor_starts, device), anchor_length))
        positive = self.backbone(windows(x, rng.onto(positive_starts, device), short))
        negatives = self.backbone(windows(x[rng.onto(negative_series, device)], rng.onto(negative_starts, device),
                                          short))
        loss = t_loss(anchor, positive, negatives.view(k, b, -1), self.cfg["negative_penalty"])
        return {"loss": loss, "anchor_length": torch.tensor(float(anchor_length))}

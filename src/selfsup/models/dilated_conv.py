"""Dilated convolutional encoders for series: TS2Vec's (``DilatedConvEncoder``) and T-Loss's
causal one (``CausalConvEncoder``, below).

TS2Vec's encoder (Yue et al., AAAI 2022, Sec. 3.2 and its reference code): a
linear projection of each time step's channels to ``width`` values (64), an optional
timestamp mask (masked steps set to 0 after the projection: TS2Vec's augmentation), then
``depth`` (10) residual blocks of two dilated convolutions (kernel 3, dilation 2^i in block i,
"same" padding, GELU before each convolution) and a last block to the output width (320),
with 1x1 projections on the residual where the width changes and on the last block (TS2Vec's
dropout on the output is the method's, drawn from its generator).  Every step keeps its own representation
(``forward_sequence``); an instance is represented by their maximum over time (``forward``,
TS2Vec's ``full_series`` encoding).  The output width is five times ``width``, as in the
paper (320 for 64).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def dilated_conv(conv: nn.Conv1d, x: torch.Tensor, causal: bool) -> torch.Tensor:
    """``conv`` (kernel 3, its own dilation d, no padding of its own) over ``x`` [B, C, T] with
    zero padding that keeps the length: 2d steps on the left (``causal``) or d on each side.
    Where d ≥ T every tap but one falls in the padding for every step, so only that tap is
    computed (the same numbers, without convolving thousands of zeros)."""
    d, length = conv.dilation[0], x.shape[-1]
    if d >= length:
        return F.conv1d(x, conv.weight[..., 2:] if causal else conv.weight[..., 1:2], conv.bias)
    return conv(F.pad(x, (2 * d, 0) if causal else (d, d)))


class DilatedBlock(nn.Module):
    """GELU → dilated conv → GELU → dilated conv, plus the (projected) input."""

    def __init__(self, in_channels: int, out_channels: int, dilation: int, project: bool):
        super().__init__()
        self.conv1 = nn.Conv1d(in_channels, out_channels, 3, dilation=dilation)
        self.conv2 = nn.Conv1d(out_channels, out_channels, 3, dilation=dilation)
        self.projector = nn.Conv1d(in_channels, out_channels, 1) if project or in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.projector is None else self.projector(x)
        h = dilated_conv(self.conv1, F.gelu(x), causal=False)
        return dilated_conv(self.conv2, F.gelu(h), causal=False) + residual


class DilatedConvEncoder(nn.Module):
    """TS2Vec's encoder (see the module docstring); ``forward_sequence`` → [B, T, 5 width]."""

    def __init__(self, in_channels: int = 1, width: int = 64, depth: int = 10):
        super().__init__()
        self.input_projection = nn.Linear(in_channels, width)
        widths = [width] * depth + [5 * width]
        self.blocks = nn.Sequential(*[DilatedBlock(widths[i - 1] if i else width, widths[i], 2 ** i, i == depth)
                                      for i in range(depth + 1)])
        self.feature_dim = 5 * width
        self.stage_dims = [width, 5 * width]
        self.layer_names = ["projection", "blocks"]

    def compile_regions(self) -> list[nn.Module]:
        """What ``trainer.compile`` compiles: the blocks."""
        return [self.blocks]

    def forward_sequence(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Series [B, C, T] → representations [B, T, feature_dim]; ``keep`` [B, T] (bool): the
        steps left unmasked (None: all)."""
        h = self.input_projection(x.transpose(1, 2))
        if keep is not None:
            h = h * keep.unsqueeze(-1).to(h.dtype)
        return self.blocks(h.transpose(1, 2)).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_sequence(x).amax(1)

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The projection's and the blocks' outputs, each maximised over time."""
        h = self.input_projection(x.transpose(1, 2))
        return [h.amax(1), self.blocks(h.transpose(1, 2)).amax(2)]


class CausalBlock(nn.Module):
    """T-Loss's block: two weight-normalised causal convolutions (left padding only), each
    followed by a LeakyReLU, plus the input (a 1x1 convolution where the width changes)."""

    def __init__(self, in_channels: int, out_channels: int, dilation: int):
        super().__init__()
        conv = lambda c: nn.utils.parametrizations.weight_norm(nn.Conv1d(c, out_channels, 3, dilation=dilation))
        self.conv1, self.conv2 = conv(in_channels), conv(out_channels)
        self.residual = nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(dilated_conv(self.conv1, x, causal=True))  # left padding: no step sees a later one
        h = F.leaky_relu(dilated_conv(self.conv2, h, causal=True))
        return h + (x if self.residual is None else self.residual(x))


class CausalConvEncoder(nn.Module):
    """T-Loss's encoder (Franceschi et al., NeurIPS 2019, Sec. 3 and its code): ``depth`` (10)
    causal blocks of ``width`` (40) channels with dilations 1, 2, 4, …, a last block to 4 x
    ``width`` (160, dilation 2^depth), global max pooling over time, and a linear map to 8 x
    ``width`` features (320).  ``forward_sequence`` gives the causal per-step outputs."""

    def __init__(self, in_channels: int = 1, width: int = 40, depth: int = 10):
        super().__init__()
        widths = [in_channels] + [width] * depth + [4 * width]
        self.blocks = nn.Sequential(*[CausalBlock(widths[i], widths[i + 1], 2 ** i) for i in range(depth + 1)])
        self.linear = nn.Linear(4 * width, 8 * width)
        self.feature_dim = 8 * width
        self.stage_dims = [4 * width, 8 * width]
        self.layer_names = ["blocks", "linear"]

    def compile_regions(self) -> list[nn.Module]:
        """What ``trainer.compile`` compiles: the blocks."""
        return [self.blocks]

    def forward_sequence(self, x: torch.Tensor) -> torch.Tensor:
        """Series [B, C, T] → causal per-step outputs of the blocks [B, T, 4 width]."""
        return self.blocks(x).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.blocks(x).amax(2))

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The blocks' output maximised over time, and the features."""
        pooled = self.blocks(x).amax(2)
        return [pooled, self.linear(pooled)]

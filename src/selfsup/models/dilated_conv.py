"""TS2Vec's encoder for series (Yue et al., AAAI 2022, Sec. 3.2 and its reference code): a
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


class DilatedBlock(nn.Module):
    """GELU → dilated conv → GELU → dilated conv, plus the (projected) input."""

    def __init__(self, in_channels: int, out_channels: int, dilation: int, project: bool):
        super().__init__()
        self.conv1 = nn.Conv1d(in_channels, out_channels, 3, padding=dilation, dilation=dilation)
        self.conv2 = nn.Conv1d(out_channels, out_channels, 3, padding=dilation, dilation=dilation)
        self.projector = nn.Conv1d(in_channels, out_channels, 1) if project or in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.projector is None else self.projector(x)
        return self.conv2(F.gelu(self.conv1(F.gelu(x)))) + residual


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

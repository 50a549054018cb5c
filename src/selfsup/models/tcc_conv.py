"""TS-TCC's encoder for series (Eldele et al., IJCAI 2021, and its code): three convolutional
blocks, each a convolution (no bias), BatchNorm, ReLU and max pooling by 2 (padding 1), the
first with kernel ``kernel_size`` (8 in the paper's HAR and Epilepsy settings), the other two
with kernel 8 (the paper's dropout of 0.35 after the first block is the method's, drawn from
its generator); 32, 64 and 128 channels (``width`` x 1,
2, 4 with ``width`` 32).  ``forward_sequence`` gives the per-step outputs [B, T', 4 width];
``forward`` their mean over time (our choice: the paper's classifier reads the flattened
outputs, whose size depends on the series length).
"""
from __future__ import annotations

from torch import nn

from .staged import StagedSeriesEncoder


def _block(in_channels: int, out_channels: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(in_channels, out_channels, kernel, padding=kernel // 2, bias=False),
                         nn.BatchNorm1d(out_channels), nn.ReLU(inplace=True), nn.MaxPool1d(2, 2, padding=1))


class TCCConvEncoder(StagedSeriesEncoder):
    """TS-TCC's three-block convolutional encoder (see the module docstring)."""

    def __init__(self, in_channels: int = 1, width: int = 32, kernel_size: int = 8):
        super().__init__()
        self.stages = nn.ModuleList([_block(in_channels, width, kernel_size), _block(width, 2 * width, 8),
                                     _block(2 * width, 4 * width, 8)])
        self.feature_dim = 4 * width
        self.stage_dims = [width, 2 * width, 4 * width]
        self.layer_names = ["conv1", "conv2", "conv3"]

"""Wide ResNets for 32-px images (Zagoruyko & Komodakis 2016), as the semi-supervised papers
train them (FixMatch and USB's classic protocol: WRN-28-2 on CIFAR-10, WRN-28-8 on CIFAR-100).

WRN-D-K: a 3x3 convolution to 16 channels, then three groups of (D − 4)/6 pre-activation basic
blocks of 16K, 32K and 64K channels (strides 1, 2, 2), a last BatchNorm and activation, and
global average pooling (64K features).  The semi-supervised papers' details: LeakyReLU of
slope 0.1, BatchNorm momentum 0.001 and ε 0.001, convolutions with biases, no dropout, Kaiming
initialisation (fan out); the first block of the first group activates its input before both
branches.  Where a block changes the width without that, FixMatch's code passes the raw input
to both branches (its first BatchNorm is computed and left unused); we do the same and build
no unused BatchNorm.
"""
from __future__ import annotations

import re

import torch
from torch import nn


def _norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, momentum=0.001, eps=0.001)


def _act() -> nn.LeakyReLU:
    return nn.LeakyReLU(0.1, inplace=True)


class WideBlock(nn.Module):
    """A pre-activation basic block (see the module docstring for the width-changing case)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, activate_input: bool):
        super().__init__()
        self.activate_input = activate_input or in_channels == out_channels
        self.pre = nn.Sequential(_norm(in_channels), _act()) if self.activate_input else nn.Identity()
        self.residual = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride, 1), _norm(out_channels), _act(),
            nn.Conv2d(out_channels, out_channels, 3, 1, 1))
        self.shortcut = None if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = self.pre(x)
        if self.shortcut is None:
            return x + self.residual(activated)
        return self.shortcut(activated) + self.residual(activated)


class WideResNet(nn.Module):
    """WRN-``depth``-``widen`` on ``in_channels``-channel images; returns pooled features."""

    def __init__(self, depth: int = 28, widen: int = 2, in_channels: int = 3):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"a wide ResNet's depth is 6n + 4, got {depth}")
        blocks = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.stem = nn.Conv2d(in_channels, widths[0], 3, 1, 1)
        self.groups = nn.ModuleList(
            nn.Sequential(*[WideBlock(widths[g] if b == 0 else widths[g + 1], widths[g + 1],
                                      (1 if g == 0 else 2) if b == 0 else 1, activate_input=g == 0 and b == 0)
                            for b in range(blocks)])
            for g in range(3))
        self.head = nn.Sequential(_norm(widths[3]), _act())
        self.feature_dim = widths[3]
        self.stage_dims = widths
        self.layer_names = ["conv1", "conv2", "conv3", "conv4"]  # the WRN paper's names of the stem and groups
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="leaky_relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def compile_regions(self) -> list[nn.Module]:
        """What ``trainer.compile`` compiles: the three groups."""
        return list(self.groups)

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Pooled features after the stem and each group (the last after the final activation)."""
        x = self.stem(x)
        pooled = [x.mean((2, 3))]
        for i, group in enumerate(self.groups):
            x = group(x)
            pooled.append((self.head(x) if i == 2 else x).mean((2, 3)))
        return pooled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for group in self.groups:
            x = group(x)
        return self.head(x).mean((2, 3))


WIDE_RESNETS = ("wrn-28-2", "wrn-28-8")


def wide_resnet(name: str, in_channels: int) -> WideResNet:
    """The WRN that ``name`` ("wrn-DEPTH-WIDEN") names."""
    depth, widen = map(int, re.fullmatch(r"wrn-(\d+)-(\d+)", name).groups())
    return WideResNet(depth, widen, in_channels)

"""The shape shared by the strided series encoders (CPC's ``Conv1dEncoder``, TS-TCC's
``TCCConvEncoder``): a list of stages over [B, C, T] series."""
from __future__ import annotations

import torch
from torch import nn


class StagedSeriesEncoder(nn.Module):
    """An encoder that is ``self.stages`` applied in turn: per-step outputs
    (``forward_sequence``), their mean over time (``forward``), and each stage's mean (probes)."""

    stages: nn.ModuleList

    def compile_regions(self) -> list[nn.Module]:
        """What ``trainer.compile`` compiles: each stage."""
        return list(self.stages)

    def forward_sequence(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, T] -> [B, T', feature_dim]."""
        for stage in self.stages:
            x = stage(x)
        return x.transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_sequence(x).mean(1)

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Features after each stage, averaged over time."""
        pooled = []
        for stage in self.stages:
            x = stage(x)
            pooled.append(x.mean(-1))
        return pooled

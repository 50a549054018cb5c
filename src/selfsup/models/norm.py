"""BatchNorm policies: synchronised, per-device, or split ("shuffle BN" on one device).

Contrastive methods can cheat through BatchNorm: when a positive pair is normalised with the
same batch statistics, the statistics leak which samples belong together.  MoCo (He et al.
2020, section 3.3) avoids this with *shuffling BN*, normalising each GPU's sub-batch with its
own statistics; SimCLR (Chen et al. 2020) instead synchronises the statistics over all devices.
``SplitBatchNorm2d``/``SplitBatchNorm1d`` emulate per-GPU statistics on a single device by cutting the batch into
``num_splits`` groups, as in the MoCo CIFAR demo and in Xiao's "SplitBatchNorm".

``apply_batchnorm_policy`` selects between them:

* ``"sync"``: left unchanged here; the trainer converts to ``nn.SyncBatchNorm`` on GPUs;
* ``"local"``: left unchanged; each device normalises with its own batch statistics;
* ``"split"``: every ``nn.BatchNorm2d`` and ``nn.BatchNorm1d`` becomes its split version.  The
  heads' BatchNorm1d is split too: a head normalised over the whole batch would let a query
  and its key share the statistics of one batch while the queued keys carry other batches'.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

BATCHNORM_POLICIES = ("sync", "local", "split")


class _SplitStatistics:
    """Training-mode forward shared by the split BatchNorm classes: ``num_splits`` consecutive
    groups of the batch are normalised with their own statistics, as if each group were on
    its own GPU (MoCo's shuffle BN, He et al. 2020).

    The groups are folded into the channel dimension, ``[N, C, *] -> [N/S, S*C, *]`` (group
    ``g`` becomes channels ``g*C .. (g+1)*C - 1``), so one ``F.batch_norm`` call does the work.
    The running statistics are kept with shape ``[C]``: after each step they are the mean over
    the groups of the per-group updated running statistics, which is the running statistic of
    the mean of the group statistics (the update is linear).  The state dict is therefore the
    same as the plain BatchNorm's.  ``momentum=None`` (cumulative moving average) is supported.
    In eval mode the module is exactly the plain BatchNorm.  Channels-last inputs give
    channels-last outputs.
    """

    def __init__(self, num_features: int, num_splits: int, **kwargs):
        super().__init__(num_features, **kwargs)
        if int(num_splits) < 1:
            raise ValueError(f"num_splits must be a positive integer, got {num_splits}")
        self.num_splits = int(num_splits)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", num_splits={self.num_splits}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.num_splits == 1:
            return super().forward(x)
        self._check_input_dim(x)
        s, (n, c, *rest) = self.num_splits, x.shape
        if n % s:
            raise ValueError(f"{type(self).__name__}: batch size {n} is not divisible by num_splits={s}")

        # Same momentum handling as nn.BatchNorm (momentum=None: cumulative average).
        factor = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked)

        running_mean = running_var = None
        if self.track_running_stats:
            running_mean = self.running_mean.repeat(s)
            running_var = self.running_var.repeat(s)
        weight = self.weight.repeat(s) if self.weight is not None else None
        bias = self.bias.repeat(s) if self.bias is not None else None

        channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        if channels_last:  # fold through the NHWC view so the layout is kept
            h, w = rest
            folded = (x.permute(0, 2, 3, 1).reshape(s, n // s, h, w, c)
                      .permute(1, 2, 3, 0, 4).reshape(n // s, h, w, s * c).permute(0, 3, 1, 2))
        else:
            folded = x.reshape(s, n // s, c, *rest).transpose(0, 1).reshape(n // s, s * c, *rest)

        out = F.batch_norm(folded, running_mean, running_var, weight, bias, True, factor, self.eps)

        if self.track_running_stats:
            with torch.no_grad():
                self.running_mean.copy_(running_mean.view(s, c).mean(0))
                self.running_var.copy_(running_var.view(s, c).mean(0))

        if channels_last:
            return (out.permute(0, 2, 3, 1).reshape(n // s, h, w, s, c)
                    .permute(3, 0, 1, 2, 4).reshape(n, h, w, c).permute(0, 3, 1, 2))
        return out.reshape(n // s, s, c, *rest).transpose(0, 1).reshape(n, c, *rest)


class SplitBatchNorm2d(_SplitStatistics, nn.BatchNorm2d):
    """``nn.BatchNorm2d`` with split statistics in training (see ``_SplitStatistics``)."""


class SplitBatchNorm1d(_SplitStatistics, nn.BatchNorm1d):
    """``nn.BatchNorm1d`` with split statistics in training (heads after the backbone)."""


SPLIT_CLASSES = {nn.BatchNorm1d: SplitBatchNorm1d, nn.BatchNorm2d: SplitBatchNorm2d}


def _to_split(bn: nn.modules.batchnorm._BatchNorm, splits: int) -> _SplitStatistics:
    """The split version of ``bn`` with its settings, parameters, buffers and mode."""
    ref = bn.running_mean if bn.running_mean is not None else bn.weight
    factory = {} if ref is None else {"device": ref.device, "dtype": ref.dtype}
    new = SPLIT_CLASSES[type(bn)](bn.num_features, splits, eps=bn.eps, momentum=bn.momentum,
                           affine=bn.affine, track_running_stats=bn.track_running_stats,
                           **factory)
    with torch.no_grad():
        if bn.affine:
            new.weight.copy_(bn.weight)
            new.bias.copy_(bn.bias)
            new.weight.requires_grad_(bn.weight.requires_grad)
            new.bias.requires_grad_(bn.bias.requires_grad)
        if bn.track_running_stats:
            new.running_mean.copy_(bn.running_mean)
            new.running_var.copy_(bn.running_var)
            new.num_batches_tracked.copy_(bn.num_batches_tracked)
    new.train(bn.training)
    return new


def apply_batchnorm_policy(module: nn.Module, policy: str, splits: int = 8) -> nn.Module:
    """Apply a BatchNorm policy (``BATCHNORM_POLICIES``) to ``module`` in place and return it.

    ``"sync"`` and ``"local"`` leave the module unchanged (synchronisation is done by the trainer
    on GPUs).  ``"split"`` replaces every ``nn.BatchNorm2d`` with a ``SplitBatchNorm2d`` of
    ``splits`` groups, keeping its state; ``BatchNorm1d`` is untouched.  If ``module`` itself is
    a ``BatchNorm2d`` the replacement is returned.
    """
    if policy not in BATCHNORM_POLICIES:
        raise ValueError(f"unknown batchnorm policy {policy!r}; choose one of "
                         f"{', '.join(BATCHNORM_POLICIES)}")
    if policy != "split":
        return module
    if type(module) in SPLIT_CLASSES:
        return _to_split(module, splits)
    for name, child in module.named_children():
        converted = apply_batchnorm_policy(child, policy, splits)
        if converted is not child:
            setattr(module, name, converted)
    return module

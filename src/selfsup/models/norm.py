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
from torch import nn

BATCHNORM_POLICIES = ("sync", "local", "split")


def memory_layout(x: torch.Tensor) -> torch.memory_format:
    """channels_last for a channels-last image batch (one not also contiguous, as a 1x1 map is), else
    contiguous_format: the layout split BatchNorm and the strided shortcut keep."""
    channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return torch.channels_last if channels_last else torch.contiguous_format


def _groups(x: torch.Tensor, splits: int, layout: torch.memory_format) -> torch.Tensor:
    """``x`` ([N, C, *], contiguous in ``layout``) viewed, without a copy, as ``[S, A, C, B]``:
    group ``g`` is batch rows ``g*N/S .. (g+1)*N/S - 1``, and its statistics are over dims 1 and
    3 (channels-last images: ``[S, N/S*H*W, C, 1]``; otherwise ``[S, N/S, C, positions]``)."""
    if layout == torch.channels_last:
        return x.permute(0, 2, 3, 1).view(splits, -1, x.shape[1], 1)
    return x.view(splits, x.shape[0] // splits, x.shape[1], -1)


class _GroupBatchNorm(torch.autograd.Function):
    """Batch normalisation of each of ``splits`` groups of the batch with its own statistics and
    the shared affine ``weight`` and ``bias``.  Works on ``_groups`` views in the input's own
    memory layout, so neither pass permutes activations, and the output is a fresh tensor in the
    input's layout (an in-place ReLU after it needs no copies).  Statistics and gradients are
    computed in float32 for half-precision inputs, as ``F.batch_norm`` does under autocast.
    Returns the output and the groups' means and unbiased variances (for the running statistics),
    shape ``[S, C]``.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, eps, splits):
        layout = memory_layout(x)
        wide = x.contiguous(memory_format=layout)
        wide = _groups(wide.float() if wide.dtype in (torch.float16, torch.bfloat16) else wide, splits, layout)
        count = wide.numel() // (wide.shape[0] * wide.shape[2])
        mean = wide.mean(dim=(1, 3), keepdim=True)
        centred = wide - mean
        var = centred.square().sum(dim=(1, 3), keepdim=True) / count
        rstd = (var + eps).rsqrt()
        scale = rstd if weight is None else rstd * weight.view(1, 1, -1, 1)
        shift = torch.zeros_like(scale) if bias is None else bias.view(1, 1, -1, 1).expand_as(scale)
        out = torch.empty_like(x, memory_format=layout)
        torch.addcmul(shift, centred, scale, out=_groups(out, splits, layout))
        ctx.save_for_backward(centred, rstd, scale)
        ctx.has_weight, ctx.has_bias, ctx.splits, ctx.layout = weight is not None, bias is not None, splits, layout
        ctx.count = count
        unbiased = var * (count / max(count - 1, 1))
        ctx.mark_non_differentiable(mean, unbiased)
        return out, mean.flatten(1), unbiased.flatten(1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out, _grad_mean, _grad_var):
        centred, rstd, scale = ctx.saved_tensors
        grad = _groups(grad_out.contiguous(memory_format=ctx.layout), ctx.splits, ctx.layout).to(centred.dtype)
        count = ctx.count
        grad_sum = grad.sum(dim=(1, 3), keepdim=True)
        grad_dot_xhat = rstd * (grad * centred).sum(dim=(1, 3), keepdim=True)
        # d x = scale * (g - mean(g) - xhat * mean(g * xhat)), with xhat = centred * rstd
        grad_x = torch.empty_like(grad_out, memory_format=ctx.layout)
        torch.addcmul(torch.addcmul(-scale * grad_sum / count, centred, -scale * rstd * grad_dot_xhat / count),
                      grad, scale, out=_groups(grad_x, ctx.splits, ctx.layout))
        grad_weight = grad_dot_xhat.sum(0).flatten() if ctx.has_weight else None
        grad_bias = grad_sum.sum(0).flatten() if ctx.has_bias else None
        return grad_x, grad_weight, grad_bias, None, None


class _SplitStatistics:
    """Training-mode forward shared by the split BatchNorm classes: ``num_splits`` consecutive
    groups of the batch are normalised with their own statistics, as if each group were on
    its own GPU (MoCo's shuffle BN, He et al. 2020), by ``_GroupBatchNorm``.

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
        if x.shape[0] % self.num_splits:
            raise ValueError(f"{type(self).__name__}: batch size {x.shape[0]} is not divisible by "
                             f"num_splits={self.num_splits}")
        out, mean, unbiased_var = _GroupBatchNorm.apply(x, self.weight, self.bias, self.eps, self.num_splits)
        if self.track_running_stats:
            self._update_running_statistics(mean, unbiased_var)
        return out

    @torch.no_grad()
    def _update_running_statistics(self, mean: torch.Tensor, unbiased_var: torch.Tensor) -> None:
        """nn.BatchNorm's update (momentum, or a cumulative average when it is None) with the mean
        over the groups of their statistics."""
        self.num_batches_tracked.add_(1)
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean.lerp_(mean.mean(0).to(self.running_mean.dtype), factor)
        self.running_var.lerp_(unbiased_var.mean(0).to(self.running_var.dtype), factor)


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
    on GPUs).  ``"split"`` replaces every ``nn.BatchNorm2d`` and ``nn.BatchNorm1d`` with its split
    version of ``splits`` groups, keeping its state.  If ``module`` itself is one of them, the
    replacement is returned.
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

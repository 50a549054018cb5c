"""Gathering tensors from every DDP rank while keeping the autograd graph.

``torch.distributed.nn.functional.all_gather`` sends the gradient of each gathered slice
back to the rank that produced it (summed over ranks), so a loss computed against the
global batch on every rank gives, after DDP's gradient averaging, the gradient of the
single-process loss on the concatenated batch.
"""
from __future__ import annotations

import torch
import torch.distributed as dist


def world_info() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside an initialised process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose backward makes the incoming gradient contiguous: the backward of
    ``all_gather`` (a reduce-scatter) gives wrong sums for strided gradients, which a
    transpose or reshape after the gather produces."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad.contiguous()


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from all ranks along dim 0, differentiably; identity on one process."""
    _, world = world_info()
    if world == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat([_ContiguousGrad.apply(part) for part in all_gather(x.contiguous())], dim=0)


def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from all ranks along dim 0 in rank order, without autograd (every
    rank must pass the same shape); ``x.detach()`` on one process."""
    x = x.detach()
    _, world = world_info()
    if world == 1:
        return x
    x = x.contiguous()
    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x)
    return torch.cat(parts, dim=0)


def all_reduce(x: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """``op`` ("sum" or "max", element-wise) of ``x`` over all ranks, as a new tensor without
    grad; a detached copy on one process."""
    out = x.detach().clone()
    _, world = world_info()
    if world > 1:
        dist.all_reduce(out, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op])
    return out


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum of ``x`` over all ranks (``all_reduce(x, "sum")``)."""
    return all_reduce(x, "sum")

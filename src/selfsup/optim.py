"""Optimisers and learning-rate schedules.

LARS (You et al., "Large Batch Training of Convolutional Networks", 2017) as used by SimCLR
and BYOL: SGD with momentum whose per-layer step is scaled by the trust ratio
η·‖w‖/‖∇w + λw‖; parameter groups marked ``lars_exclude`` (biases, BatchNorm) skip both the
adaptation and weight decay.  With ``trust_clip`` the ratio is divided by the group's current
learning rate and capped at 1 (the "clip" mode of the LARS wrapper EMP-SSL's code uses), so a
layer's step is min(η·‖w‖/‖∇w + λw‖, lr) times its update: the trust coefficient sets the step
itself, and the learning rate only caps it.  PyTorch ships no LARS, hence this one.
"""
from __future__ import annotations

import math

import torch

from .errors import SelfSupError


class LARS(torch.optim.Optimizer):
    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 trust_coefficient: float = 0.001, nesterov: bool = False, trust_clip: bool = False):
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, trust_coefficient=trust_coefficient,
                        nesterov=nesterov, trust_clip=trust_clip, lars_exclude=False)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                update = p.grad
                if not group["lars_exclude"]:
                    update = update.add(p, alpha=group["weight_decay"])
                    weight_norm, update_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(update)
                    trust = torch.where((weight_norm > 0) & (update_norm > 0),
                                        group["trust_coefficient"] * weight_norm / update_norm,
                                        torch.ones_like(weight_norm))
                    if group["trust_clip"] and group["lr"] > 0:
                        trust = (trust / group["lr"]).clamp(max=1.0)
                    update = update.mul(trust)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = update.clone()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(update)
                buf = state["momentum_buffer"]
                if group["nesterov"]:
                    update = update.add(buf, alpha=group["momentum"])
                else:
                    update = buf
                p.add_(update, alpha=-group["lr"])
        return loss


def scaled_lr(lr: float, rule: str, batch_size: int) -> float:
    """``linear``: lr · batch/256 (Goyal et al., SimCLR's main rule); ``sqrt``: lr · √batch
    (SimCLR appendix B.1, better for small batches and short runs, with lr 0.075);
    ``none``: lr as given."""
    if rule == "linear":
        return lr * batch_size / 256
    if rule == "sqrt":
        return lr * math.sqrt(batch_size)
    if rule == "none":
        return lr
    raise SelfSupError(f"optimizer.lr_scaling must be linear, sqrt or none, not '{rule}'")


def build_optimizer(groups: list[dict], cfg: dict, batch_size: int) -> torch.optim.Optimizer:
    """The optimiser named in ``cfg`` over ``groups``, at the learning rate ``scaled_lr`` gives.
    Groups marked ``bias_and_norm`` (``split_decay``) get no weight decay unless
    ``cfg["decay_biases_and_norms"]`` (the reference code of MoCo, SimSiam, InstDisc,
    DeepCluster, SupCon and TS-TCC decays every parameter)."""
    name = cfg["name"]
    lr = scaled_lr(cfg["lr"], cfg["lr_scaling"], batch_size)
    wd = cfg["weight_decay"]
    for group in groups:
        if "lr_scale" in group:
            group["lr"] = lr * group.pop("lr_scale")
        if group.pop("bias_and_norm", False) and cfg.get("decay_biases_and_norms"):
            group.pop("weight_decay", None)
    plain = [{k: v for k, v in g.items() if k != "lars_exclude"} for g in groups]
    if name == "sgd":
        return torch.optim.SGD(plain, lr=lr, momentum=cfg["momentum"], weight_decay=wd, nesterov=cfg["nesterov"])
    betas = tuple(cfg.get("betas", (0.9, 0.999)))  # runs written before the option: PyTorch's default
    if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas):
        raise SelfSupError(f"optimizer.betas must be two numbers in [0, 1), got {list(betas)!r}")
    if name == "adam":
        return torch.optim.Adam(plain, lr=lr, weight_decay=wd, betas=betas)
    if name == "adamw":
        return torch.optim.AdamW(plain, lr=lr, weight_decay=wd, betas=betas)
    if name == "lars":
        return LARS(groups, lr=lr, momentum=cfg["momentum"], weight_decay=wd,
                    trust_coefficient=cfg["trust_coefficient"], nesterov=cfg["nesterov"],
                    trust_clip=cfg.get("trust_clip", False))  # runs written before the option: no clip
    raise SelfSupError(f"unknown optimizer '{name}'; choose sgd, adam, adamw or lars")


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, final_ratio: float = 0.0,
                  shape: str = "cosine") -> float:
    """Learning-rate multiplier: linear warm-up from ~0 to 1, then cosine decay to ``final_ratio``
    (``shape`` "cosine"), or FixMatch's cos(7πk/16K) over the steps after the warm-up, which
    ends at cos(7π/16) ≈ 0.195 (``shape`` "fixmatch"; ``final_ratio`` does not apply)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min((step - warmup_steps) / max(1, total_steps - warmup_steps), 1.0)
    if shape == "fixmatch":
        return math.cos(7 * math.pi * progress / 16)
    return final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class StepSchedule(torch.optim.lr_scheduler.LambdaLR):
    """``LambdaLR`` (one rule per group, stepped after every optimiser step) that also sets each
    group's weight decay to its initial value times ``decay_factor(step)``, as DINO, iBOT, MSN
    and I-JEPA raise theirs along a cosine from 0.04 to 0.4 (``schedule.final_weight_decay``).
    Groups without weight decay keep none; the factor is recomputed from the step count, which
    the checkpoint holds, so a resumed run continues the same curve."""

    def __init__(self, optimizer: torch.optim.Optimizer, lr_lambda, decay_factor):
        for group in optimizer.param_groups:
            group.setdefault("initial_weight_decay", group["weight_decay"])
        self.decay_factor = decay_factor
        super().__init__(optimizer, lr_lambda)

    def step(self):
        super().step()
        factor = self.decay_factor(self.last_epoch)
        for group in self.optimizer.param_groups:
            group["weight_decay"] = group["initial_weight_decay"] * factor

    def state_dict(self) -> dict:
        return {k: v for k, v in super().state_dict().items() if k != "decay_factor"}

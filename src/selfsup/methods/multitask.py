"""Multi-task self-supervised learning with hard parameter sharing: Caruana, "Multitask
Learning", Machine Learning 1997, and the survey's multi-task pretext learning (Doersch &
Zisserman 2017 combine several pretext tasks on one trunk).

One backbone (the shared trunk) and one head per task: each task in ``tasks`` is a
registered method (a pretext task, or a joint-embedding method such as SimCLR: rotation
prediction beside a contrastive loss is E-SSL's combination, Dangovski et al. 2022) built
around the *same* backbone object with its own head, its own views and its own targets; the loss is Σ w_i·L_i with fixed weights (``weights``, default
all 1), or, with ``uncertainty: true``, the learned uncertainty weighting of Kendall, Gal &
Cipolla (CVPR 2018): Σ exp(−s_i)·L_i + s_i with one learned log-variance s_i per task.
``supervised`` may be added as an auxiliary task when the data has labels.  Each task's
params are its packaged defaults (configs/TASK.yaml) with ``task_params.TASK`` laid over
them, written out in full into ``task_params`` when the config is resolved.  The tasks share the method generator the engine seeds every step, so a resumed run
draws the same permutations, masks and warps.  Tasks that need their own data loader
(exemplar) cannot join: the trunk sees one stream of batches.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import SelfSupError
from .base import Method



class HostsMethods:
    """Mixin for a method that trains other registered methods around its own backbone
    (multitask's tasks, FROST's self-supervised term), listed by ``hosted()``: they share the
    generator the engine seeds every step, and their epoch, gradient and step hooks run after
    the host's own (epoch statistics under ``NAME_``).  They see the host's batches and
    optimiser groups, so a method with its own data loader or parameter groups cannot be hosted
    (``check_hosted``)."""

    def hosted(self) -> dict:
        raise NotImplementedError

    @classmethod
    def hosted_params(cls, name: str, params: dict) -> dict:
        """Method ``name``'s params as resolved into ``params["task_params"]`` (its class defaults
        under them, for what a method gained after the config was written)."""
        from . import method_class

        return {**method_class(name).defaults, **params["task_params"].get(name, {})}

    @classmethod
    def check_hosted(cls, name: str, params: dict, run) -> None:
        """Refuse method ``name`` if it needs its own loader or parameter groups, then check its
        params as its own run would."""
        from . import method_class

        hosted = method_class(name)
        own = [hook.replace("_", " ") for hook in ("train_batches", "parameter_groups")
               if getattr(hosted, hook) is not getattr(Method, hook)]
        if own:
            raise SelfSupError(f"{cls.name} cannot train {name} beside its own objective: {name} needs its own "
                               f"{' and '.join(own)}; choose another method")
        hosted.check_params(cls.hosted_params(name, params), run)

    @property
    def generator(self) -> torch.Generator:
        return self._generator

    @generator.setter
    def generator(self, generator: torch.Generator) -> None:
        self._generator = generator
        for method in self.hosted().values():
            method.generator = generator

    def on_epoch_start(self, epoch, embed):
        stats = super().on_epoch_start(epoch, embed) or {}
        for name, method in self.hosted().items():
            stats.update({f"{name}_{key}": value for key, value in (method.on_epoch_start(epoch, embed) or {}).items()})
        return stats or None

    def on_before_optimizer_step(self, epoch, step):
        super().on_before_optimizer_step(epoch, step)
        for method in self.hosted().values():
            method.on_before_optimizer_step(epoch, step)

    def on_step_end(self, step, total_steps):
        super().on_step_end(step, total_steps)
        for method in self.hosted().values():
            method.on_step_end(step, total_steps)


def task_choices() -> list[str]:
    """The registered image methods a multitask trunk can train beside others: neither
    semi-supervised nor hosting methods itself (whether one needs its own loader or parameter
    groups, which also rules it out, ``HostsMethods.check_hosted`` says)."""
    from . import METHODS

    return [name for name, cls in METHODS.items() if "image" in cls.modalities and not cls.semi_supervised
            and not issubclass(cls, HostsMethods)]


class Multitask(HostsMethods, Method):
    """Multitask (Caruana 1997): one shared trunk, one head per pretext task, weighted sum of their losses."""

    name = "multitask"
    revision = 2  # 2: its default tasks include jigsaw, whose permutation set changed
    defaults = {"tasks": ["rotation", "jigsaw"], "weights": None, "uncertainty": False, "task_params": {}}

    @classmethod
    def hosted_methods(cls, params):
        tasks = params.get("tasks")
        return [task for task in tasks if task in task_choices()] if isinstance(tasks, list) else []

    @classmethod
    def check_params(cls, params, run):
        super().check_params(params, run)
        tasks = params["tasks"]
        if not isinstance(tasks, list) or len(tasks) < 1 or len(set(tasks)) != len(tasks):
            raise SelfSupError(f"params.tasks of multitask must be a list of distinct task names, got {tasks!r}")
        for task in tasks:
            if task not in task_choices():
                raise SelfSupError(f"params.tasks of multitask: unknown task {task!r}; choose from "
                                   f"{', '.join(task_choices())}")
            cls.check_hosted(task, params, run)
        unknown = set(params["task_params"]) - set(tasks)
        if unknown:
            raise SelfSupError(f"params.task_params names tasks that are not in params.tasks: {', '.join(sorted(unknown))}")
        weights = params["weights"]
        if weights is not None and (len(weights) != len(tasks) or any(w < 0 for w in weights)):
            raise SelfSupError(f"params.weights must give one non-negative weight per task ({len(tasks)}), got {weights!r}")

    def __init__(self, backbone, cfg, run):
        from . import method_class

        super().__init__(backbone, cfg, run)
        self.tasks = nn.ModuleDict({task: method_class(task)(backbone, self.hosted_params(task, cfg), run)
                                    for task in cfg["tasks"]})
        self.weights = cfg["weights"] or [1.0] * len(self.tasks)
        if cfg["uncertainty"]:
            self.log_variances = nn.Parameter(torch.zeros(len(self.tasks)))
        self.generator = self.generator  # hand the generator to the tasks

    def hosted(self):
        return dict(getattr(self, "tasks", {}))

    def prepare_batch(self, batch, make_views):
        batch["tasks"] = {name: task.prepare_batch(dict(batch), make_views) for name, task in self.tasks.items()}
        return batch

    def training_step(self, batch, step):
        losses = {name: task.training_step(batch["tasks"][name], step)["loss"] for name, task in self.tasks.items()}
        if self.cfg["uncertainty"]:
            total = sum(torch.exp(-s) * loss + s for s, loss in zip(self.log_variances, losses.values()))
        else:
            total = sum(w * loss for w, loss in zip(self.weights, losses.values()))
        return {"loss": total, **{f"{name}_loss": loss.detach() for name, loss in losses.items()}}

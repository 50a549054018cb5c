"""FROST, Liu & Smith, "FROST: Faster and more Robust One-shot Semi-supervised Training"
(2020): FixMatch plus ``lambda_ss`` times a registered
self-supervised method's loss on the unlabelled images (``self_supervised``, SimCLR by
default, sharing the backbone and hosted with its own hooks as multitask's tasks are; its
params are its packaged defaults with ``task_params.NAME`` laid over them) plus self-training rounds with
class balancing (``balance: data`` by default); ``--init`` starts it from a pretrained
checkpoint.
"""
from __future__ import annotations

from ...errors import SelfSupError
from ..multitask import HostsMethods
from .fixmatch import FixMatch
from .self_training import PoolRelabelling

class Frost(HostsMethods, PoolRelabelling, FixMatch):
    """FROST (Liu & Smith 2020): FixMatch + a self-supervised term + class-balanced self-training."""

    name = "frost"
    revision = 2  # 2: FixMatch's Equalize fix and its hosted method's step and epoch hooks (both 2026-11-30)
    defaults = {**FixMatch.defaults, "iterations": 3, "balance": "data", "self_supervised": "simclr",
                "lambda_ss": 1.0, "task_params": {}}
    limits = {**FixMatch.limits, "iterations": (1, None), "lambda_ss": (0, None)}

    @classmethod
    def check_params(cls, params, run):
        super().check_params(params, run)
        from .. import METHODS

        name = params["self_supervised"]
        if name not in METHODS or METHODS[name].semi_supervised or METHODS[name].supervised:
            raise SelfSupError(f"params.self_supervised must name a self-supervised method, not {name!r}")
        cls.check_hosted(name, params, run)

    @classmethod
    def hosted_methods(cls, params):
        from .. import METHODS

        return [params["self_supervised"]] if params.get("self_supervised") in METHODS else []

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        from .. import method_class

        name = cfg["self_supervised"]
        self.self_supervised = method_class(name)(self.backbone, self.hosted_params(name, cfg), run)
        self.generator = self.generator  # hand the generator to the self-supervised method

    def hosted(self):
        return {"self_supervised": self.self_supervised} if "self_supervised" in self._modules else {}

    def prepare_batch(self, batch, make_views):
        batch = super().prepare_batch(batch, make_views)
        unlabelled = batch["unlabeled"]
        batch["self_supervised"] = self.self_supervised.prepare_batch(
            {k: unlabelled[k] for k in ("image", "index", "label")}, make_views)
        return batch

    def extra_terms(self, batch, weak_logits, strong_logits, weights, step):
        terms = {"self_supervised": self.cfg["lambda_ss"]
                 * self.self_supervised.training_step(batch["self_supervised"], step)["loss"]}
        terms["self_training"] = self.assigned_loss(weak_logits, batch["unlabeled"]["index"])
        return terms

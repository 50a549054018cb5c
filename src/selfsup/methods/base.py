"""The ``Method`` interface every self-supervised method implements.

A method owns its networks and its per-step objective, never a training loop.  The engine
(``selfsup.engine.module``) calls, in this order:

* ``on_epoch_start(epoch, embed)`` before each epoch; ``embed(encode=None)`` returns
  ``(features, labels)`` of the *whole* training split (unsharded, clean, normalised, in
  dataset order, computed in eval mode on the training device; under DDP each rank embeds a
  shard and the shards are gathered, so every rank holds the same tensor).  ``self.generator``
  is then seeded by (seed, epoch) only, identical on every rank.
* per batch: ``prepare_batch(batch, make_views)`` (default: the views of ``run_views()`` from
  ``batch["image"]`` or ``batch["series"]``) and ``training_step(batch, step)`` → ``{"loss": tensor, **scalars}``;
  ``self.generator`` is seeded by (seed, epoch, batch, rank), so random numbers the method
  draws itself (noise samples, permutations, masks, shuffles) repeat exactly on resume.
* ``on_before_optimizer_step(epoch, step)`` after backward (and DDP's all-reduce), before the
  optimiser step: gradient surgery, e.g. dropping gradients of frozen parameters.
* ``on_step_end(step, total_steps)`` after each optimiser step (EMA targets, queues).

A method is built with its ``RunContext`` (dataset size, classes, size of the smallest class,
image size, channels, epochs, batches per epoch, world size, seed), which the engine keeps in the resolved config
(``cfg["run"]``) so that a checkpoint rebuilds every buffer at the right shape.  State it
keeps across steps is a sub-module or a registered buffer, so checkpoints carry it.

``parameter_groups`` may mark groups ``fixed_lr`` (no warm-up, no decay), give them an
``lr_scale``, or exclude them from weight decay and LARS (``lars_exclude``).  A method that
re-initialises a head calls ``reinitialize(module)``; the engine then drops the optimiser
state (momentum, LARS buffers) of its parameters.  ``train_batches`` may return the method's
own batches: the dataset to index and a batch sampler of its indices (use the rank-aware
samplers of ``selfsup.data.samplers``); the engine builds the DataLoader (workers, collate).  ``features`` and
``feature_layers`` are what every evaluation protocol uses.  ``limits`` (or an override of
``check_params``) rejects bad params with one clear message before anything is built.  ``batch_size(batch)`` tells the
engine how many samples a batch holds, so batches need not be one image tensor.

Outside the engine: ``loss = method.training_step(method.prepare_batch(batch, make), step)["loss"]``.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..data.augment import AugmentConfig
from ..data.datasets import batch_inputs
from ..data.series import SeriesAugmentConfig
from ..data.views import ViewSpec
from ..errors import SelfSupError
from ..distributed import world_info
from ..models.backbones import build_backbone
from .. import rng


@dataclass(frozen=True)
class RunContext:
    """The facts of a run a method may size itself by."""

    train_size: int = 0
    num_classes: int = 0
    image_size: int = 32
    channels: int = 3
    epochs: int = 1
    batch_size: int = 256
    batches_per_epoch: int = 1
    world_size: int = 1
    accumulate_grad_batches: int = 1  # batches per optimiser step (``trainer.accumulate_grad_batches``)
    seed: int = 0
    smallest_class: int = 0  # images of the least frequent class in the training split (0: unlabelled)
    mean: tuple = ()  # per-channel normalisation of the views: view = (image in [0, 1] - mean) / std
    std: tuple = ()
    modality: str = "image"  # image (``image_size``: side in pixels) | series (``image_size``: length in steps)

    @property
    def rank(self) -> int:
        return world_info()[0]


class Method(nn.Module):
    name: str = ""
    #: configuration keys the method reads, with their defaults (documented in its config file)
    defaults: dict = {}
    #: for a param added after runs were saved whose default differs from how those runs trained:
    #: the value that reproduces them (a saved configuration without the param gets it)
    earlier_runs: dict = {}
    #: trains on the class labels (marked as such in every benchmark table)
    supervised: bool = False
    #: learns from a few labelled images and an unlabelled pool (``selfsup semisup``; not in pretraining tables)
    semi_supervised: bool = False
    #: inclusive (low, high) bounds of numeric params (None: unbounded), checked before anything is built
    limits: dict[str, tuple] = {}
    #: the allowed values of params that name an option, checked with ``limits``
    choices: dict[str, tuple] = {}
    #: the kinds of data it learns from (``DatasetInfo.modality``); a method whose views are image
    #: pipelines (``AugmentConfig``) that also names "series" has a ``series_augment`` param: the
    #: 1-D pipeline each of those views becomes on series (``run_views``)
    modalities: tuple[str, ...] = ("image",)
    #: learns from colour alone (3-channel images); refused on other data
    colour_only: bool = False
    #: reads the backbone's patch tokens (``ViTBackbone.tokens``); refused with a ResNet
    needs_tokens: bool = False
    #: the smallest batch its loss is defined for (checked when the method is built)
    min_batch_size: int = 2
    #: raised by one whenever a fix changes what the method trains (its docstring says what); runs
    #: record it in metrics.json and benchmark suites redo or mark the runs made before the fix
    revision: int = 1

    def __init__(self, backbone: nn.Module, cfg: dict, run: RunContext):
        super().__init__()
        self.backbone = backbone
        self.feature_dim = backbone.feature_dim
        self.cfg = cfg
        self.run = run
        self.views: list[ViewSpec] = []
        self.generator = torch.Generator().manual_seed(run.seed)
        self._reinitialized: list[nn.Parameter] = []

    @classmethod
    def completed_params(cls, params: dict) -> dict:
        """``params`` of a saved configuration with the params added since: ``earlier_runs``'
        values where given (as the run trained), else the defaults."""
        return {**cls.defaults, **cls.earlier_runs, **params}

    @classmethod
    def check_params(cls, params: dict, run: RunContext) -> None:
        """Raise ``SelfSupError`` for a param outside ``limits`` (a null param means "derive it"
        and is not checked) or ``choices``; a method with run-dependent rules extends this."""
        for key, (low, high) in cls.limits.items():
            value = params.get(key)
            if value is None:
                continue
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or (low is not None and value < low) or (high is not None and value > high)):
                bounds = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
                raise SelfSupError(f"params.{key} of {cls.name} must be a number in {bounds}, got {value!r}")
        for key, options in cls.choices.items():
            if params.get(key) not in options:
                raise SelfSupError(f"params.{key} of {cls.name} must be one of {', '.join(map(str, options))}, "
                                   f"got {params.get(key)!r}")
        if cls.colour_only and run.channels != 3:
            raise SelfSupError(f"{cls.name} needs colour images, but this dataset has {run.channels} channel(s); use a "
                               "colour dataset (cifar10, cifar100, stl10, imagefolder)")

    @classmethod
    def hosted_methods(cls, params: dict) -> list[str]:
        """The registered methods this method builds around its own backbone (multitask's
        tasks, FROST's self-supervised term); their full params, from their class defaults,
        packaged configs and ``params["task_params"][NAME]``, are written into
        ``params["task_params"]`` when the config is resolved, so that a run's config alone
        rebuilds them."""
        return []

    @classmethod
    def build_backbone(cls, cfg: dict, run: RunContext) -> nn.Module:
        """The encoder this method trains, from the resolved config: the network of ``cfg["backbone"]``
        by default; a method with another input (Sobel channels, 1-D series) overrides this."""
        return build_backbone(cfg["backbone"], run.channels, run.image_size)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Representation for evaluation (backbone output, before any head)."""
        return self.backbone(x)

    def feature_layers(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Pooled features after the stem and each stage, for per-layer probes (conv1..conv5;
        a ViT's [CLS] token after each block), named by ``layer_names``."""
        return self.backbone.forward_stages(x)

    @property
    def layer_names(self) -> list[str]:
        return self.backbone.layer_names

    def predict(self, x: torch.Tensor) -> torch.Tensor | None:
        """Class scores, for a method that trains a classifier (its ``test_top1`` in
        metrics.json); None for the others."""
        return None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def batch_size(self, batch: dict) -> int:
        return batch["index"].shape[0]

    def prepare_batch(self, batch: dict, make_views: Callable[[torch.Tensor, list[ViewSpec]], list[torch.Tensor]]) -> dict:
        batch["views"] = make_views(batch_inputs(batch), self.run_views())
        return batch

    def run_views(self) -> list[ViewSpec]:
        """``views`` as this run makes them: on series, each image pipeline becomes the method's
        1-D pipeline (``params.series_augment``), as many views of it; the others stay."""
        if self.run.modality != "series" or not any(isinstance(spec.augment, AugmentConfig) for spec in self.views):
            return self.views
        series = SeriesAugmentConfig(**self.cfg["series_augment"])
        return [ViewSpec(series, spec.count) if isinstance(spec.augment, AugmentConfig) else spec
                for spec in self.views]

    def training_step(self, batch: dict, step: int) -> dict:
        raise NotImplementedError

    def on_epoch_start(self, epoch: int, embed: Callable) -> dict | None:
        """Called before each training epoch; ``embed()`` gives the whole training split's
        features.  May return scalars, logged as ``epoch/NAME`` and kept in metrics.json's
        ``epoch_history``."""

    def on_before_optimizer_step(self, epoch: int, step: int) -> None:
        """Called after backward, before the optimiser step (gradient surgery)."""

    def on_step_end(self, step: int, total_steps: int) -> None:
        """Called after each optimiser step."""

    def train_batches(self, dataset, batch_size: int, seed: int):
        """``(dataset, batch sampler)`` of the method's own training batches, or None for the
        engine's shuffled full batches."""
        return None

    def reinitialize(self, *modules: nn.Module) -> None:
        """Fresh parameters for ``modules`` (their own ``reset_parameters``), drawn from
        ``self.generator`` so that every rank and a resumed run draw the same; the engine
        drops the optimiser state of these parameters before the next step."""
        seed = rng.seed_from(self.generator)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for module in modules:
                fresh = copy.deepcopy(module).cpu()
                for sub in fresh.modules():
                    if hasattr(sub, "reset_parameters"):
                        sub.reset_parameters()
                with torch.no_grad():
                    for old, new in zip(module.parameters(), fresh.parameters()):
                        old.copy_(new)
                self._reinitialized.extend(module.parameters())

    def take_reinitialized(self) -> list[nn.Parameter]:
        """Parameters re-initialised since the last call (read by the engine)."""
        params, self._reinitialized = self._reinitialized, []
        return params

    def parameter_groups(self) -> list[dict]:
        """Optimiser parameter groups; biases and normalisation weights are kept apart so that
        the optimiser can exclude them from weight decay and LARS adaptation (SimCLR, BYOL)."""
        return split_decay(p for p in self.parameters() if p.requires_grad)


def one_group(method: nn.Module) -> list[dict]:
    """Every trainable parameter in one group: weight decay and LARS adaptation for biases and
    norms too (SwAV's and DeepCluster-v2's reference code wrap SGD over all parameters in LARC)."""
    return [{"params": [p for p in method.parameters() if p.requires_grad]}]


def split_decay(params, **options) -> list[dict]:
    """Two groups of ``params``: weights, and biases/norm parameters and those a module marks
    ``no_weight_decay`` (a ViT's position embeddings and tokens) (no weight decay unless
    ``optimizer.decay_biases_and_norms``, no LARS adaptation; marked ``bias_and_norm``);
    ``options`` (``fixed_lr``, ``lr_scale``...) go to both."""
    decay, no_decay = [], []
    for param in params:
        (no_decay if param.ndim <= 1 or getattr(param, "no_weight_decay", False) else decay).append(param)
    groups = [{"params": decay, **options},
              {"params": no_decay, "weight_decay": 0.0, "lars_exclude": True, "bias_and_norm": True, **options}]
    return [g for g in groups if g["params"]]

"""Configuration: packaged YAML defaults, a method's file, the user's file, flags, ``--set``.

``resolve`` returns a ``Config``: the nested dict that is written to ``config.yaml`` in the
run directory and stored in every checkpoint (so that a checkpoint alone rebuilds its model,
and every run written before still loads), with a typed, validated view of it
(``Config.settings``, a ``RunSettings``: one frozen dataclass per section, each value checked
against its type and range with one clear message).  ``pretrain`` checks the settings of any
configuration it is given the same way, so a suite or a script gets the checks the command
line gets.  Unknown keys are errors, never silently ignored; a method's ``params`` are checked
by the method (``Method.check_params``).
"""
from __future__ import annotations

import copy
import dataclasses
import importlib.util
import re
import types
import typing
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml

from .errors import SelfSupError


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """YAML 1.1 reads ``1e-6`` (no dot in the mantissa) as a string; configs mean a number.
    LibYAML's parser where PyYAML has it (about 14 times faster on a run's config.yaml)."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
                              list("-+0123456789."))


def _read_yaml(text: str, origin: str) -> dict:
    try:
        data = yaml.load(text, Loader=_Loader) or {}
    except yaml.YAMLError as exc:
        raise SelfSupError(f"{origin} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise SelfSupError(f"{origin} must hold a mapping of options, not {type(data).__name__}")
    return data


def _type_name(tp) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(tp)))
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string", type(None): "null",
            list: "a list", dict: "a mapping"}.get(typing.get_origin(tp) or tp, str(tp))


def _fits(value, tp) -> bool:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return any(value == a and type(value) is type(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in typing.get_args(tp))
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, origin or tp)


class Settings:
    """A section of the configuration as a frozen dataclass: ``of(values)`` checks each value
    against its field's type and its ``minimum`` (field metadata), naming the setting."""

    @classmethod
    def of(cls, values: dict, where: str = ""):
        if not isinstance(values, dict):
            raise SelfSupError(f"{where.rstrip('.') or 'the configuration'} must be a mapping of options, got {values!r}")
        hints = typing.get_type_hints(cls)
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = [key for key in values if key not in known]
        if unknown:
            raise SelfSupError(f"unknown config key '{where}{unknown[0]}'; known keys here: {', '.join(known)}")
        given = {}
        for name, field in known.items():
            if name not in values:
                if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                    raise SelfSupError(f"the configuration lacks '{where}{name}'")
                continue
            value, tp = values[name], hints[name]
            if isinstance(tp, type) and issubclass(tp, Settings):
                given[name] = tp.of(value, f"{where}{name}.")
                continue
            if not _fits(value, tp):
                raise SelfSupError(f"{where}{name} must be {_type_name(tp)}, got {value!r}")
            minimum = field.metadata.get("minimum")
            if minimum is not None and _fits(value, float) and value < minimum:
                raise SelfSupError(f"{where}{name} must be at least {minimum}, got {value!r}")
            given[name] = value
        return cls(**given)


def _at_least(minimum) -> dict:
    return {"minimum": minimum}


@dataclasses.dataclass(frozen=True)
class BackboneSettings(Settings):
    name: str
    width: int = dataclasses.field(metadata=_at_least(1))
    small_stem: bool | Literal["auto"] = "auto"
    batchnorm: Literal["sync", "local", "split"] = "sync"
    bn_splits: int = dataclasses.field(default=8, metadata=_at_least(1))
    init: str | None = None
    # vision transformers (``selfsup.models.vit``); null: derived from the name and the image size
    depth: int | None = dataclasses.field(default=None, metadata=_at_least(1))
    heads: int | None = dataclasses.field(default=None, metadata=_at_least(1))
    patch_size: int | None = dataclasses.field(default=None, metadata=_at_least(1))
    drop_path: float = dataclasses.field(default=0.0, metadata=_at_least(0))
    pool: Literal["cls", "mean"] = "cls"

    def __post_init__(self):
        from .models.backbones import BACKBONES  # the registry of networks decides which names exist

        if self.name not in (*BACKBONES, "auto"):
            raise SelfSupError(f"unknown backbone '{self.name}'; choose one of: auto, {', '.join(BACKBONES)}")


@dataclasses.dataclass(frozen=True)
class DataSettings(Settings):
    channels: int | None = dataclasses.field(default=None, metadata=_at_least(1))
    image_size: int | None = dataclasses.field(default=None, metadata=_at_least(1))
    num_workers: int = dataclasses.field(default=0, metadata=_at_least(0))
    synthetic_size: int = dataclasses.field(default=512, metadata=_at_least(1))
    # facts the run measures from the dataset and writes into its config.yaml (``DATA_FACTS``)
    mean: list | None = None
    std: list | None = None
    num_classes: int | None = None
    modality: str | None = None


@dataclasses.dataclass(frozen=True)
class OptimizerSettings(Settings):
    name: Literal["sgd", "adam", "adamw", "lars"]
    lr: float = dataclasses.field(metadata=_at_least(0))
    lr_scaling: Literal["linear", "sqrt", "none"] = "linear"
    weight_decay: float = dataclasses.field(default=0.0, metadata=_at_least(0))
    decay_biases_and_norms: bool = False
    momentum: float = dataclasses.field(default=0.9, metadata=_at_least(0))
    nesterov: bool = False
    trust_coefficient: float = dataclasses.field(default=0.001, metadata=_at_least(0))
    trust_clip: bool = False
    betas: list = dataclasses.field(default_factory=lambda: [0.9, 0.999])


@dataclasses.dataclass(frozen=True)
class ScheduleSettings(Settings):
    warmup_epochs: float = dataclasses.field(default=0, metadata=_at_least(0))
    final_lr_ratio: float = dataclasses.field(default=0.0, metadata=_at_least(0))
    shape: Literal["cosine", "fixmatch"] = "cosine"
    final_weight_decay: float | None = dataclasses.field(default=None, metadata=_at_least(0))


# Lightning's precisions, and auto: bf16-mixed where the device computes bfloat16 natively (selfsup.precision)
PRECISIONS = ("auto", "32-true", "bf16-mixed", "16-mixed")
# experiment trackers (Lightning's loggers) and the package each needs
LOGGER_PACKAGES = {"csv": "lightning", "tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}


@dataclasses.dataclass(frozen=True)
class TrainerSettings(Settings):
    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = dataclasses.field(default=1, metadata=_at_least(1))
    precision: Literal[PRECISIONS] = "32-true"
    accumulate_grad_batches: int = dataclasses.field(default=1, metadata=_at_least(1))
    channels_last: bool = True
    compile: bool = False
    strategy: Literal["auto", "ddp", "fsdp"] = "auto"
    log_every_n_steps: int = dataclasses.field(default=20, metadata=_at_least(1))
    progress_bar: bool = True
    loggers: list = dataclasses.field(default_factory=lambda: ["csv", "tensorboard"])

    def __post_init__(self):
        for name in self.loggers:
            if name not in LOGGER_PACKAGES:
                raise SelfSupError(f"trainer.loggers: unknown logger '{name}'; choose from {', '.join(LOGGER_PACKAGES)}")
            if importlib.util.find_spec(LOGGER_PACKAGES[name]) is None:
                raise SelfSupError(f"the {name} logger needs the '{LOGGER_PACKAGES[name]}' package: "
                                   "pip install 'selfsup[trackers]' (or the package itself)")


@dataclasses.dataclass(frozen=True)
class KnnSettings(Settings):
    k: int = dataclasses.field(default=200, metadata=_at_least(1))
    temperature: float = dataclasses.field(default=0.1, metadata=_at_least(1e-8))
    every_n_epochs: int = dataclasses.field(default=1, metadata=_at_least(0))
    every_n_steps: int = dataclasses.field(default=0, metadata=_at_least(0))
    monitor_train_size: int = dataclasses.field(default=10000, metadata=_at_least(0))
    monitor_test_size: int = dataclasses.field(default=2000, metadata=_at_least(0))
    final: bool = True
    target_knn: float | None = dataclasses.field(default=None, metadata=_at_least(0))
    target_linear: float | None = dataclasses.field(default=None, metadata=_at_least(0))
    target_probe_epochs: int = dataclasses.field(default=100, metadata=_at_least(1))

    @property
    def monitors(self) -> bool:
        return self.every_n_epochs > 0 or self.every_n_steps > 0

    def __post_init__(self):
        if self.target_linear is not None and self.target_knn is None:
            raise SelfSupError("knn.target_linear needs knn.target_knn too: the probe is trained only at checks "
                               "whose kNN reached its target")
        if self.target_knn is not None and not self.monitors:
            raise SelfSupError("knn.target_knn needs the monitor: set knn.every_n_epochs or knn.every_n_steps above 0")


@dataclasses.dataclass(frozen=True)
class OnlineProbeSettings(Settings):
    enabled: bool = False
    lr: float | None = dataclasses.field(default=None, metadata=_at_least(0))

    def rate(self, optimizer: str) -> float:
        """Its learning rate in the run's optimiser: as set, else 0.1 with SGD or LARS (solo-learn's
        classifier rate) and 1e-3 with Adam or AdamW."""
        return self.lr if self.lr is not None else (1e-3 if optimizer in ("adam", "adamw") else 0.1)


@dataclasses.dataclass(frozen=True)
class RunSettings(Settings):
    """Every setting of a run but the method's ``params`` (checked by the method), typed."""

    method: str
    dataset: str
    data_dir: str | None
    subset: int | None = dataclasses.field(metadata=_at_least(1))
    seed: int = dataclasses.field(metadata=_at_least(0))
    epochs: int = dataclasses.field(metadata=_at_least(1))
    batch_size: int = dataclasses.field(metadata=_at_least(1))  # and the method's ``min_batch_size``
    backbone: BackboneSettings
    data: DataSettings
    optimizer: OptimizerSettings
    schedule: ScheduleSettings
    trainer: TrainerSettings
    knn: KnnSettings
    params: dict
    recipe: Literal["auto", "paper", "short"] = "auto"
    online_probe: OnlineProbeSettings = OnlineProbeSettings()
    run: dict | None = None  # what the run measured (training set size, world size...), written by the run

    def __post_init__(self):
        if self.schedule.final_weight_decay is not None and self.optimizer.weight_decay == 0:
            raise SelfSupError("schedule.final_weight_decay moves the weight decay from optimizer.weight_decay "
                               "along a cosine; set optimizer.weight_decay above 0 too")


class Config(dict):
    """A resolved configuration: the nested dict that ``config.yaml`` and checkpoints hold
    (read by key as before) and, as ``settings``, its typed and validated view."""

    @property
    def settings(self) -> RunSettings:
        return RunSettings.of(self)


def packaged_config(name: str) -> dict:
    path = resources.files("selfsup") / "configs" / f"{name}.yaml"
    if not path.is_file():
        return {}
    return _read_yaml(path.read_text(), f"packaged config {name}.yaml")


def read_config_file(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise SelfSupError(f"config file {path} does not exist")
    return _read_yaml(path.read_text(), f"config file {path}")


# Mappings whose keys the user's layers may add to: each hosted method's params, checked against
# that method's when the config is resolved (``expand_hosted``), so that several ``--set
# params.task_params.NAME.KEY=...`` can add to one entry.
OPEN_MAPPINGS = ("params.task_params.",)


def merge(base: dict, override: dict, where: str = "", strict: bool = True, open_: tuple[str, ...] = ()) -> dict:
    """``override`` laid over ``base``; with ``strict``, keys absent from ``base`` are errors
    except below the paths ``open_``."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        name = f"{where}{key}"
        if strict and key not in out and not where.startswith(open_):
            raise SelfSupError(f"unknown config key '{name}'; known keys here: {', '.join(map(str, out)) or 'none'}")
        if isinstance(value, dict) and isinstance(out.get(key), dict) and out[key]:
            out[key] = merge(out[key], value, f"{name}.", strict, open_)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_assignment(text: str) -> dict:
    """``a.b.c=value`` (value parsed as YAML) as a nested dict."""
    if "=" not in text:
        raise SelfSupError(f"--set expects key=value, got '{text}'")
    key, raw = text.split("=", 1)
    value = _read_yaml(f"v: {raw}", f"--set {text}")["v"] if raw else None
    nested: dict = value
    for part in reversed(key.strip().split(".")):
        nested = {part: nested}
    return nested


# what ``pretrain`` measures from the dataset and writes into a run's config.yaml (known by
# its ``run`` section, also written by the run): these keys of ``data``
DATA_FACTS = ("mean", "std", "num_classes", "modality")


def resolve(method: str, user_file: str | None = None, flags: dict | None = None,
            assignments: list[str] | None = None, base: dict | None = None) -> dict:
    """Merge the layers for ``method``: its packaged defaults, ``base`` (a protocol's layer),
    ``user_file``, ``flags`` (those whose value is None are not given), ``assignments``."""
    from .methods import method_class  # the registry decides which methods exist

    cls = method_class(method)
    cfg = packaged_config("defaults")
    cfg["params"] = copy.deepcopy(cls.defaults)
    cfg = merge(cfg, packaged_config(method))
    layers = [base] if base else []
    if user_file:
        layer = read_config_file(user_file)
        if "run" in layer:  # a run's own config.yaml: the facts its run filled in are found again
            layer.pop("run")
            if isinstance(layer.get("data"), dict):
                layer["data"] = {k: v for k, v in layer["data"].items() if k not in DATA_FACTS}
        layers.append(layer)
    layers.append({k: v for k, v in (flags or {}).items() if v is not None})
    layers += [parse_assignment(a) for a in assignments or []]
    for layer in layers:
        if layer.get("method", method) != method:
            raise SelfSupError(f"the config names method '{layer['method']}' but the run is for '{method}'")
    resolved = _laid(cfg, layers, method)
    _refuse_ignored_width(resolved["backbone"]["name"], cfg["backbone"]["width"], layers)
    recipe, layer = recipe_layer(method, resolved["recipe"], resolved["epochs"])
    if layer:  # under every layer given, so that the user's own settings win
        resolved = _laid(merge(cfg, layer, f"recipes.yaml {recipe}.{method}."), layers, method)
    resolved["recipe"] = recipe
    return resolved


def _refuse_ignored_width(name: str, default: int, layers: list[dict]) -> None:
    """Refuse a ``backbone.width`` that a layer sets (other than the default's) for a network
    whose name fixes its width (vit-tiny, vit-small, the wide ResNets), which would ignore it."""
    from .models.backbones import FIXED_WIDTH_BACKBONES
    from .models.vit import VIT_SIZES

    own = VIT_SIZES.get(name, {}).get("width")  # the name's own width, which a run's config.yaml records
    widths = [layer["backbone"]["width"] for layer in layers if isinstance(layer.get("backbone"), dict)
              and layer["backbone"].get("width", default) not in (default, own)]
    if name in FIXED_WIDTH_BACKBONES and widths:
        raise SelfSupError(f"backbone.width ({widths[-1]}) does not apply to {name}, whose name fixes its width; "
                           "for a ViT of another width use backbone vit (with backbone.width, depth and heads)")


def _laid(cfg: dict, layers: list[dict], method: str) -> Config:
    for layer in layers:
        cfg = merge(cfg, layer, open_=OPEN_MAPPINGS)
    cfg["method"] = method
    cfg = Config(expand_hosted(cfg))
    cfg.settings  # every value checked against its type and range, one clear message
    return cfg


RECIPES = ("auto", "paper", "short")
SHORT_BELOW_EPOCHS = 100  # ``recipe: auto`` is short below this many epochs (the papers train 100 to 1000)


def recipe_layer(method: str, recipe: str, epochs: int) -> tuple[str, dict]:
    """(the recipe a run of ``epochs`` epochs uses, ``paper`` or ``short``; the layer it lays over
    ``method``'s packaged config: ``configs/recipes.yaml``'s entry, empty for the paper's)."""
    name = ("short" if epochs < SHORT_BELOW_EPOCHS else "paper") if recipe == "auto" else recipe
    return name, {} if name == "paper" else copy.deepcopy(packaged_config("recipes")[name].get(method, {}))


def expand_hosted(cfg: dict) -> dict:
    """Write the full params of each method that ``cfg``'s method hosts
    (``Method.hosted_methods``) into ``params.task_params``: the hosted method's class
    defaults, its packaged config's params, then what ``task_params`` gave.  Idempotent, so
    it also completes a config written before hosted params were written out.  An entry that
    is exactly the full params of a method no longer hosted (a resolved config whose
    ``tasks`` were changed) is dropped; any other entry is left for the method to judge."""
    from .methods import METHODS, method_class

    params = cfg["params"]
    hosted = method_class(cfg["method"]).hosted_methods(params)
    if not hosted:
        return cfg
    if not isinstance(params.get("task_params"), dict):
        raise SelfSupError(f"params.task_params must map method names to their params, got {params.get('task_params')!r}")

    def own(name: str) -> dict:
        return merge(dict(METHODS[name].defaults), packaged_config(name).get("params", {}), f"{name}.")

    given = params["task_params"]
    params["task_params"] = {name: value for name, value in given.items()
                             if name in hosted or name not in METHODS or value != own(name)}
    for name in hosted:
        params["task_params"][name] = merge(own(name), given.get(name) or {}, f"params.task_params.{name}.")
    return cfg

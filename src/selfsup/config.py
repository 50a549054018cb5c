"""Configuration: packaged YAML defaults, a method's file, the user's file, flags, ``--set``.

The resolved configuration is a plain nested dict, written to ``config.yaml`` in the run
directory and stored in every checkpoint, so that a checkpoint alone rebuilds its model.
Unknown keys are errors, never silently ignored.
"""
from __future__ import annotations

import copy
import re
from importlib import resources
from pathlib import Path

import yaml

from .errors import SelfSupError


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-6`` (no dot in the mantissa) as a string; configs mean a number."""


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


def merge(base: dict, override: dict, where: str = "", strict: bool = True) -> dict:
    """``override`` laid over ``base``; with ``strict``, keys absent from ``base`` are errors."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        name = f"{where}{key}"
        if strict and key not in out:
            raise SelfSupError(f"unknown config key '{name}'; known keys here: {', '.join(map(str, out)) or 'none'}")
        if isinstance(value, dict) and isinstance(out.get(key), dict) and out[key]:
            out[key] = merge(out[key], value, f"{name}.", strict)
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
            assignments: list[str] | None = None) -> dict:
    """Merge the layers for ``method`` (flags whose value is None are not given)."""
    from .methods import method_class  # the registry decides which methods exist

    cls = method_class(method)
    cfg = packaged_config("defaults")
    cfg["params"] = copy.deepcopy(cls.defaults)
    cfg = merge(cfg, packaged_config(method))
    layers = []
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
        layer = dict(layer)
        if layer.get("method", method) != method:
            raise SelfSupError(f"the config names method '{layer['method']}' but the run is for '{method}'")
        cfg = merge(cfg, layer)
    cfg["method"] = method
    return expand_hosted(cfg)


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

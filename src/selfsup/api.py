"""The Python API: what the command line does, called from a script or a notebook.

    import selfsup
    metrics = selfsup.pretrain("simclr", out="runs/simclr", epochs=10, params={"temperature": 0.2})
    backbone = selfsup.load_backbone("runs/simclr")       # a torch.nn.Module in eval mode
    result = selfsup.evaluate("knn", "runs/simclr", k=20)
    selfsup.export_backbone("runs/simclr", "onnx", "simclr.onnx")  # as `selfsup export`

Settings are the keys of a run's ``config.yaml`` (``selfsup pretrain --method M --print-config``
shows them all), given as keyword arguments, as a ``config`` dict or YAML file laid under them,
or as ``sets`` (``"params.temperature=0.2"``, like ``--set``).  Each call checks every setting
before any work and raises ``selfsup.errors.SelfSupError`` with one clear message.  The pure
losses (``selfsup.losses``), heads and backbones (``selfsup.models``), view maker
(``selfsup.data.views``) and samplers (``selfsup.data.samplers``) serve a user's own loop.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .build import load_pretrained
from .config import merge, resolve
from .engine.train import pretrain as _pretrain
from .errors import SelfSupError
from .eval.run import EvalRequest, evaluate as _evaluate
from .export import export_backbone
from .rundir import checkpoint_of


def configure(method: str, config: dict | str | Path | None = None, sets: list[str] | tuple = (),
              protocol: str | None = None, **settings) -> dict:
    """The resolved, checked configuration of ``method``: the packaged defaults, then a
    semi-supervised ``protocol`` (``usb-classic``: ``selfsup.methods.semisup.protocols``), then
    ``config`` (a dict or a YAML file), then ``settings``, then ``sets``."""
    layer = config if isinstance(config, dict) else {}
    file = str(config) if isinstance(config, (str, Path)) else None
    given = merge(layer, {k: v for k, v in settings.items() if v is not None}, strict=False)
    base = protocol_layer(protocol, method, given.get("dataset")) if protocol else None
    return resolve(method, file, given, list(sets), base=base)


def protocol_layer(name: str, method: str, dataset: str | None) -> dict:
    """The config layer of the semi-supervised protocol ``name`` for ``method`` on ``dataset``."""
    from .methods import method_class
    from .methods.semisup.protocols import PROTOCOLS

    cls = method_class(method)
    if name not in PROTOCOLS:
        raise SelfSupError(f"unknown protocol '{name}'; choose one of: {', '.join(PROTOCOLS)}")
    if not cls.semi_supervised:
        raise SelfSupError(f"--protocol {name} is a semi-supervised protocol; {method} is not a semi-supervised method")
    return PROTOCOLS[name](dataset, method, resolve(method)["params"])


def pretrain(method: str | dict, out: str | Path, *, resume: bool = False, baselines: bool = False,
             linear_probe: bool = False, config: dict | str | Path | None = None, sets: list[str] | tuple = (),
             **settings) -> dict:
    """Pretrain into the run directory ``out`` (as ``selfsup pretrain``); metrics.json's dict
    (empty in the extra processes of a multi-process run).  ``method`` is a method's name or a
    configuration ``configure`` returned; ``baselines`` and ``linear_probe`` as the CLI's flags."""
    if isinstance(method, dict):
        if config is not None or sets or settings:
            raise SelfSupError("pass either a resolved configuration or a method's name with settings, not both")
        cfg = method
    else:
        cfg = configure(method, config, sets, **settings)
    return _pretrain(cfg, Path(out), resume=resume, baselines=baselines, probe_epochs=100 if linear_probe else 0)


def load_backbone(run: str | Path) -> torch.nn.Module:
    """The pretrained backbone of ``run`` (a run directory or checkpoint) on the CPU in eval mode:
    images normalised as the run's ``config.yaml`` says (``data.mean``, ``data.std``) in,
    ``feature_dim`` features out (ResNet: pooled; ViT: the [CLS] token).  Call ``.train()`` on it
    before fine-tuning: Lightning's ``fit`` keeps the mode a module comes in, so BatchNorm would
    otherwise keep its pretraining statistics."""
    return load_pretrained(checkpoint_of(run)).method.backbone.float().eval()


def evaluate(protocol: str, run: str | Path, **options) -> dict:
    """Run one evaluation protocol (as ``selfsup evaluate``) on ``run``; its result's dict (also
    written to ``eval_<protocol>.json`` in the run directory unless ``output`` says where).
    ``options`` are the protocol's flags in Python spelling (``k=20``, ``label_fraction=0.01``)."""
    return _evaluate(EvalRequest.make(protocol, checkpoint_of(run), **options))


__all__ = ["configure", "evaluate", "export_backbone", "load_backbone", "pretrain"]

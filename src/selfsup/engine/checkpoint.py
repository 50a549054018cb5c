"""Loading the training module (``PretrainModule``) back from a selfsup checkpoint: for code that
needs the engine's own view of a run (its epoch-start ``embed``); evaluation loads the method
alone with ``selfsup.build.load_pretrained``."""
from __future__ import annotations

from pathlib import Path

from ..build import load_pretrained
from .module import PretrainModule


def load_module(path: str | Path) -> PretrainModule:
    """The ``PretrainModule`` of a selfsup checkpoint, in eval mode on the CPU."""
    pretrained = load_pretrained(path)
    module = PretrainModule(pretrained.cfg)
    module.method = pretrained.method
    return module.eval()

"""Loading a pretrained model back from a checkpoint, with clear errors."""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import SelfSupError
from .module import PretrainModule


def read_checkpoint(path: str | Path) -> tuple[dict, dict]:
    """(checkpoint, its run configuration) of a selfsup checkpoint, or a clear error.

    Reads with ``weights_only=True``: a checkpoint cannot run code when it is opened."""
    path = Path(path)
    if not path.is_file():
        raise SelfSupError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - the unpickler fails in many ways on damaged bytes
        raise SelfSupError(f"checkpoint {path} is corrupt or not a PyTorch checkpoint ({type(exc).__name__}); "
                           "use checkpoints/last.ckpt of a selfsup run") from exc
    cfg = checkpoint.get("hyper_parameters", {}).get("cfg") if isinstance(checkpoint, dict) else None
    if not isinstance(cfg, dict) or "state_dict" not in checkpoint:
        raise SelfSupError(f"{path} is not a selfsup checkpoint (no configuration or weights inside)")
    return checkpoint, cfg


def load_pretrained(path: str | Path) -> PretrainModule:
    """The ``PretrainModule`` saved in a selfsup checkpoint, in eval mode on the CPU."""
    checkpoint, cfg = read_checkpoint(path)
    from ..methods import method_class
    # options added to a method after the checkpoint was written take their defaults
    cfg["params"] = {**method_class(cfg["method"]).defaults, **cfg["params"]}
    module = PretrainModule(cfg)
    try:
        module.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise SelfSupError(f"checkpoint {path} does not match its own configuration ({first}); "
                           "it was written by an incompatible version of selfsup") from exc
    return module.eval()

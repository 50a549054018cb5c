"""Small file helpers: atomic writes and output-directory checks."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch

from .errors import SelfSupError


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (its folders made as needed) through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def ensure_writable_dir(path: Path) -> Path:
    """Create ``path`` if needed and prove that files can be written in it."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-test")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise SelfSupError(f"output directory {path} is not writable ({exc.strerror}); choose another --out") from exc
    return path


def content_hash(*parts) -> str:
    """sha256 of ``parts``: tensors by their bytes, modules by their structure and every
    parameter and buffer, anything else by its JSON form (a cache key for results that follow
    from these inputs alone)."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, torch.nn.Module):
            digest.update(str(part).encode())
            for name, tensor in part.state_dict().items():
                digest.update(name.encode())
                digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(part, torch.Tensor):
            digest.update(part.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def cached_json(folder: Path | None, key: str, compute) -> dict:
    """``compute()``'s dict, kept as ``folder/KEY.json`` and read back from there by later
    calls with the same ``key`` (a ``content_hash`` of everything the result follows from);
    without a folder, always computed."""
    path = Path(folder) / f"{key}.json" if folder is not None else None
    if path is not None and path.exists():
        return json.loads(path.read_text())
    result = compute()
    if path is not None:
        write_json(path, result)
    return result


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

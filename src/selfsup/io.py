"""Small file helpers: atomic writes and output-directory checks."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

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

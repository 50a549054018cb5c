"""EEMD of a series into a fixed set of components, causal or over the whole series, cached.

The paper (Nguyen et al. 2019) decomposes the whole series once with EEMD (Wu & Huang 2009).
A network fed those components at time t sees values computed from the future of t, so its
test error is optimistic.  The default here is a causal sliding window instead: for every
time t the EEMD of the last ``window`` values ending at t; the components at t are what that
window's decomposition says, and nothing after t enters them.  ``leaky-whole-series`` keeps
the paper's setting for comparison and is labelled so in every output.

Each decomposition is ``PyEMD.EEMD(trials, noise_width, parallel=False, separate_trends=True)``
with its noise seed reset to ``seed`` before every window, so that a window's components
depend on its values only.  Every decomposition has ``max_imfs + 1`` components: the ensemble
means of at most ``max_imfs`` IMFs (fewer are padded with zero rows) and, last, the residue:
the ensemble mean of each trial's residue (``separate_trends``; without it a trial that finds
fewer IMFs puts its trend in an IMF row, and the averaged rows mix trend and oscillation).
The components sum to the values up to the averaged noise of the ensemble.

Results are cached in ``$SELFSUP_CACHE/eemd`` (default ``~/.cache/selfsup/eemd``), one npz
per series and settings, keyed by a hash of the values, the mode, window, trials, noise
width, seed, max IMFs, the PyEMD version and ``LAYOUT`` (what the components are).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .samples import lag_matrix

CAUSAL = "causal-window"
LEAKY = "leaky-whole-series"
LAYOUT = "imfs-then-mean-residue"


@dataclass(frozen=True)
class Decomposition:
    """Components of a series [N], as [K, lags] inputs and [K] values known at each time.

    ``parts`` is [N - window + 1, K, window] for the causal mode (row i: the window ending at
    time window - 1 + i) and [1, K, N] for the whole series."""
    mode: str
    parts: np.ndarray
    computed_seconds: float      # EEMD time when the decomposition was made (an earlier run's on a cache hit)
    seconds: float               # time this call spent, decomposing or reading the cache
    cache_hit: bool

    @property
    def first(self) -> int:
        """The first time with components."""
        return self.parts.shape[2] - 1 if self.mode == CAUSAL else 0

    @property
    def names(self) -> list[str]:
        return [f"imf{i + 1}" for i in range(self.parts.shape[1] - 1)] + ["residue"]

    @property
    def count(self) -> int:
        """Number of EEMD decompositions."""
        return self.parts.shape[0]

    def lagged(self, origins: np.ndarray, lags: int) -> np.ndarray:
        """[n, K, lags]: the components' last ``lags`` values as known at each origin."""
        if self.mode == CAUSAL:
            return self.parts[origins - self.first][:, :, -lags:]
        return lag_matrix(self.parts[0], origins, lags)

    def current(self, length: int) -> np.ndarray:
        """[length, K]: each component's value at t as known at t (NaN before the first window)."""
        if self.mode == LEAKY:
            return self.parts[0].T
        out = np.full((length, self.parts.shape[1]), np.nan)
        out[self.first:] = self.parts[:, :, -1]
        return out


def eemd_components(values: np.ndarray, eemd, seed: int, max_imfs: int) -> np.ndarray:
    """[max_imfs + 1, len(values)]: the IMFs (zero rows where EEMD found fewer), then the residue."""
    eemd.noise_seed(seed)
    components = eemd.eemd(values, max_imf=max_imfs)  # with separate_trends: IMFs, then the mean residue
    out = np.zeros((max_imfs + 1, len(values)))
    out[:len(components) - 1] = components[:-1]
    out[-1] = components[-1]
    return out


def _decompose(values: np.ndarray, mode: str, window: int, trials: int, noise_width: float, seed: int,
               max_imfs: int) -> np.ndarray:
    from PyEMD import EEMD

    eemd = EEMD(trials=trials, noise_width=noise_width, parallel=False, separate_trends=True)
    if mode == LEAKY:
        return eemd_components(values, eemd, seed, max_imfs)[None]
    ends = tqdm(range(window, len(values) + 1), desc="EEMD windows", leave=False, disable=None)
    return np.stack([eemd_components(values[end - window:end], eemd, seed, max_imfs) for end in ends])


def cache_dir() -> Path:
    return Path(os.environ.get("SELFSUP_CACHE", Path.home() / ".cache" / "selfsup")) / "eemd"


def cache_key(values: np.ndarray, settings: dict) -> str:
    from importlib.metadata import version

    digest = hashlib.sha256(np.ascontiguousarray(values, dtype=np.float64).tobytes())
    digest.update(json.dumps({**settings, "pyemd": version("EMD-signal"), "layout": LAYOUT}, sort_keys=True).encode())
    return digest.hexdigest()[:32]


def _read_cache(path: Path) -> tuple[np.ndarray, float] | None:
    try:
        with np.load(path) as saved:
            return saved["parts"], float(saved["seconds"])
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):  # absent or damaged: decompose again
        return None


def _write_cache(path: Path, parts: np.ndarray, seconds: float) -> None:
    """Atomically; a cache that cannot be written only costs time, so it is a note, not an error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, parts=parts, seconds=seconds)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError as exc:
        print(f"note: could not cache the EEMD in {path.parent} ({exc.strerror}); set SELFSUP_CACHE to a writable "
              "directory", file=sys.stderr)


def decompose(values: np.ndarray, mode: str = CAUSAL, window: int = 96, trials: int = 100, noise_width: float = 0.05,
              seed: int = 0, max_imfs: int = 6) -> Decomposition:
    """The decomposition of ``values`` (see the module docstring), from the cache when it holds it."""
    settings = {"mode": mode, "window": window if mode == CAUSAL else None, "trials": trials,
                "noise_width": noise_width, "seed": seed, "max_imfs": max_imfs}
    path = cache_dir() / f"{cache_key(values, settings)}.npz"
    start = time.perf_counter()
    cached = _read_cache(path)
    if cached is not None:
        return Decomposition(mode, cached[0], cached[1], time.perf_counter() - start, True)
    count = len(values) - window + 1 if mode == CAUSAL else 1
    print(f"EEMD: {count} decomposition(s) of {window if mode == CAUSAL else len(values)} values, {trials} trials each "
          f"(cached in {path.parent} for the next run)", file=sys.stderr)
    parts = _decompose(np.asarray(values, dtype=np.float64), mode, window, trials, noise_width, seed, max_imfs)
    seconds = time.perf_counter() - start
    _write_cache(path, parts, seconds)
    return Decomposition(mode, parts, seconds, seconds, False)

"""Forecast samples: chronological splits, grouping of components, the networks' arrays.

A sample is a forecast origin t: inputs are values up to t, the target is the value at t + h.
A sample belongs to the part (train / validation / test) that holds its target time, the
parts being the first ``train`` fraction of the series, the next ``val`` fraction and the
rest.  So validation and test targets are the same for every model; models that need a
decomposition window start later and have fewer training samples.

Grouping (the paper's): Pearson correlation of each component, as known at t, with the
series at t over the training part.  |r| >= ``threshold`` makes a component closely related
(an auxiliary target of the multi-task models), any other non-constant one loosely related
(an input view of the multi-view models).  The paper gives no threshold; 0.3 is our default,
the conventional boundary of a moderate correlation (Cohen 1988), which on the registry's
series separates the slow IMFs and the residue, that follow the series, from the fast ones.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from ..errors import SelfSupError

MIN_TRAIN = 10  # training samples a run needs at the least (our choice: fewer fit nothing)


@dataclass(frozen=True)
class Plan:
    """Forecast origins of each part for a series of ``length`` values."""
    length: int
    train_end: int          # targets before this time are training targets
    val_end: int            # then validation targets up to here, test targets after
    first: int              # the first origin with enough history
    horizon: int

    def origins(self, part: str) -> np.ndarray:
        lo, hi = {"train": (0, self.train_end), "val": (self.train_end, self.val_end),
                  "test": (self.val_end, self.length)}[part]
        return np.arange(max(self.first, lo - self.horizon), hi - self.horizon)


def split_points(length: int, train: float, val: float) -> tuple[int, int]:
    return round(length * train), round(length * (train + val))


def _enough(length: int, first: int, horizon: int, train: float, val: float) -> bool:
    plan = Plan(length, *split_points(length, train, val), first, horizon)
    return len(plan.origins("train")) >= MIN_TRAIN and all(len(plan.origins(p)) for p in ("val", "test"))


def plan_samples(length: int, history: int, horizon: int, train: float, val: float, what: str) -> Plan:
    """The plan for origins that need ``history`` values up to themselves, or a clear error
    naming the shortest series that would do (``what`` says where the history comes from)."""
    first = history - 1
    if not _enough(length, first, horizon, train, val):
        needed = next(n for n in itertools.count(length + 1) if _enough(n, first, horizon, train, val))
        raise SelfSupError(f"the series has {length} values, too few for {what} and horizon {horizon}: with the "
                           f"split {train:g}/{val:g}/{1 - train - val:g} it needs at least {needed} values (at least "
                           f"{MIN_TRAIN} training samples, one validation and one test target); use a longer "
                           "series or smaller --lags/--window/--horizon")
    return Plan(length, *split_points(length, train, val), first, horizon)


def correlations(current: np.ndarray, target: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Pearson r of each column of ``current`` [N, K] with ``target`` [N] over ``times`` (0 for a constant column)."""
    x, y = current[times], target[times]
    x, y = x - x.mean(axis=0), y - y.mean()
    scale = np.sqrt((x ** 2).sum(axis=0) * (y ** 2).sum())
    return np.divide(x.T @ y, scale, out=np.zeros(x.shape[1]), where=scale > 0)


def group(r: np.ndarray, threshold: float) -> tuple[list[int], list[int]]:
    """(closely related, loosely related) component indices; constant components (r = 0 exactly) in neither."""
    close = [k for k, v in enumerate(r) if abs(v) >= threshold]
    loose = [k for k, v in enumerate(r) if 0 < abs(v) < threshold]
    return close, loose


def lag_matrix(channels: np.ndarray, origins: np.ndarray, lags: int) -> np.ndarray:
    """[n, C, lags]: the last ``lags`` values up to each origin of ``channels`` [C, N]."""
    idx = origins[:, None] + np.arange(1 - lags, 1)
    return channels[:, idx].transpose(1, 0, 2)


@dataclass(frozen=True)
class Arrays:
    """A part's network inputs [n, C, lags] and targets [n, tasks] (task 0: the series' change
    from the origin to t + h), and the series at each origin (``base``, the level the change is added to)."""
    inputs: np.ndarray
    targets: np.ndarray
    base: np.ndarray


def network_arrays(values: np.ndarray, extras: np.ndarray, decomposition, views: list[int], aux: list[int],
                   origins: np.ndarray, lags: int, horizon: int) -> Arrays:
    """Inputs: the series relative to its value at the origin, the extra channels, then the view
    components; targets: the series' change to t + h and the auxiliary components at t + h (as
    known at t + h, so from training-part values for training samples).

    Series values relative to the origin's are our choice: a network standardised on the
    training part cannot forecast levels a trending series (co2) only reaches later."""
    base = values[origins]
    series = lag_matrix(values[None], origins, lags) - base[:, None, None]
    inputs = [series, lag_matrix(extras, origins, lags)]
    targets = [(values[origins + horizon] - base)[:, None]]
    if views:
        inputs.append(decomposition.lagged(origins, lags)[:, views])
    if aux:
        targets.append(decomposition.current(len(values))[origins + horizon][:, aux])
    return Arrays(np.concatenate(inputs, axis=1), np.concatenate(targets, axis=1), base)


@dataclass(frozen=True)
class Scaler:
    """Per-channel standardisation with the training samples' statistics (1 for a constant channel)."""
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, data: np.ndarray, axes: tuple[int, ...]) -> "Scaler":
        std = data.std(axis=axes, keepdims=True)
        return cls(data.mean(axis=axes, keepdims=True), np.where(std > 0, std, 1.0))

    def __call__(self, data: np.ndarray) -> np.ndarray:
        return (data - self.mean) / self.std

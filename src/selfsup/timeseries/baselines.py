"""Forecasts without a network: persistence, seasonal naive and autoregression.

Each returns the forecast of the value at t + h for every origin t in ``origins``, from the
actual values up to t.
"""
from __future__ import annotations

import math

import numpy as np

from .samples import lag_matrix


def persistence(values: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
    """The last observed value."""
    return values[origins]


def seasonal_naive(values: np.ndarray, origins: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """The latest observed value of the target's season: y[t + h - s * ceil(h / s)]."""
    return values[origins + horizon - season * math.ceil(horizon / season)]


def autoregression(values: np.ndarray, train_end: int, origins: np.ndarray, lags: int,
                   horizon: int) -> tuple[np.ndarray, list[float]]:
    """(forecasts, parameters) of statsmodels' ``AutoReg(lags, trend="c")`` fitted on the training
    part; from each origin, h steps recursively, each step feeding its forecast back as the newest value."""
    from statsmodels.tsa.ar_model import AutoReg

    params = AutoReg(values[:train_end], lags=lags).fit().params
    history = lag_matrix(values[None], origins, lags)[:, 0]          # oldest ... newest
    for _ in range(horizon):
        step = params[0] + history[:, ::-1] @ params[1:]              # params: const, lag 1, ..., lag p
        history = np.concatenate([history[:, 1:], step[:, None]], axis=1)
    return step, [float(p) for p in params]

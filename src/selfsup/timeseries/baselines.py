"""Forecasts without a network: persistence, seasonal naive, autoregression and a linear model on lags.

Persistence and seasonal naive return the forecast of the value at t + h for every origin t in
``origins``, from the actual values up to t; autoregression returns those forecasts with the
fitted parameters, and the linear model on lags takes the network's sample arrays and returns
forecasts of each part with its details.
"""
from __future__ import annotations

import math

import numpy as np

from .samples import Arrays, lag_matrix


def persistence(values: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
    """The last observed value."""
    return values[origins]


def seasonal_naive(values: np.ndarray, origins: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """The latest observed value of the target's season: y[t + h - s * ceil(h / s)]."""
    return values[origins + horizon - season * math.ceil(horizon / season)]


def autoregression(values: np.ndarray, train_end: int, origins: np.ndarray, lags: int, horizon: int,
                   first_origin: int) -> tuple[np.ndarray, dict]:
    """(forecasts, details) of statsmodels' ``AutoReg(lags, trend="c")`` fitted on the training
    part's one-step targets after ``first_origin`` (``hold_back``: the samples every model
    shares); from each origin, h steps recursively, each step feeding its forecast back as the newest value."""
    from statsmodels.tsa.ar_model import AutoReg

    params = AutoReg(values[:train_end], lags=lags, hold_back=first_origin + 1).fit().params
    history = lag_matrix(values[None], origins, lags)[:, 0]          # oldest ... newest
    for _ in range(horizon):
        step = params[0] + history[:, ::-1] @ params[1:]              # params: const, lag 1, ..., lag p
        history = np.concatenate([history[:, 1:], step[:, None]], axis=1)
    return step, {"ar_params": [float(p) for p in params]}


def linear_on_lags(train: Arrays, parts: dict) -> tuple[dict, dict]:
    """A least-squares linear model (scikit-learn ``LinearRegression``, with an intercept) from the
    network's inputs (``samples.network_arrays``: the last lags relative to the origin's value,
    and any extra channels) to the series' change to t + h, fitted on the training samples;
    (forecasts of each part in ``parts``, details)."""
    from sklearn.linear_model import LinearRegression

    flat = lambda a: a.inputs.reshape(len(a.inputs), -1)
    model = LinearRegression().fit(flat(train), train.targets[:, 0])
    forecasts = {name: a.base + model.predict(flat(a)) for name, a in parts.items()}
    return forecasts, {"linear": {"intercept": float(model.intercept_), "coefficients": model.coef_.tolist()}}

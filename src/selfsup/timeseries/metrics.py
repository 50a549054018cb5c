"""Forecast errors: NRMSE (the paper's measure) and MAE."""
from __future__ import annotations

import numpy as np

NRMSE_DEFINITION = ("RMSE of the forecasts divided by the standard deviation (population, ddof=0) of the targets "
                    "they forecast, both in the series' units; 1.0 is the error of always forecasting their mean")


def nrmse(forecast: np.ndarray, target: np.ndarray) -> float:
    rmse = np.sqrt(np.mean((np.asarray(forecast) - np.asarray(target)) ** 2))
    return float(rmse / np.std(target))


def mae(forecast: np.ndarray, target: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(forecast) - np.asarray(target))))

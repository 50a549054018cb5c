"""ETS and ARIMA (statsmodels): chosen and fitted on the training part, then filtered forward.

Both follow the automatic procedures of Hyndman & Khandakar 2008 (R's ``forecast::ets`` and
``auto.arima``) on a small grid, every choice made on the training values alone:

- ETS (``ETSModel``): additive or multiplicative errors (multiplicative only for a positive
  series), no / additive / damped additive trend, no / additive / multiplicative seasonality
  with the series' season (seasonal only when the training part holds two seasons); additive
  errors with multiplicative seasonality are left out, as ``ets`` leaves them out (unstable).
  The lowest AIC wins.
- ARIMA (``ARIMA``): d, the number of differences until the KPSS test (5%) no longer rejects
  stationarity (at most 2, ``auto.arima``'s rule), then (p, q) with p, q in 0..3 by AIC, with
  a constant when d = 0.  Non-seasonal: the seasonal models are ETS's part of the comparison.

A fit whose optimiser fails or whose AIC is not finite is skipped.  Forecasts never refit:
the chosen model with the training part's parameters is run over the whole series (ETS
``smooth``, ARIMA ``apply``), and the forecast from origin t is its dynamic prediction of
t + 1 ... t + h, which reads the values up to t only.
"""
from __future__ import annotations

import itertools
import warnings

import numpy as np

from ..errors import SelfSupError

ARIMA_MAX_P = ARIMA_MAX_Q = 3
MAX_DIFFERENCES = 2
KPSS_LEVEL = 0.05


def _quietly(fit):
    """``fit()`` without statsmodels' convergence and interpolation warnings; None when it fails."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            result = fit()
        except (ValueError, np.linalg.LinAlgError):
            return None
    return result if np.isfinite(result.aic) else None


def _best(candidates: dict, what: str):
    """(spec, fitted result) of the lowest AIC among ``candidates`` (spec -> fit function)."""
    fitted = {spec: _quietly(fit) for spec, fit in candidates.items()}
    fitted = {spec: result for spec, result in fitted.items() if result is not None}
    if not fitted:
        raise SelfSupError(f"no {what} model could be fitted on the training part; use a longer series")
    spec = min(fitted, key=lambda s: fitted[s].aic)
    return spec, fitted[spec]


def dynamic_forecasts(filtered, origins: np.ndarray, horizon: int) -> np.ndarray:
    """From each origin t, the h-step forecast of ``filtered`` (a statsmodels result over the
    whole series) made from the values up to t: its dynamic prediction from t + 1 on."""
    return np.array([filtered.predict(start=int(t) + 1, end=int(t) + horizon, dynamic=0)[-1] for t in origins])


def ets_specs(train: np.ndarray, season: int | None) -> list[dict]:
    """The ETS grid for these training values (see the module docstring)."""
    positive = bool((train > 0).all())
    seasonals = [None]
    if season and season > 1 and len(train) >= 2 * season:
        seasonals += ["add", "mul"] if positive else ["add"]
    specs = []
    for error, (trend, damped), seasonal in itertools.product(
            ["add", "mul"] if positive else ["add"], [(None, False), ("add", False), ("add", True)], seasonals):
        if error == "add" and seasonal == "mul":
            continue
        specs.append({"error": error, "trend": trend, "damped_trend": damped, "seasonal": seasonal,
                      "seasonal_periods": season if seasonal else None})
    return specs


def ets(values: np.ndarray, train_end: int, origins: np.ndarray, horizon: int,
        season: int | None) -> tuple[np.ndarray, dict]:
    """(forecasts, details): the ETS model of lowest AIC on ``values[:train_end]``, filtered over
    the whole series with those parameters."""
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    train = values[:train_end]
    specs = {tuple(spec.items()): (lambda spec=spec: ETSModel(train, **spec).fit(disp=False))
             for spec in ets_specs(train, season)}
    spec, fitted = _best(specs, "ETS")
    spec = dict(spec)
    if "mul" in spec.values() and (values <= 0).any():
        raise SelfSupError("the ETS model chosen on the (positive) training part is multiplicative, and the series "
                           "has values <= 0 after it; shift the series above 0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        filtered = ETSModel(values, **spec).smooth(fitted.params)
    return dynamic_forecasts(filtered, origins, horizon), {
        "ets": {**spec, "aic": float(fitted.aic), "candidates": len(specs),
                "params": {name: float(v) for name, v in zip(fitted.param_names, fitted.params)}}}


def differences_needed(train: np.ndarray) -> int:
    """auto.arima's d: difference until the KPSS test at 5% does not reject level stationarity."""
    from statsmodels.tsa.stattools import kpss

    series = train
    for d in range(MAX_DIFFERENCES):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # KPSS warns when its p-value is outside its table
            if kpss(series, regression="c", nlags="auto")[1] >= KPSS_LEVEL:
                return d
        series = np.diff(series)
    return MAX_DIFFERENCES


def arima(values: np.ndarray, train_end: int, origins: np.ndarray, horizon: int) -> tuple[np.ndarray, dict]:
    """(forecasts, details): the ARIMA(p, d, q) of lowest AIC on ``values[:train_end]`` (d by
    KPSS), applied to the whole series with those parameters."""
    from statsmodels.tsa.arima.model import ARIMA

    train = values[:train_end]
    d = differences_needed(train)
    trend = "c" if d == 0 else "n"
    orders = {(p, d, q): (lambda order=(p, d, q): ARIMA(train, order=order, trend=trend).fit())
              for p, q in itertools.product(range(ARIMA_MAX_P + 1), range(ARIMA_MAX_Q + 1))}
    order, fitted = _best(orders, "ARIMA")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        filtered = fitted.apply(values)
    return dynamic_forecasts(filtered, origins, horizon), {
        "arima": {"order": list(order), "trend": trend, "aic": float(fitted.aic), "candidates": len(orders),
                  "params": {name: float(v) for name, v in zip(fitted.param_names, fitted.params)}}}

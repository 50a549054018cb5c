"""Time-series forecasting: self-boosted forecasting and its baselines.

Nguyen et al. 2019, "Self-boosted time-series forecasting with multi-task and multi-view
learning": EEMD decomposes a univariate series into intrinsic mode functions (IMFs); the
components closely correlated with the target become auxiliary forecast targets
(multi-task), the loosely correlated ones extra input views (multi-view).  Here:

- ``series``   the offline registry (statsmodels' data sets) and CSV files;
- ``eemd``     causal sliding-window EEMD (no look-ahead) or the paper's whole-series EEMD, cached;
- ``samples``  chronological splits, grouping by correlation, network inputs and targets;
- ``baselines`` persistence, seasonal naive, autoregression, a linear model on the lags;
  ``statespace`` ETS and ARIMA; ``representation`` TS2Vec's ridge protocol (``ts2vec-ridge``);
  ``metrics`` NRMSE and MAE;
- ``network``  the dilated causal conv + GRU network as a Lightning module;
- ``run``      the ``selfsup forecast`` run directory.

They need the ``timeseries`` extra (statsmodels, EMD-signal, aeon); ``require_extra`` says so.
"""
from __future__ import annotations

import importlib

from ..errors import SelfSupError


def require_extra() -> None:
    """Import statsmodels, PyEMD and aeon, or raise one error naming the extra that installs them."""
    missing = []
    for module, package in (("statsmodels", "statsmodels"), ("PyEMD", "EMD-signal"), ("aeon", "aeon")):
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(package)
    if missing:
        raise SelfSupError(f"forecasting needs {' and '.join(missing)}, which are not installed; "
                           "install them with: pip install -e .[timeseries]")

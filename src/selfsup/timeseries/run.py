"""``selfsup forecast``: settings and one forecasting run.

Its run directory (``selfsup.rundir``; checkpoints for network models only) also holds
``predictions.csv``, the validation and test forecasts.
"""
from __future__ import annotations

import copy
import csv
import io
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import merge, parse_assignment
from ..errors import SelfSupError
from ..io import atomic_write_text, ensure_writable_dir
from ..rundir import RunDirectory
from . import require_extra
from .eemd import CAUSAL, LEAKY, Decomposition, decompose
from .metrics import NRMSE_DEFINITION, mae, nrmse
from .samples import Arrays, Plan, Scaler, correlations, group, network_arrays, plan_samples
from .series import Series, load_csv_series, load_registry_series, registry_entry


FAMILIES = ("classical", "network", "representation")


@dataclass(frozen=True)
class Model:
    description: str
    family: str             # one of FAMILIES: the forecast suite compares the best of each
    uses_lags: bool = True  # reads the last --lags values (otherwise --lags only moves the shared first origin)
    extras: bool = False    # reads the extra CSV columns too (the network's lag inputs)
    aux: bool = False       # closely related components as auxiliary targets (multi-task)
    views: bool = False     # loosely related components as extra inputs (multi-view)

    @property
    def decomposes(self) -> bool:
        return self.aux or self.views

    @property
    def network(self) -> bool:
        return self.family == "network"

    @property
    def seeded(self) -> bool:
        """Whether its forecasts depend on the training seed (a network or an encoder trained by gradient)."""
        return self.family != "classical"


def _network(description: str, aux: bool = False, views: bool = False) -> Model:
    return Model(description, "network", extras=True, aux=aux, views=views)


MODELS: dict[str, Model] = {
    "persistence": Model("the last observed value", "classical", uses_lags=False),
    "seasonal-naive": Model("the last observed value of the same season (--season or the series')", "classical",
                            uses_lags=False),
    "ar": Model("statsmodels AutoReg(lags) fitted on the training samples, h steps recursively", "classical"),
    "ets": Model("statsmodels ETSModel, error/trend/seasonality chosen by AIC on the training part, filtered forward "
                 "with those parameters", "classical", uses_lags=False),
    "arima": Model("statsmodels ARIMA(p,d,q), d by KPSS and (p,q) by AIC on the training part, filtered forward with "
                   "those parameters", "classical", uses_lags=False),
    "linear": Model("least squares on the network's lag inputs, fitted on the training samples", "classical",
                    extras=True),
    "plain": _network("the network on the series' lags only"),
    "mtl": _network("the network, closely related EEMD components as auxiliary targets (multi-task)", aux=True),
    "mtv": _network("the network, loosely related EEMD components as extra input views (multi-view)", views=True),
    "self-boosted": _network("the network with both: auxiliary targets and input views (Nguyen et al. 2019)",
                             aux=True, views=True),
    "ts2vec-ridge": Model("TS2Vec encoder trained on the training part, ridge from the representation at the origin "
                          "(Yue et al. 2022)", "representation", uses_lags=False),
}
ORIGINS = ("shared", "own")

# Defaults.  From the paper: EEMD, grouping by Pearson correlation, the conv-GRU network
# trained with MSE and Adam, one-step forecasts, NRMSE.  From PyEMD / EEMD practice: 100
# trials, noise width 0.05.  Ours: the rest (see the docstrings of eemd, samples, network).
DEFAULTS = {
    "model": None, "series": None, "csv": None, "columns": None, "date_column": None, "interpolate": False,
    "season": None, "lags": 6, "horizon": 1, "seed": 0,
    "split": {"train": 0.7, "val": 0.1, "origins": "shared"},
    "decomposition": {"mode": CAUSAL, "window": 96, "trials": 100, "noise_width": 0.05, "seed": 0, "max_imfs": 6,
                      "threshold": 0.3},
    "network": {"epochs": 100, "batch_size": 32, "lr": 1.0e-3, "weight_decay": 0.0, "channels": 32, "hidden": 32,
                "dense": 32, "kernel_size": 2, "aux_weight": 0.5},
    "representation": {"steps": 200, "padding": 200},  # ts2vec-ridge (representation.py): the TS2Vec code's
    "trainer": {"accelerator": "cpu", "progress_bar": False},  # runs take seconds: no bar unless asked
}

# Settings with a flag of their own, for error messages.
FLAGS = {"lags": "--lags", "horizon": "--horizon", "seed": "--seed", "season": "--season",
         "network.epochs": "--epochs", "decomposition.window": "--window", "decomposition.trials": "--eemd-trials",
         "decomposition.noise_width": "--noise-width", "decomposition.seed": "--eemd-seed",
         "decomposition.max_imfs": "--max-imfs", "decomposition.threshold": "--threshold"}


def _given(flags: dict) -> dict:
    """``flags`` without the options that were not given (None)."""
    return {k: _given(v) if isinstance(v, dict) else v for k, v in flags.items() if v is not None}


def forecast_config(flags: dict, assignments: list[str] | None = None) -> dict:
    """DEFAULTS, then ``flags`` (nested like DEFAULTS; None: not given), then ``--set`` assignments;
    the series' column and season filled in, every value checked."""
    cfg = merge(copy.deepcopy(DEFAULTS), _given(flags))
    for text in assignments or []:
        cfg = merge(cfg, parse_assignment(text))
    _resolve_source(cfg)
    validate(cfg)
    return cfg


def _resolve_source(cfg: dict) -> None:
    if (cfg["series"] is None) == (cfg["csv"] is None):
        raise SelfSupError("give either --series NAME or --csv FILE --column C")
    if cfg["csv"] is not None:
        if not cfg["columns"]:
            raise SelfSupError("--csv needs --column NAME (the target; repeat the flag for extra input columns)")
        return
    entry = registry_entry(cfg["series"])
    if cfg["columns"] not in (None, [entry.column]) or cfg["date_column"] is not None:
        raise SelfSupError("--column and --date-column choose columns of a --csv file; a registry series has one")
    cfg["columns"] = [entry.column]
    cfg["season"] = cfg["season"] or entry.season


def _check(cfg: dict, key: str, ok, wanted: str) -> None:
    value = cfg
    for part in key.split("."):
        value = value[part]
    if isinstance(value, bool) or not ok(value):
        raise SelfSupError(f"{FLAGS.get(key, key)} must be {wanted}, got {value!r}")


def validate(cfg: dict) -> None:
    """Range checks of every option; unknown model or mode names list the known ones."""
    if cfg["model"] not in MODELS:
        raise SelfSupError(f"unknown model '{cfg['model']}'; choose one of: {', '.join(MODELS)}")
    if cfg["decomposition"]["mode"] not in (CAUSAL, LEAKY):
        raise SelfSupError(f"decomposition.mode must be {CAUSAL} or {LEAKY}, got {cfg['decomposition']['mode']!r}")
    if cfg["split"]["origins"] not in ORIGINS:
        raise SelfSupError(f"split.origins must be {' or '.join(ORIGINS)}, got {cfg['split']['origins']!r}")
    integers = ["lags", "horizon", "network.epochs", "network.batch_size", "network.channels", "network.hidden",
                "network.dense", "network.kernel_size", "decomposition.trials", "decomposition.max_imfs",
                "representation.steps"]
    for key in integers:
        _check(cfg, key, lambda v: isinstance(v, int) and v >= 1, "an integer of at least 1")
    for key in ("seed", "decomposition.seed", "representation.padding"):
        _check(cfg, key, lambda v: isinstance(v, int) and v >= 0, "a non-negative integer")
    _check(cfg, "season", lambda v: v is None or (isinstance(v, int) and v >= 1), "an integer of at least 1")
    if uses_window(cfg):
        _check(cfg, "decomposition.window", lambda v: isinstance(v, int) and v >= max(cfg["lags"], 2),
               f"an integer of at least --lags ({cfg['lags']}) and 2")
    for key in ("decomposition.noise_width", "network.lr"):
        _check(cfg, key, lambda v: isinstance(v, (int, float)) and v > 0, "a positive number")
    for key in ("network.aux_weight", "network.weight_decay"):
        _check(cfg, key, lambda v: isinstance(v, (int, float)) and v >= 0, "a non-negative number")
    _check(cfg, "decomposition.threshold", lambda v: isinstance(v, (int, float)) and 0 <= v <= 1,
           "a correlation between 0 and 1")
    for key in ("split.train", "split.val"):
        _check(cfg, key, lambda v: isinstance(v, (int, float)) and 0 < v < 1, "a fraction between 0 and 1")
    if cfg["split"]["train"] + cfg["split"]["val"] >= 1:
        raise SelfSupError("split.train + split.val must leave a test part (sum below 1)")
    if cfg["model"] == "seasonal-naive" and cfg["season"] is None:
        where = f"series '{cfg['series']}' has no known season" if cfg["series"] else "a CSV series has no known season"
        raise SelfSupError(f"seasonal-naive needs a season: {where}; pass --season N (e.g. 12 for monthly data)")


def load_series(cfg: dict) -> Series:
    if cfg["series"] is not None:
        return load_registry_series(cfg["series"])
    return load_csv_series(cfg["csv"], cfg["columns"], cfg["date_column"], cfg["interpolate"])


def uses_window(cfg: dict) -> bool:
    return MODELS[cfg["model"]].decomposes and cfg["decomposition"]["mode"] == CAUSAL


def make_plan(cfg: dict, length: int) -> Plan:
    """The forecast origins.  With ``split.origins`` shared (the default) every model starts at the
    first origin a decomposition window allows (``max(window, lags)`` values of history), so all
    models train on the same samples and are scored on the same targets; ``own`` starts a model
    that decomposes nothing at its own first origin (``lags`` values)."""
    window, lags = cfg["decomposition"]["window"], cfg["lags"]
    if cfg["split"]["origins"] == "shared":
        history = max(window, lags)
        what = (f"a {window}-value decomposition window (every model's first origin; a model without a "
                "decomposition starts at its own with --set split.origins=own)") if window > lags else f"{lags} lags"
    else:
        history = window if uses_window(cfg) else lags
        what = f"a {window}-value decomposition window" if uses_window(cfg) else f"{lags} lags"
    plan = plan_samples(length, history, cfg["horizon"], cfg["split"]["train"], cfg["split"]["val"], what)
    if cfg["model"] == "seasonal-naive" and plan.train_end < cfg["season"] * math.ceil(cfg["horizon"] / cfg["season"]):
        raise SelfSupError(f"seasonal-naive with season {cfg['season']} looks further back than the training part "
                           f"({plan.train_end} values) reaches; use a longer series or a shorter --season")
    return plan


def _components(decomposition: Decomposition, values: np.ndarray, plan: Plan, cfg: dict) -> tuple[dict, list, list]:
    """(metrics.json's description, auxiliary indices, view indices): correlations with the
    series over the training part, the groups, and which of them this model uses."""
    model = MODELS[cfg["model"]]
    r = correlations(decomposition.current(len(values)), values, np.arange(decomposition.first, plan.train_end))
    close, loose = group(r, cfg["decomposition"]["threshold"])
    names = decomposition.names
    aux, views = close if model.aux else [], loose if model.views else []
    return {"names": names, "correlations": {n: round(float(v), 4) for n, v in zip(names, r)},
            "threshold": cfg["decomposition"]["threshold"],
            "closely_related": [names[k] for k in close], "loosely_related": [names[k] for k in loose],
            "constant": [names[k] for k, v in enumerate(r) if v == 0],
            "auxiliary": [names[k] for k in aux], "views": [names[k] for k in views]}, aux, views


def _lag_arrays(cfg: dict, series: Series, plan: Plan, decomposition=None, views=(), aux=()) -> dict:
    """Each part's network inputs and targets (``samples.network_arrays``)."""
    return {part: network_arrays(series.values, series.extras, decomposition, list(views), list(aux),
                                 plan.origins(part), cfg["lags"], cfg["horizon"]) for part in ("train", "val", "test")}


def _network_forecasts(cfg: dict, out: Path, series: Series, plan: Plan, decomposition, aux: list, views: list,
                       ckpt: Path | None) -> tuple[dict, dict]:
    from .network import train_network

    arrays = _lag_arrays(cfg, series, plan, decomposition, views, aux)
    x_scale = Scaler.fit(arrays["train"].inputs, (0, 2))
    y_scale = Scaler.fit(arrays["train"].targets, (0,))
    scaled = {part: Arrays(x_scale(a.inputs), y_scale(a.targets), a.base) for part, a in arrays.items()}
    val_levels = series.values[plan.origins("val") + plan.horizon]
    module, seconds = train_network(cfg, out, scaled["train"], scaled["val"], ckpt,
                                    nrmse_scale=float(y_scale.std[0, 0] / np.std(val_levels)))
    forecasts = {part: arrays[part].base + module.predict_main(scaled[part].inputs) * y_scale.std[0, 0]
                 + y_scale.mean[0, 0] for part in ("val", "test")}
    return forecasts, {"train_seconds": round(seconds, 2), "epochs": cfg["network"]["epochs"],
                       "best_epoch": module.best_epoch, "input_channels": int(arrays["train"].inputs.shape[1]),
                       "tasks": int(arrays["train"].targets.shape[1]), "history": module.history,
                       "resumed_from": str(ckpt) if ckpt else None}


def _classical_forecasts(cfg: dict, series: Series, plan: Plan) -> tuple[dict, dict]:
    from .baselines import autoregression, linear_on_lags, persistence, seasonal_naive
    from .statespace import arima, ets

    values, h, start, name = series.values, cfg["horizon"], time.perf_counter(), cfg["model"]
    val, test = plan.origins("val"), plan.origins("test")
    both = np.concatenate([val, test])
    if name == "linear":
        arrays = _lag_arrays(cfg, series, plan)
        forecasts, details = linear_on_lags(arrays["train"], {"val": arrays["val"], "test": arrays["test"]})
    elif name in ("ar", "ets", "arima"):
        forecast, details = {"ar": lambda: autoregression(values, plan.train_end, both, cfg["lags"], h, plan.first),
                             "ets": lambda: ets(values, plan.train_end, both, h, cfg["season"]),
                             "arima": lambda: arima(values, plan.train_end, both, h)}[name]()
        forecasts = {"val": forecast[:len(val)], "test": forecast[len(val):]}
    elif name == "seasonal-naive":
        forecasts = {p: seasonal_naive(values, o, h, cfg["season"]) for p, o in (("val", val), ("test", test))}
        details = {"season": cfg["season"]}
    else:
        forecasts = {p: persistence(values, o, h) for p, o in (("val", val), ("test", test))}
        details = {}
    return forecasts, {"train_seconds": round(time.perf_counter() - start, 4), **details}


def _predictions_csv(plan: Plan, values: np.ndarray, forecasts: dict) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["part", "origin", "target_time", "target", "forecast"])
    for part in ("val", "test"):
        for t, f in zip(plan.origins(part), forecasts[part]):
            target = t + plan.horizon
            writer.writerow([part, int(t), int(target), repr(float(values[target])), repr(float(f))])
    return buffer.getvalue()


def run_forecast(cfg: dict, out: Path, resume: bool = False) -> dict:
    """One run of ``cfg`` (from ``forecast_config``) into ``out``; returns metrics.json's dict.
    Every check of the input comes before anything is written."""
    require_extra()
    out, model, d = Path(out), MODELS[cfg["model"]], cfg["decomposition"]
    series = load_series(cfg)
    plan = make_plan(cfg, len(series.values))
    run = RunDirectory(out)
    ckpt = run.start(cfg, resume)
    ensure_writable_dir(out)
    decomposition, components, aux, views = None, None, [], []
    if model.decomposes:
        decomposition = decompose(series.values, d["mode"], d["window"], d["trials"], d["noise_width"], d["seed"],
                                  d["max_imfs"])
        components, aux, views = _components(decomposition, series.values, plan, cfg)
    run.write_config(cfg)
    if model.network:
        forecasts, details = _network_forecasts(cfg, out, series, plan, decomposition, aux, views, ckpt)
    elif model.family == "representation":
        from .representation import ts2vec_ridge

        forecasts, details = ts2vec_ridge(cfg, out, series.values, plan, ckpt)
    else:
        forecasts, details = _classical_forecasts(cfg, series, plan)
    targets = {p: series.values[plan.origins(p) + plan.horizon] for p in ("val", "test")}
    metrics = {
        "model": cfg["model"], "series": series.name, "target": cfg["columns"][0],
        "extra_inputs": list(series.extra_names) if model.extras else [],
        "lags": cfg["lags"], "horizon": cfg["horizon"],
        "nrmse": nrmse(forecasts["test"], targets["test"]), "mae": mae(forecasts["test"], targets["test"]),
        "val_nrmse": nrmse(forecasts["val"], targets["val"]), "val_mae": mae(forecasts["val"], targets["val"]),
        "nrmse_definition": NRMSE_DEFINITION,
        "n_train": len(plan.origins("train")), "n_val": len(plan.origins("val")), "n_test": len(plan.origins("test")),
        "first_origin": plan.first, "origins": cfg["split"]["origins"], "family": model.family,
        "decomposition": d["mode"] if model.decomposes else "none",
        "leaky": bool(model.decomposes and d["mode"] == LEAKY),
        "components": components,
        "eemd_seconds": round(decomposition.seconds, 3) if decomposition else 0.0,
        "eemd_seconds_when_computed": round(decomposition.computed_seconds, 3) if decomposition else 0.0,
        "eemd_decompositions": decomposition.count if decomposition else 0,
        "cache_hit": decomposition.cache_hit if decomposition else None,
        "seed": cfg["seed"], **details,
    }
    atomic_write_text(out / "predictions.csv", _predictions_csv(plan, series.values, forecasts))
    return run.finish(metrics)


def default_out(cfg: dict) -> Path:
    source = cfg["series"] or Path(cfg["csv"]).stem
    return Path("runs") / f"forecast-{source}-{cfg['model']}-lag{cfg['lags']}"


def summary(metrics: dict, out: Path) -> str:
    leaky = " [leaky: whole-series EEMD sees the future]" if metrics["leaky"] else ""
    return (f"{metrics['model']} on {metrics['series']} (lags {metrics['lags']}, horizon {metrics['horizon']}, "
            f"decomposition {metrics['decomposition']}){leaky}: test NRMSE {metrics['nrmse']:.4f}, MAE "
            f"{metrics['mae']:.4g} over {metrics['n_test']} targets\n  results in {out}/metrics.json")

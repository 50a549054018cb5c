"""selfsup forecast: ETS, ARIMA, the linear model on lags, TS2Vec's ridge protocol, the shared
origins, and the suite's family and before/after comparisons."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from selfsup.cli import main
from selfsup.errors import SelfSupError
from selfsup.timeseries.baselines import autoregression, linear_on_lags
from selfsup.timeseries.samples import network_arrays
from selfsup.timeseries.statespace import arima, ets
from support import interrupt_after_second_epoch

for _module in ("statsmodels", "PyEMD", "sklearn"):
    pytest.importorskip(_module, reason="needs the timeseries extra: pip install -e .[timeseries]")

pytestmark = pytest.mark.usefixtures("private_eemd_cache")

# Tiny budgets: every model runs in seconds on one core.
TINY = ["--eemd-trials", "2", "--window", "32", "--max-imfs", "3", "--epochs", "1", "--set", "representation.steps=2",
        "--set", "representation.padding=40"]


def seasonal_series(n: int = 160, seed: int = 0) -> np.ndarray:
    t = np.arange(n)
    rng = np.random.default_rng(seed)
    return 20 + 0.05 * t + 2 * np.sin(2 * np.pi * t / 12) + 0.3 * rng.standard_normal(n)


def write_series(path, values):
    path.write_text("y\n" + "\n".join(repr(float(v)) for v in values) + "\n")
    return path


def forecasts_of(out) -> dict:
    """{origin: forecast} of a run's predictions.csv."""
    with (out / "predictions.csv").open() as f:
        return {int(r["origin"]): float(r["forecast"]) for r in csv.DictReader(f)}


def metrics_of(out) -> dict:
    return json.loads((out / "metrics.json").read_text())


# --- each model against an independent computation -------------------------------------

def test_linear_model_is_least_squares_on_the_networks_lag_inputs():
    y = seasonal_series()
    lags, h = 5, 2
    train_origins, test_origins = np.arange(10, 100), np.arange(110, 150)
    none = np.zeros((0, len(y)))
    train, test = (network_arrays(y, none, None, [], [], o, lags, h) for o in (train_origins, test_origins))
    ours, _ = linear_on_lags(train, {"test": test})
    design = lambda o: np.c_[np.stack([y[t - lags + 1:t + 1] - y[t] for t in o]), np.ones(len(o))]
    coef = np.linalg.lstsq(design(train_origins), y[train_origins + h] - y[train_origins], rcond=None)[0]
    np.testing.assert_allclose(ours["test"], y[test_origins] + design(test_origins) @ coef, rtol=1e-9)


def test_ar_trains_on_the_targets_after_the_shared_first_origin():
    y = seasonal_series()
    lags, first, train_end = 4, 30, 110
    _, details = autoregression(y, train_end, np.array([120]), lags, 1, first_origin=first)
    origins = np.arange(first, train_end - 1)
    design = np.c_[np.ones(len(origins)), np.stack([y[t - lags + 1:t + 1][::-1] for t in origins])]
    np.testing.assert_allclose(details["ar_params"], np.linalg.lstsq(design, y[origins + 1], rcond=None)[0],
                               rtol=1e-8)


@pytest.mark.parametrize("horizon", [1, 3])
def test_ets_forecasts_are_the_fitted_model_run_on_the_past_only(horizon):
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    y = seasonal_series()
    origins = np.array([115, 130, 150])
    ours, details = ets(y, 110, origins, horizon, season=12)
    spec = {k: details["ets"][k] for k in ("error", "trend", "damped_trend", "seasonal", "seasonal_periods")}
    assert details["ets"]["seasonal"] is not None  # the season is found on this series
    params = list(details["ets"]["params"].values())
    for t, forecast in zip(origins, ours):
        past = ETSModel(y[:t + 1], **spec).smooth(params)
        assert forecast == pytest.approx(past.forecast(horizon)[-1], rel=1e-8)


@pytest.mark.parametrize("horizon", [1, 3])
def test_arima_forecasts_are_the_fitted_model_run_on_the_past_only(horizon):
    from statsmodels.tsa.arima.model import ARIMA

    y = 50 + np.cumsum(0.1 + np.random.default_rng(2).standard_normal(160))  # a random walk: one difference
    origins = np.array([115, 130, 150])
    ours, details = arima(y, 110, origins, horizon)
    order = tuple(details["arima"]["order"])
    assert order[1] == 1
    fitted = ARIMA(y[:110], order=order, trend=details["arima"]["trend"]).fit()
    np.testing.assert_allclose(fitted.params, list(details["arima"]["params"].values()), rtol=1e-6)
    for t, forecast in zip(origins, ours):
        assert forecast == pytest.approx(fitted.apply(y[:t + 1]).forecast(horizon)[-1], rel=1e-8)


def test_orders_and_configurations_are_chosen_on_the_training_part_only():
    y = seasonal_series()
    changed = y.copy()
    changed[110:] = 1 + np.abs(np.random.default_rng(3).standard_normal(len(y) - 110)) * 50  # unlike the training part
    origins = np.array([120])
    for model in (lambda v: ets(v, 110, origins, 1, 12)[1]["ets"], lambda v: arima(v, 110, origins, 1)[1]["arima"]):
        assert model(y) == model(changed)
    if ets(y, 110, origins, 1, 12)[1]["ets"]["error"] == "mul":  # a multiplicative choice cannot run over values <= 0
        changed[130] = -1.0
        with pytest.raises(SelfSupError, match="shift the series above 0"):
            ets(changed, 110, origins, 1, 12)


def test_ridge_alpha_is_the_best_validation_score_refitted_on_training_samples():
    from selfsup.timeseries.representation import ALPHAS, ridge_forecasts

    rng = np.random.default_rng(0)
    features = {p: rng.standard_normal((n, 8)) for p, n in (("train", 60), ("val", 20), ("test", 20))}
    weights = rng.standard_normal(8)
    targets = {p: f @ weights + rng.standard_normal(len(f)) for p, f in features.items()}

    def closed_form(alpha):  # ridge with an unpenalised intercept: centre, solve, add the means back
        x, t = features["train"], targets["train"]
        w = np.linalg.solve((x - x.mean(0)).T @ (x - x.mean(0)) + alpha * np.eye(8), (x - x.mean(0)).T @ (t - t.mean()))
        return lambda f: (f - x.mean(0)) @ w + t.mean()

    def score(alpha):
        error = closed_form(alpha)(features["val"]) - targets["val"]
        return np.sqrt(np.mean(error ** 2)) + np.mean(np.abs(error))

    best = min(ALPHAS, key=score)
    predictions, details = ridge_forecasts(features, targets)
    assert details["ridge_alpha"] == best
    np.testing.assert_allclose(predictions["test"], closed_form(best)(features["test"]), rtol=1e-8)


def test_ts2vec_representation_of_an_origin_is_the_encoders_last_step_on_its_window(tmp_path):
    import torch

    from selfsup.timeseries.representation import encode_origins, train_encoder
    from selfsup.timeseries.run import forecast_config

    cfg = forecast_config({"csv": "toy.csv", "columns": ["y"], "model": "ts2vec-ridge",
                           "representation": {"steps": 2}})
    y = seasonal_series(90)
    method, norm, _ = train_encoder(cfg, tmp_path / "enc", y[:60], None)
    assert (tmp_path / "enc" / "checkpoints" / "last.ckpt").is_file()
    ours = encode_origins(method, norm, y, np.array([5, 70]), padding=10)
    with torch.no_grad():
        x = (torch.as_tensor(y, dtype=torch.float32) - norm.mean[0]) / norm.std[0]
        full = method.backbone.forward_sequence(x[60:71][None, None])[0, -1]   # 11 values ending at 70
        keep = torch.arange(11) >= 5                                           # 5 steps before the series' start
        short = torch.cat([torch.zeros(5), x[:6]])
        early = method.backbone.forward_sequence(short[None, None], keep[None])[0, -1]
    np.testing.assert_allclose(ours, torch.stack([early, full]).numpy(), rtol=1e-4, atol=1e-5)


# --- through the command line: no look-ahead, shared origins ----------------------------

@pytest.mark.parametrize("model", ["ets", "arima", "linear", "ar", "ts2vec-ridge"])
def test_forecasts_at_t_do_not_change_when_later_values_change(model, tmp_path):
    y = seasonal_series()
    t = 140  # in the test part (the last 20% start at 128)
    changed = y.copy()
    changed[t + 1:] += np.random.default_rng(1).standard_normal(len(y) - t - 1) * 5
    runs = {}
    for name, values in (("original", y), ("changed", changed)):
        out = tmp_path / name
        assert main(["forecast", "--csv", str(write_series(tmp_path / f"{name}.csv", values)), "--column", "y",
                     "--model", model, "--season", "12", *TINY, "--out", str(out)]) == 0
        runs[name] = forecasts_of(out)
    before = {o: f for o, f in runs["original"].items() if o <= t}
    assert before == {o: f for o, f in runs["changed"].items() if o <= t} and len(before) > 20
    assert any(runs["original"][o] != runs["changed"][o] for o in runs["original"] if o > t)


def test_every_model_has_the_same_origins_and_training_samples(tmp_path):
    from selfsup.timeseries.run import MODELS

    csv_file = write_series(tmp_path / "toy.csv", seasonal_series())
    seen = {}
    for model in MODELS:
        out = tmp_path / model
        assert main(["forecast", "--csv", str(csv_file), "--column", "y", "--model", model, "--season", "12",
                     "--lags", "4", *TINY, "--out", str(out)]) == 0
        m = metrics_of(out)
        seen[model] = (m["first_origin"], m["n_train"], m["n_val"], m["n_test"], tuple(forecasts_of(out)))
    assert len(set(seen.values())) == 1, seen
    assert next(iter(seen.values()))[0] == 31  # the end of the first 32-value window


def test_own_origins_start_a_model_without_a_decomposition_after_its_lags(tmp_path):
    csv_file = write_series(tmp_path / "toy.csv", seasonal_series())
    out = tmp_path / "own"
    assert main(["forecast", "--csv", str(csv_file), "--column", "y", "--model", "plain", "--lags", "4", *TINY,
                 "--set", "split.origins=own", "--out", str(out)]) == 0
    assert metrics_of(out)["first_origin"] == 3


@pytest.mark.parametrize("args, message", [
    (["--model", "ets", "--set", "split.origins=mine"], "split.origins must be shared or own"),
    (["--model", "ts2vec-ridge", "--set", "representation.steps=0"], "representation.steps must be"),
    (["--model", "ts2vec-ridge", "--set", "representation.padding=-1"], "representation.padding must be"),
])
def test_bad_forecast_settings_are_one_line_and_exit_2(args, message, tmp_path, capsys):
    csv_file = write_series(tmp_path / "toy.csv", seasonal_series())
    out = tmp_path / "out"
    assert main(["forecast", "--csv", str(csv_file), "--column", "y", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and not out.exists()


def test_a_batch_of_one_is_refused_by_a_method_that_needs_more(tmp_path, capsys):
    assert main(["pretrain", "--method", "simclr", "--dataset", "synthetic", "--batch-size", "1", "--epochs", "1",
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "simclr needs batches of at least 2 samples" in err and len(err.splitlines()) == 1


# --- the suite's comparisons ------------------------------------------------------------

def test_family_winner_is_beyond_the_seed_range_and_chosen_on_validation():
    from selfsup.bench.forecast import LAGS, _families

    flat = lambda v: {lag: list(v) for lag in LAGS}
    test = {"ets": flat([0.30]), "ar": flat([0.50]), "plain": flat([0.40, 0.41, 0.42]),
            "ts2vec-ridge": flat([0.60, 0.62, 0.64])}
    validation = {"ets": flat([0.9]), "ar": flat([0.2]), "plain": flat([0.1, 0.1, 0.1]),
                  "ts2vec-ridge": flat([0.3, 0.3, 0.3])}
    rows, (line,) = _families({"toy": test}, {"toy": validation})
    # ar, not ets, represents the classical family (its validation NRMSE is lower)
    assert rows[0]["classical"] == "ar" and rows[0]["winner"] == "network"
    assert line.startswith("**toy**: the network family wins, with plain at 0.410")
    test["ar"] = flat([0.405])  # inside plain's seed range (0.02)
    rows, _ = _families({"toy": test}, {"toy": validation})
    assert rows[0]["winner"] == "classical = network (tie)"


def test_changes_against_the_table_before_the_shared_origins(tmp_path):
    from selfsup.bench.forecast import BEFORE, _changes

    (tmp_path / BEFORE).write_text("series,model,mean_nrmse,mean_nrmse_seed_range\n"
                                   "toy,plain,0.3000,0.0100\ntoy,self-boosted,0.4000,0.0100\ntoy,mtl,0.3500,0.0100\n")
    rows = [{"series": "toy", "model": "plain", "mean_nrmse": 0.45, "mean_nrmse_seed_range": 0.01},
            {"series": "toy", "model": "self-boosted", "mean_nrmse": 0.40, "mean_nrmse_seed_range": 0.01},
            {"series": "toy", "model": "mtl", "mean_nrmse": 0.35, "mean_nrmse_seed_range": 0.01}]
    (line,) = _changes(tmp_path, rows)
    assert line == ("**toy**: mean NRMSE over lags before → now: plain 0.3000 → 0.4500; unchanged: self-boosted, mtl; "
                    "self-boosted trails plain before and beats plain now.")


def test_ts2vec_ridge_resumes_its_encoder_to_the_same_forecasts(tmp_path, monkeypatch):
    from selfsup.engine.module import PretrainModule

    args = ["forecast", "--csv", str(write_series(tmp_path / "toy.csv", seasonal_series())), "--column", "y",
            "--model", "ts2vec-ridge", *TINY, "--set", "representation.steps=4"]
    epochs = []  # the epochs each run of the encoder trains
    start = PretrainModule.on_train_epoch_start
    monkeypatch.setattr(PretrainModule, "on_train_epoch_start", lambda self: epochs.append(self.current_epoch) or start(self))
    assert main([*args, "--out", str(tmp_path / "whole")]) == 0
    whole_epochs = list(epochs)
    monkeypatch.undo()
    interrupt_after_second_epoch(monkeypatch, PretrainModule)
    cut = tmp_path / "cut"
    with pytest.raises(RuntimeError, match="interrupted"):
        main([*args, "--out", str(cut)])
    assert (cut / "checkpoints" / "last.ckpt").is_file() and not (cut / "metrics.json").exists()
    monkeypatch.undo()
    monkeypatch.setenv("SELFSUP_CACHE", str(tmp_path / "cache"))
    epochs.clear()
    monkeypatch.setattr(PretrainModule, "on_train_epoch_start", lambda self: epochs.append(self.current_epoch) or start(self))
    assert main([*args, "--out", str(cut), "--resume"]) == 0
    assert len(whole_epochs) > 2 and epochs == whole_epochs[2:]  # only the epochs after the checkpoint
    assert metrics_of(cut)["resumed_from"] == str(cut / "checkpoints" / "last.ckpt")
    assert forecasts_of(cut) == forecasts_of(tmp_path / "whole")

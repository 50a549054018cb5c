"""selfsup forecast: baselines, metrics, causal EEMD and its cache, grouping, the CLI run directory."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from selfsup.cli import main
from selfsup.timeseries.baselines import autoregression, persistence, seasonal_naive
from selfsup.timeseries.eemd import CAUSAL, LEAKY, decompose
from selfsup.timeseries.metrics import mae, nrmse
from selfsup.timeseries.samples import correlations, group
from selfsup.timeseries.series import SERIES, load_csv_series, load_registry_series
from support import interrupt_after_second_epoch

for _module in ("statsmodels", "PyEMD"):  # ours import them lazily; the tests need them
    pytest.importorskip(_module, reason="needs the timeseries extra: pip install -e .[timeseries]")

pytestmark = pytest.mark.usefixtures("private_eemd_cache")

# Tiny EEMD and training budgets: the whole file runs in well under a minute on one core.
TINY = ["--eemd-trials", "2", "--window", "32", "--max-imfs", "4", "--epochs", "3"]


def noisy_sines(n: int = 240, seed: int = 0) -> np.ndarray:
    t = np.arange(n)
    rng = np.random.default_rng(seed)
    return 10 + np.sin(2 * np.pi * t / 24) + 0.5 * np.sin(2 * np.pi * t / 7) + 0.01 * t + 0.2 * rng.standard_normal(n)


def write_csv(path, columns: dict, rows: list[int] | None = None):
    """A CSV with the given columns (lists of values or strings), rows in ``rows`` order."""
    names = list(columns)
    order = rows if rows is not None else range(len(columns[names[0]]))
    lines = [",".join(names)] + [",".join(str(columns[c][i]) for c in names) for i in order]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def sines_csv(tmp_path):
    return write_csv(tmp_path / "sines.csv", {"y": noisy_sines()})


def run_cli(*args) -> int:
    return main(["forecast", *map(str, args)])


def metrics_of(out) -> dict:
    return json.loads((out / "metrics.json").read_text())


# --- baselines and metrics -------------------------------------------------------------

def test_persistence_and_seasonal_naive_by_hand():
    y = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0])
    origins = np.array([7, 8])
    assert persistence(y, origins, 1).tolist() == [6.0, 5.0]
    assert persistence(y, origins, 2).tolist() == [6.0, 5.0]
    # season 4, h = 1: the value 4 steps before the target (t + 1 - 4)
    assert seasonal_naive(y, origins, 1, 4).tolist() == [y[4], y[5]]
    # h = 5 > season: two seasons back from the target (t + 5 - 8)
    assert seasonal_naive(y, np.array([4, 5]), 5, 4).tolist() == [y[1], y[2]]


def test_ar_matches_statsmodels_predictions():
    from statsmodels.tsa.ar_model import AutoReg

    y = noisy_sines(160)
    lags, train_end = 3, 112
    origins = np.arange(train_end - 1, len(y) - 1)
    ours, details = autoregression(y, train_end, origins, lags, horizon=1, first_origin=lags - 1)
    params = details["ar_params"]
    model = AutoReg(y, lags=lags)
    one_step = model.predict(np.array(params), start=train_end, end=len(y) - 1)
    np.testing.assert_allclose(ours, one_step, rtol=1e-10)
    two_step, _ = autoregression(y, train_end, np.array([130, 140]), lags, horizon=2, first_origin=lags - 1)
    dynamic = [model.predict(np.array(params), start=o + 1, end=o + 2, dynamic=True)[-1] for o in (130, 140)]
    np.testing.assert_allclose(two_step, dynamic, rtol=1e-10)


def test_nrmse_and_mae_by_hand():
    forecast, target = np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 5.0])
    # errors 0, 1, 2: RMSE sqrt(5/3); population std of the targets sqrt(8/3)
    assert nrmse(forecast, target) == pytest.approx(np.sqrt(5 / 8))
    assert mae(forecast, target) == pytest.approx(1.0)


# --- decomposition ---------------------------------------------------------------------

def test_causal_decomposition_uses_no_future_value():
    y = noisy_sines(140)
    t = 90
    changed = y.copy()
    changed[t + 1:] += np.random.default_rng(1).standard_normal(len(y) - t - 1)
    options = dict(window=32, trials=2, max_imfs=4)
    before, after = decompose(y, CAUSAL, **options), decompose(changed, CAUSAL, **options)
    origins = np.arange(before.first, t + 1)
    np.testing.assert_array_equal(before.lagged(origins, 6), after.lagged(origins, 6))
    np.testing.assert_array_equal(before.current(len(y))[:t + 1], after.current(len(y))[:t + 1])
    assert not np.array_equal(before.lagged(np.array([t + 1]), 6), after.lagged(np.array([t + 1]), 6))
    # the paper's whole-series decomposition does look ahead
    leaky = [decompose(v, LEAKY, trials=2, max_imfs=4) for v in (y, changed)]
    assert not np.array_equal(leaky[0].lagged(np.array([t]), 6), leaky[1].lagged(np.array([t]), 6))


def test_components_are_imfs_padded_then_residue():
    from PyEMD import EEMD

    y = noisy_sines(80)
    d = decompose(y, CAUSAL, window=32, trials=2, max_imfs=6)
    assert d.parts.shape == (80 - 32 + 1, 7, 32) and d.names[-1] == "residue" and d.count == 49
    eemd = EEMD(trials=2, parallel=False, separate_trends=True)
    eemd.noise_seed(0)
    own = eemd.eemd(y[-32:], max_imf=6)  # PyEMD's IMFs of the last window, then its mean residue
    assert len(own) < 7  # so the last window has zero-padded IMF rows
    np.testing.assert_array_equal(d.parts[-1][:len(own) - 1], own[:-1])
    np.testing.assert_array_equal(d.parts[-1][len(own) - 1:-1], 0.0)
    np.testing.assert_array_equal(d.parts[-1][-1], own[-1])


def test_cache_is_hit_the_second_time(tmp_path):
    y = noisy_sines(60)
    first = decompose(y, CAUSAL, window=24, trials=2, max_imfs=3)
    again = decompose(y, CAUSAL, window=24, trials=2, max_imfs=3)
    other = decompose(y, CAUSAL, window=24, trials=3, max_imfs=3)
    assert (first.cache_hit, again.cache_hit, other.cache_hit) == (False, True, False)
    np.testing.assert_array_equal(first.parts, again.parts)
    assert again.computed_seconds == pytest.approx(first.computed_seconds)
    assert len(list((tmp_path / "cache" / "eemd").glob("*.npz"))) == 2


def test_grouping_by_correlation_on_the_training_part():
    rng = np.random.default_rng(0)
    target = rng.standard_normal(200)
    current = np.stack([target + 0.1 * rng.standard_normal(200), rng.standard_normal(200), np.zeros(200),
                        -target], axis=1)
    current[150:, 1] = target[150:]  # related only outside the training part: must not count
    times = np.arange(150)
    r = correlations(current, target, times)
    np.testing.assert_allclose(r[[0, 1, 3]], [np.corrcoef(current[times, k], target[times])[0, 1] for k in (0, 1, 3)])
    assert r[2] == 0.0
    assert group(r, threshold=0.3) == ([0, 3], [1])


def test_registry_series_are_complete():
    lengths = {"sunspots": 309, "co2": 526, "elnino": 732, "nile": 100, "macrodata": 203, "airline": 144, "lynx": 114,
               "shampoo": 36}
    for name in SERIES:
        values = load_registry_series(name).values
        assert len(values) == lengths[name] and np.isfinite(values).all()


# --- runs through the command line ------------------------------------------------------

def test_self_boosted_run_writes_the_run_directory(tmp_path):
    y = noisy_sines()
    extra = np.cos(np.arange(len(y)) / 5)
    dates = [f"20{i // 24 + 10:02d}-01-01T{i % 24:02d}:00" for i in range(len(y))]
    shuffled = list(np.random.default_rng(0).permutation(len(y)))
    csv = write_csv(tmp_path / "multi.csv", {"when": dates, "y": y, "x2": extra}, rows=shuffled)
    out = tmp_path / "run"
    assert run_cli("--csv", csv, "--column", "y", "--column", "x2", "--date-column", "when", "--model",
                   "self-boosted", "--lags", 4, *TINY, "--out", out) == 0
    m = metrics_of(out)
    assert (out / "config.yaml").is_file() and (out / "checkpoints" / "last.ckpt").is_file()
    assert m["decomposition"] == "causal-window" and m["leaky"] is False and m["cache_hit"] is False
    assert m["n_train"] + m["n_val"] + m["n_test"] == len(y) - 32 and m["n_test"] == 48
    c = m["components"]
    assert set(c["auxiliary"]) | set(c["views"]) | set(c["constant"]) == set(c["names"])
    assert m["tasks"] == 1 + len(c["auxiliary"]) and m["input_channels"] == 2 + len(c["views"])
    assert m["extra_inputs"] == ["x2"] and np.isfinite(m["nrmse"]) and "nrmse_definition" in m
    series = load_csv_series(csv, ["y", "x2"], "when")  # the shuffled rows back in date order
    np.testing.assert_allclose(series.values, y, rtol=1e-12)  # str() of a float64 reads back to the last bit or so
    np.testing.assert_allclose(series.extras[0], extra, rtol=1e-12, atol=1e-15)
    # the same series and settings again: no EEMD at all
    again = tmp_path / "again"
    assert run_cli("--csv", csv, "--column", "y", "--column", "x2", "--date-column", "when", "--model", "mtl",
                   "--lags", 4, *TINY, "--out", again) == 0
    assert metrics_of(again)["cache_hit"] is True


def test_leaky_decomposition_is_labelled(sines_csv, tmp_path):
    out = tmp_path / "leaky"
    assert run_cli("--csv", sines_csv, "--column", "y", "--model", "mtv", *TINY, "--leaky-decomposition",
                   "--out", out) == 0
    m = metrics_of(out)
    assert m["decomposition"] == "leaky-whole-series" and m["leaky"] is True and m["eemd_decompositions"] == 1


def test_plain_beats_persistence_on_a_clean_sine(tmp_path):
    csv = write_csv(tmp_path / "sine.csv", {"y": np.sin(2 * np.pi * np.arange(300) / 20)})
    results = {}
    for model, epochs in (("persistence", 1), ("plain", 30)):
        out = tmp_path / model
        assert run_cli("--csv", csv, "--column", "y", "--model", model, "--epochs", epochs, "--set", "network.lr=0.01",
                       "--out", out) == 0
        results[model] = metrics_of(out)["nrmse"]
    assert results["persistence"] == pytest.approx(2 * np.sin(np.pi / 20), rel=0.02)
    assert results["plain"] < 0.5 * results["persistence"]


def test_resume_continues_from_the_checkpoint(sines_csv, tmp_path, monkeypatch):
    from selfsup.timeseries.network import ForecastModule

    args = ["--csv", sines_csv, "--column", "y", "--model", "mtl", *TINY, "--epochs", 4]
    assert run_cli(*args, "--out", tmp_path / "whole") == 0
    interrupt_after_second_epoch(monkeypatch, ForecastModule)
    out = tmp_path / "cut"
    with pytest.raises(RuntimeError, match="interrupted"):
        run_cli(*args, "--out", out)
    assert (out / "checkpoints" / "last.ckpt").is_file() and not (out / "metrics.json").exists()
    monkeypatch.undo()
    monkeypatch.setenv("SELFSUP_CACHE", str(tmp_path / "cache"))
    assert run_cli(*args, "--out", out) == 2  # a run is there: resuming needs --resume
    epochs = []  # the epochs the resumed run trains: those after the checkpoint only
    monkeypatch.setattr(ForecastModule, "on_train_epoch_start",
                        lambda self, start=ForecastModule.on_train_epoch_start: epochs.append(self.current_epoch) or start(self))
    assert run_cli(*args, "--out", out, "--resume") == 0
    assert epochs == [2, 3]
    whole, resumed = metrics_of(tmp_path / "whole"), metrics_of(out)
    assert resumed["resumed_from"] == str(out / "checkpoints" / "last.ckpt")
    assert resumed["history"] == whole["history"] and resumed["nrmse"] == whole["nrmse"]
    assert resumed["best_epoch"] == whole["best_epoch"]


# --- bad input: one line on stderr, exit 2, nothing written ------------------------------

def _bad_csvs(tmp_path):
    y = noisy_sines(100).round(3).astype(object)
    y[[5, 17]] = "", "n/a"
    return {"gaps": write_csv(tmp_path / "gaps.csv", {"y": y}),
            "short": write_csv(tmp_path / "short.csv", {"y": noisy_sines(40)})}


@pytest.mark.parametrize("args, message", [
    (["--csv", "{sines}", "--column", "nope", "--model", "plain"], "its columns are: y"),
    (["--csv", "{gaps}", "--column", "y", "--model", "plain"], "2 missing or non-numeric value(s) (lines 7, 19)"),
    (["--csv", "{short}", "--column", "y", "--model", "self-boosted", "--window", "32"], "needs at least"),
    (["--csv", "{sines}", "--column", "y", "--model", "plain", "--horizon", "0"], "--horizon must be"),
    (["--csv", "{sines}", "--column", "y", "--model", "plain", "--lags", "0"], "--lags must be"),
    (["--csv", "{sines}", "--column", "y", "--model", "prophet"], "unknown model 'prophet'"),
    (["--series", "tides", "--model", "plain"], "unknown series 'tides'"),
    (["--csv", "{sines}", "--model", "plain"], "--csv needs --column"),
    (["--csv", "{sines}", "--column", "y", "--model", "seasonal-naive"], "pass --season N"),
    (["--csv", "{missing}", "--column", "y", "--model", "plain"], "does not exist"),
    (["--csv", "{sines}", "--column", "y", "--model", "mtl", "--lags", "40", "--window", "32"], "--window must be"),
])
def test_bad_input_exits_2_and_writes_nothing(args, message, sines_csv, tmp_path, capsys):
    files = {"sines": sines_csv, "missing": tmp_path / "missing.csv", **_bad_csvs(tmp_path)}
    out = tmp_path / "out"
    assert run_cli(*[a.format(**files) for a in args], "--out", out) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_interpolate_fills_missing_values(tmp_path):
    gaps = _bad_csvs(tmp_path)["gaps"]
    out = tmp_path / "filled"
    assert run_cli("--csv", gaps, "--column", "y", "--model", "persistence", "--interpolate",
                   "--window", 32, "--out", out) == 0
    assert metrics_of(out)["n_test"] == 20
    y = noisy_sines(100).round(3)  # rows 5 and 17 were left empty: each the mean of its neighbours
    filled = load_csv_series(gaps, ["y"], interpolate=True).values
    assert filled[5] == pytest.approx((y[4] + y[6]) / 2) and filled[17] == pytest.approx((y[16] + y[18]) / 2)
    np.testing.assert_allclose(np.delete(filled, [5, 17]), np.delete(y, [5, 17]))


def test_a_finished_or_foreign_run_directory_is_refused(sines_csv, tmp_path, capsys):
    out = tmp_path / "done"
    args = ["--csv", sines_csv, "--column", "y", "--model", "persistence", "--out", out]
    assert run_cli(*args) == 0
    before = (out / "metrics.json").read_text()
    assert run_cli(*args) == 2 and "already holds a finished run" in capsys.readouterr().err
    assert (out / "metrics.json").read_text() == before
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert run_cli(*args[:-1], other) == 2 and "is not empty" in capsys.readouterr().err
    (out / "metrics.json").unlink()
    assert run_cli(*args, "--resume", "--lags", "3") == 2 and "differ from" in capsys.readouterr().err


def test_missing_extra_names_the_install_command(sines_csv, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "PyEMD", None)
    assert run_cli("--csv", sines_csv, "--column", "y", "--model", "plain", "--out", tmp_path / "out") == 2
    assert "pip install -e .[timeseries]" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_forecast_suite_findings_call_a_gap_inside_the_seed_range_a_tie():
    from selfsup.bench.forecast import LAGS, LEAKY_LABEL, _findings

    plain = {lag: [0.50, 0.52, 0.54] for lag in LAGS}
    models = {"ar": {lag: [0.45] for lag in LAGS}, "plain": plain,
              "mtl": {lag: [0.49, 0.53, 0.51] for lag in LAGS},  # 0.01 better on average: inside the range
              "mtv": {lag: [0.30, 0.31, 0.32] for lag in LAGS},
              "self-boosted": {3: [0.40, 0.41, 0.42], 6: [0.51, 0.53, 0.55], 12: [0.60, 0.61, 0.62]},
              LEAKY_LABEL: {lag: [0.2, 0.2, 0.2] for lag in LAGS}}
    (line,) = _findings({"toy": models})
    assert "self-boosted beats plain at lag 3; ties with plain at lag 6; trails plain at lag 12" in line
    assert "mtl ties with plain; mtv beats plain" in line
    assert "is mtv's (0.310)" in line and "tied with" not in line

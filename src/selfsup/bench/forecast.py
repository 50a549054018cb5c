"""The ``forecast`` suite: self-boosted forecasting against its ablations, the classical
models and TS2Vec's representation.

Every model of ``selfsup forecast`` on sunspots, co2, elnino (statsmodels), airline, lynx and
shampoo (aeon) at lags 3, 6 and 12, plus the self-boosted model on the paper's whole-series
("leaky") decomposition, in ``OUT/runs/SERIES-MODEL-lagN``; a model that reads no lags
(persistence, seasonal-naive, ets, arima, ts2vec-ridge) runs once per series and seed, in
``OUT/runs/SERIES-MODEL``, and stands for every lag.  Every model starts at the same first
origin (the end of the series' first decomposition window) and so trains on the same samples.
Written to OUT: ``forecast.md``/``.csv`` (test NRMSE per lag, a computed paragraph on where
self-boosting helps, and what changed against ``before-fair-origins.csv``, the table of the
runs made before the shared origins), ``forecast_families.md``/``.csv`` (per series the best
classical, network and representation model, chosen on validation, and which family wins on
test beyond the noise), ``forecast_runs.md``/``.csv`` (every run's details),
``eemd_cost.md``/``.csv`` (seconds per decomposition at each window length, a second pass from
the cache), ``forecast_nrmse.png`` (the survey's Figure 3: NRMSE against lag, one panel per
series), ``forecast_mean_nrmse.png`` (mean over series and lags, its Figure 4) and
``decomposition_SERIES.png`` (its Figure 2: the series and its IMFs).

Budget for well under an hour of one core (about half an hour when it was made): EEMD with 30 trials (the CLI default is 100), 100
epochs per network, TS2Vec 200 steps (the paper's code) per encoder; causal windows of 64
values for sunspots (309 yearly values), 96 for the monthly co2 and elnino, 48 for airline and
lynx, 12 for shampoo (36 values).  Every network and TS2Vec model is trained with the training
seeds ``SEEDS`` (the decomposition keeps its own seed, so the seeds share it): the table shows
the mean over them, and a difference smaller than the range over the seeds of either model is
a tie.  Finished runs are reused, so the suite resumes; a run made with other forecast origins
(fewer or more training samples than the current plan gives) is made again.
"""
from __future__ import annotations

from pathlib import Path
from statistics import mean

from ..config import merge
from ..errors import SelfSupError
from ..rundir import RunDirectory
from .report import bar_plot, seed_range, write_table

WINDOWS = {"sunspots": 64, "co2": 96, "elnino": 96, "airline": 48, "lynx": 48, "shampoo": 12}
LAGS = (3, 6, 12)
BUDGET = {"decomposition": {"trials": 30}, "network": {"epochs": 100}, "representation": {"steps": 200},
          "trainer": {"progress_bar": False}}
LEAKY_LABEL = "self-boosted (leaky)"
SEEDS = (0, 1, 2)  # training seeds of the network and TS2Vec models; the classical models are deterministic
BEFORE = "before-fair-origins.csv"  # the suite's table when the models without a decomposition started earlier


def _runs():
    """(label, series, lags the run stands for, seed, settings) of every run in the suite."""
    from ..timeseries.run import MODELS

    for series, window in WINDOWS.items():
        for lags in LAGS:
            flags = {"series": series, "lags": lags, "decomposition": {"window": window}}
            for model, spec in MODELS.items():
                if spec.uses_lags or lags == LAGS[0]:
                    covers = (lags,) if spec.uses_lags else LAGS
                    for seed in SEEDS if spec.seeded else SEEDS[:1]:
                        yield model, series, covers, seed, {**flags, "model": model, "seed": seed}
            for seed in SEEDS:
                yield LEAKY_LABEL, series, (lags,), seed, {**flags, "model": "self-boosted", "seed": seed,
                                                           "decomposition": {"window": window,
                                                                             "mode": "leaky-whole-series"}}


def _run_dir(out: Path, label: str, series: str, covers: tuple, seed: int) -> RunDirectory:
    slug = label.replace(" (leaky)", "-leaky")
    lag = f"-lag{covers[0]}" if len(covers) == 1 else ""
    return RunDirectory(out / "runs" / f"{series}-{slug}{lag}{f'-seed{seed}' if seed else ''}")


def _run(run: RunDirectory, cfg: dict) -> dict:
    """The run's metrics: from an earlier call when it finished with the same settings, else run (or resumed)."""
    from ..timeseries.run import load_series, make_plan, run_forecast

    if run.differences(cfg):  # no config.yaml yet: no differences
        print(f"{run.path.name}: the suite's settings changed since this run; running it again")
        run.remove()
    metrics = run.metrics()
    if metrics is not None and metrics["n_train"] != len(make_plan(cfg, len(load_series(cfg).values)).origins("train")):
        print(f"{run.path.name}: made with other forecast origins ({metrics['n_train']} training samples); running it "
              "again from the shared first origin")
        run.remove()
        metrics = None
    if metrics is not None:
        return metrics
    metrics = run_forecast(cfg, run.path, resume=True)
    print(f"{run.path.name}: test NRMSE {metrics['nrmse']:.4f}")
    return metrics


def _verdict(mean_a: float, range_a: float, mean_b: float, range_b: float) -> str:
    """'beats', 'ties with' or 'trails': a mean NRMSE against another, a difference within the
    larger of the two ranges over the seeds counting as a tie."""
    gap = mean_b - mean_a
    if abs(gap) <= max(range_a, range_b):
        return "ties with"
    return "beats" if gap > 0 else "trails"


def _compare(a: list[float], b: list[float]) -> str:
    """``_verdict`` of ``a``'s results over the seeds against ``b``'s."""
    return _verdict(mean(a), seed_range(a), mean(b), seed_range(b))


def _nrmse_plot(path: Path, results: dict) -> None:
    """One panel per series: NRMSE against lag, a line per model (the classical models dotted,
    the representation dash-dotted, the leaky one dashed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..timeseries.run import MODELS

    styles = {"classical": ":", "network": "-", "representation": "-."}
    columns = 3
    rows = -(-len(WINDOWS) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5 * columns, 3.8 * rows), squeeze=False)
    for ax, series in zip(axes.flat, WINDOWS):
        for i, (label, by_lag) in enumerate(results[series].items()):
            style = "--" if label == LEAKY_LABEL else styles[MODELS[label].family]
            ax.plot(list(by_lag), [mean(v) for v in by_lag.values()], marker="o", markersize=3,
                    color=plt.cm.tab20(i % 20), label=label, linestyle=style)
        ax.set(title=series, xlabel="lag (input values)", ylabel="test NRMSE", xticks=list(LAGS))
    for ax in axes.flat[len(WINDOWS):]:
        ax.axis("off")
    axes.flat[min(columns, len(WINDOWS)) - 1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _decomposition_plot(path: Path, series: str, values, decomposition) -> None:
    """The series and its whole-series EEMD components, stacked."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(series, values)] + list(zip(decomposition.names, decomposition.parts[0]))
    fig, axes = plt.subplots(len(rows), 1, figsize=(8, 1.1 * len(rows)), sharex=True)
    for ax, (name, row) in zip(axes, rows):
        ax.plot(row, linewidth=0.8, color="C0" if name == series else "C1")
        ax.set_ylabel(name, fontsize=8, rotation=0, ha="right")
        ax.tick_params(labelsize=7)
    axes[0].set_title(f"{series}: whole-series EEMD ({BUDGET['decomposition']['trials']} trials), as the paper's "
                      "Figure 2; the causal models decompose sliding windows instead", fontsize=8)
    axes[-1].set_xlabel("time step")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _eemd_cost(out: Path, configs: dict, metrics: dict) -> list[dict]:
    """Seconds per decomposition for each series and window length (the whole series for the
    leaky mode), then a second pass that must come from the cache; draws the Figure 2 plots."""
    from ..timeseries.eemd import CAUSAL, LEAKY, decompose
    from ..timeseries.series import load_registry_series

    rows = []
    for series in WINDOWS:
        values = load_registry_series(series).values
        for mode in (CAUSAL, LEAKY):
            cfg = configs[(series, mode)]
            d = cfg["decomposition"]
            again = decompose(values, mode, d["window"], d["trials"], d["noise_width"], d["seed"], d["max_imfs"])
            runs = [m for (s, mo), ms in metrics.items() if s == series and mo == mode for m in ms]
            rows.append({"series": series, "decomposition": mode,
                         "window": d["window"] if mode == CAUSAL else len(values), "trials": d["trials"],
                         "decompositions": again.count, "first_pass_seconds": round(again.computed_seconds, 2),
                         "seconds_per_decomposition": round(again.computed_seconds / again.count, 4),
                         "second_pass_seconds": round(again.seconds, 4), "second_pass_cache_hit": again.cache_hit,
                         "suite_runs_from_cache": f"{sum(bool(m['cache_hit']) for m in runs)} of {len(runs)}"})
            if mode == LEAKY:
                _decomposition_plot(out / f"decomposition_{series}.png", series, values, again)
    write_table(out, "eemd_cost", "EEMD cost per decomposition", rows,
                ["first_pass_seconds: the EEMD time when the decomposition was made (stored in the cache, so also "
                 "right when this call reused it); second_pass: the same decomposition asked for again, from the "
                 "cache in $SELFSUP_CACHE/eemd (default ~/.cache/selfsup/eemd).",
                 "suite_runs_from_cache: runs of the suite that found their decomposition in the cache (the first "
                 "run of a series decomposes, the others reuse it; every lag shares one decomposition).",
                 "One core (PyEMD with parallel=False)."], command=f"selfsup benchmark --suite forecast --out {out}")
    return rows


def _lags_text(lags: list[int]) -> str:
    return "lag " + ", ".join(map(str, lags)) if len(lags) == 1 else "lags " + ", ".join(map(str, lags))


def _over_lags(by_lag: dict) -> list[float]:
    """Per seed, the mean NRMSE over the lags (a model's seeds in the same order at every lag)."""
    return [mean(per_seed) for per_seed in zip(*by_lag.values())]


def _findings(results: dict) -> list[str]:
    """Where self-boosting helps and where not, from the numbers (mean over the seeds; a
    difference inside the range over the seeds is a tie)."""
    lines = []
    for series, by_model in results.items():
        boosted, plain = by_model["self-boosted"], by_model["plain"]
        outcome = {lag: _compare(boosted[lag], plain[lag]) for lag in LAGS}
        parts = [f"{word} plain at {_lags_text(lags)}" for word in ("beats", "ties with", "trails")
                 if (lags := [lag for lag in LAGS if outcome[lag] == word])]
        gains = ", ".join(f"{lag}: {mean(boosted[lag]):.3f} vs {mean(plain[lag]):.3f}" for lag in LAGS)
        overall = {label: _over_lags(v) for label, v in by_model.items() if label != LEAKY_LABEL}
        ablations = "; ".join(f"{m} {_compare(overall[m], overall['plain'])} plain" for m in ("mtl", "mtv"))
        best = min(overall, key=lambda label: mean(overall[label]))
        tied = [label for label in overall if label != best and _compare(overall[label], overall[best]) == "ties with"]
        ties = f", tied with {', '.join(tied)}" if tied else ""
        leak = mean(_over_lags(by_model[LEAKY_LABEL]))
        lines.append(f"**{series}**: self-boosted {'; '.join(parts)} (mean NRMSE by lag, self-boosted vs plain: "
                     f"{gains}); on the mean over lags {ablations}; the lowest mean NRMSE of the models without "
                     f"look-ahead is {best}'s ({mean(overall[best]):.3f}{ties}); the leaky whole-series decomposition "
                     f"gives self-boosted a mean NRMSE of {leak:.3f} against {mean(overall['self-boosted']):.3f} "
                     "without look-ahead.")
    return lines


def _families(results: dict, validation: dict) -> tuple[list[dict], list[str]]:
    """Per series, each family's model with the lowest mean validation NRMSE, its test NRMSE
    (mean over lags and seeds) and seed range, and the family that wins on test: the one whose
    model beats every other family's beyond the range over the seeds (else the tied families)."""
    from ..timeseries.run import FAMILIES, MODELS

    rows, lines = [], []
    for series, by_model in results.items():
        chosen = {}
        for family in FAMILIES:
            members = [m for m in by_model if m != LEAKY_LABEL and MODELS[m].family == family]
            chosen[family] = min(members, key=lambda m: mean(_over_lags(validation[series][m])))
        test = {family: _over_lags(by_model[model]) for family, model in chosen.items()}
        best = min(test, key=lambda family: mean(test[family]))
        tied = [f for f in FAMILIES if f != best and _compare(test[f], test[best]) == "ties with"]
        winner = best if not tied else " = ".join([best, *tied]) + " (tie)"
        row = {"series": series}
        for family, model in chosen.items():
            row.update({family: model, f"{family}_nrmse": mean(test[family]),
                        f"{family}_seed_range": seed_range(test[family])})
        rows.append({**row, "winner": winner})
        against = "; ".join(f"{chosen[f]} ({f}) {mean(test[f]):.3f}" for f in FAMILIES if f != best)
        lines.append(f"**{series}**: {'the ' + best + ' family wins' if not tied else 'no family wins: ' + winner}, "
                     f"with {chosen[best]} at {mean(test[best]):.3f} against {against}.")
    return rows, lines


def _changes(out: Path, rows: list[dict]) -> list[str]:
    """One sentence per series on what the shared first origin changed: each model's mean NRMSE
    in ``BEFORE`` against now, and self-boosted against plain before and now."""
    import csv

    path = out / BEFORE
    if not path.is_file():
        return [f"No {BEFORE} in {out}: nothing to compare with."]
    with path.open() as f:
        before = {(r["series"], r["model"]): (float(r["mean_nrmse"]), float(r["mean_nrmse_seed_range"]))
                  for r in csv.DictReader(f)}
    now = {(r["series"], r["model"]): (r["mean_nrmse"], r["mean_nrmse_seed_range"]) for r in rows}
    lines = []
    for series in dict.fromkeys(s for s, _ in before if (s, "plain") in now):
        models = [m for (s, m) in before if s == series and (s, m) in now]
        moved = [f"{m} {before[series, m][0]:.4f} → {now[series, m][0]:.4f}" for m in models
                 if round(before[series, m][0], 4) != round(now[series, m][0], 4)]
        same = [m for m in models if round(before[series, m][0], 4) == round(now[series, m][0], 4)]
        verdicts = [_verdict(*table[series, "self-boosted"], *table[series, "plain"]) for table in (before, now)]
        lines.append(f"**{series}**: mean NRMSE over lags before → now: {', '.join(moved) or 'none changed'}"
                     f"{'; unchanged: ' + ', '.join(same) if same else ''}; self-boosted {verdicts[0]} plain "
                     f"before and {verdicts[1]} plain now.")
    return lines


def forecast_suite(out: Path, data_dir: str | None = None, methods: list[str] | None = None) -> list[dict]:
    """Run (or reuse) every run of the suite, then write its tables and plots into ``out``."""
    from ..timeseries import require_extra
    from ..timeseries.run import forecast_config

    if methods:
        raise SelfSupError("the forecast suite runs every forecasting model; --method does not apply to it")
    require_extra()
    results: dict = {s: {} for s in WINDOWS}
    validation: dict = {s: {} for s in WINDOWS}
    details, configs, by_decomposition = [], {}, {}
    for label, series, covers, seed, flags in _runs():
        cfg = forecast_config(merge(BUDGET, flags, strict=False))
        metrics = _run(_run_dir(out, label, series, covers, seed), cfg)
        for lags in covers:
            results[series].setdefault(label, {}).setdefault(lags, []).append(metrics["nrmse"])
            validation[series].setdefault(label, {}).setdefault(lags, []).append(metrics["val_nrmse"])
        if metrics["decomposition"] != "none":
            configs[(series, metrics["decomposition"])] = cfg
            by_decomposition.setdefault((series, metrics["decomposition"]), []).append(metrics)
        c = metrics["components"] or {}
        details.append({"series": series, "model": label, "lags": covers[0] if len(covers) == 1 else None,
                        "seed": seed, "nrmse": metrics["nrmse"],
                        "mae": metrics["mae"], "val_nrmse": metrics["val_nrmse"], "n_train": metrics["n_train"],
                        "n_val": metrics["n_val"], "n_test": metrics["n_test"],
                        "decomposition": metrics["decomposition"],
                        "auxiliary": " ".join(c.get("auxiliary", [])), "views": " ".join(c.get("views", [])),
                        "best_epoch": metrics.get("best_epoch"), "eemd_seconds": metrics["eemd_seconds"],
                        "cache_hit": metrics["cache_hit"], "train_seconds": metrics["train_seconds"]})
    command = f"selfsup benchmark --suite forecast --out {out}"
    rows = [{"series": series, "model": label, "seeds": len(v[LAGS[0]]),
             **{f"nrmse_lag{lag}": mean(v[lag]) for lag in LAGS}, "mean_nrmse": mean(_over_lags(v)),
             "mean_nrmse_seed_range": seed_range(_over_lags(v))}
            for series, by_model in results.items() for label, v in by_model.items()]
    family_rows, family_lines = _families(results, validation)
    noise = (f"Network and TS2Vec models (and the leaky row) are trained with training seeds "
             f"{', '.join(map(str, SEEDS))}: each NRMSE is the mean over those runs, and a seed_range is the range "
             "over the seeds of a run's mean NRMSE over lags (the run-to-run spread; the decomposition's seed is the "
             "same for every run). A difference smaller than the range over the seeds of either model is called a "
             "tie. The classical models are deterministic (one run).")
    notes = ["NRMSE: RMSE on the last 20% of the series divided by the standard deviation of those targets "
             "(1.0 = always forecasting their mean); one-step forecasts; split 70/10/20 in time, the epoch with "
             "the best validation NRMSE kept.",
             f"Budget: EEMD {BUDGET['decomposition']['trials']} trials, noise width 0.05, at most 6 IMFs + residue; "
             f"causal windows {WINDOWS}; networks {BUDGET['network']['epochs']} epochs, Adam 1e-3, batch 32; "
             f"TS2Vec {BUDGET['representation']['steps']} steps on one series (the training part), the ridge's alpha "
             "chosen on validation.",
             noise,
             "Every model starts at the same first origin, the end of the series' first decomposition window, so "
             "all train on the same samples (the targets of the training part after that origin) and are scored "
             "on the same validation and test targets; ets and arima fit by likelihood on the whole training part. "
             "persistence, seasonal-naive, ets, arima and ts2vec-ridge read no lags: one run stands for every lag.",
             f"{LEAKY_LABEL}: the paper's setting, EEMD of the whole series, whose components at time t depend on "
             "values after t; it is not a valid forecast and is shown only to measure what the look-ahead is worth.",
             f"What the shared first origin changed (in {BEFORE} the models without a decomposition window, the "
             "leaky row among them, started after their `lags` values):", *_changes(out, rows),
             "Where self-boosting helps and where not:", *_findings(results),
             "Which family wins (forecast_families.md):", *family_lines]
    write_table(out, "forecast", "Forecasting: test NRMSE per lag", rows, notes, command=command)
    write_table(out, "forecast_families", "Forecasting: classical, network and representation models", family_rows,
                ["Per series and family (classical: persistence, seasonal-naive, ar, ets, arima, linear; network: "
                 "plain, mtl, mtv, self-boosted; representation: ts2vec-ridge), the model with the lowest validation "
                 "NRMSE (mean over lags and seeds), then its test NRMSE (mean over lags and seeds) and the range over "
                 "the seeds of its mean over lags. The winner beats every other family's model by more than the "
                 "larger seed range of the two; otherwise the families within that noise of the best are a tie.",
                 noise, *family_lines], command=command)
    write_table(out, "forecast_runs", "Forecasting: every run", details,
                ["auxiliary / views: the EEMD components each run used as auxiliary targets / input views "
                 "(|Pearson r| with the series on the training part >= 0.3 / below).",
                 "lags empty: a model that reads no lags, one run for every lag."], command=command)
    _nrmse_plot(out / "forecast_nrmse.png", results)
    labels = list(results[next(iter(WINDOWS))])
    bar_plot(out / "forecast_mean_nrmse.png", labels,
             [sum(r["mean_nrmse"] for r in rows if r["model"] == label) / len(WINDOWS) for label in labels],
             "mean test NRMSE", f"mean over {', '.join(WINDOWS)} and lags {', '.join(map(str, LAGS))}")
    _eemd_cost(out, configs, by_decomposition)
    return rows

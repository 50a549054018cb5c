"""The series-ssl suite: series representation methods (CPC, TS2Vec, T-Loss, TS-TCC, and SimCLR, BYOL
and VICReg on series views) on every UCR/UEA problem aeon ships,
against MiniRocket (aeon: 10,000 random convolution features and a ridge classifier, the
training-free bar), the raw series and each method's encoder at its random initialisation,
on the archive protocol: an SVM-RBF probe on frozen features (``selfsup evaluate svm``,
TS2Vec's), beside kNN and the linear probe, on the full test split.

Each method is pretrained with the training seeds ``SEEDS`` on each problem: the table shows
the mean over them and the range (the run-to-run spread), and a gap inside the range is a tie.
The summary table averages each model's SVM accuracy over the problems that every model has
finished and ranks the models on each problem (1: the best; ties share their mean rank), as
the archive papers report.  Runs live in ``OUT/runs/METHOD-PROBLEM[-training-seedS]/``
(config.yaml, metrics.json and eval_svm.json committed), MiniRocket's results in
``OUT/minirocket/PROBLEM.json``; finished runs and results are reused.
"""
from __future__ import annotations

import functools
import json
import math
import time
from pathlib import Path
from statistics import mean

from ..config import merge, resolve
from ..data.datasets import load_split
from ..engine.train import pretrain
from ..eval.run import EvalRequest, evaluate
from ..io import write_json
from .report import bar_plot, seed_range, write_table
from .suites import finished_run, run_checkpoint

SERIES_DATASETS = ("gunpoint", "italy-power-demand", "arrowhead", "osuleaf", "acsf1", "pickup-gesture-wiimotez",
                   "basic-motions", "japanese-vowels")
SEEDS = (0, 1, 2)
# CPC's budget for training sets of 36-270 series: small batches, many epochs; lr raised from the
# paper's 2e-4 (tuned for LibriSpeech's hours of audio) to 1e-3, kNN with k 5 (k 200 would
# exceed most of these training sets).
CPC_BUDGET = {"epochs": 300, "batch_size": 16, "backbone": {"name": "conv1d", "width": 32},
              "optimizer": {"lr": 1.0e-3}, "knn": {"k": 5, "every_n_epochs": 10}, "trainer": {"progress_bar": False}}
# The other methods' own settings (configs/METHOD.yaml), their epochs per problem from the step
# rules below; every batch capped at the training set.
OWN_BUDGET = {"knn": {"k": 5, "every_n_epochs": 0}, "trainer": {"progress_bar": False}}
# The image methods on series (their objectives and heads; every view is params.series_augment's
# 1-D pipeline) train TS2Vec's encoder on TS2Vec's step rule and learning rate (Adam, 1e-3), in
# batches of 16 (our choices: BYOL learned nothing on CPC's conv1d encoder at any setting we tried,
# and SimCLR and VICReg stalled under their LARS settings at this batch; benchmarks/tuning-series-ssl.md).
TWO_VIEW_METHODS = ("simclr", "byol", "vicreg")
TWO_VIEW_BUDGET = {"batch_size": 16, "backbone": {"name": "dilated-conv", "width": 64},
                   "optimizer": {"name": "adam", "lr": 1.0e-3, "lr_scaling": "none", "weight_decay": 0.0}}
SERIES_METHODS = ("cpc", "ts2vec", "t-loss", "ts-tcc", *TWO_VIEW_METHODS)
T_LOSS_STEPS = 1500  # T-Loss's nb_steps


def _epochs(steps: int, train_series: int, batch_size: int) -> int:
    """``steps`` of min(batch, N) series as whole epochs."""
    return math.ceil(steps / max(1, train_series // min(batch_size, train_series)))


def t_loss_epochs(train_series: int, batch_size: int) -> int:
    """T-Loss's 1500 steps of min(batch, N) series as epochs."""
    return _epochs(T_LOSS_STEPS, train_series, batch_size)


def ts_tcc_epochs(train_series: int, batch_size: int) -> int:
    """TS-TCC's 40 epochs, and at least 200 steps of min(batch, N) series (our choice: TS2Vec's
    rule for small sets; the paper's 40 epochs are 2,300 steps on HAR but 40 on GunPoint)."""
    return max(40, _epochs(200, train_series, batch_size))


def ts2vec_epochs(train_series: int, length: int, channels: int, batch_size: int) -> int:
    """TS2Vec's training length as epochs: 200 steps when the training set holds at most
    100,000 values (series x steps x channels), else 600, of min(batch, N) series."""
    return _epochs(200 if train_series * length * channels <= 100_000 else 600, train_series, batch_size)


@functools.cache
def _train_shape(dataset: str, data_dir: str | None) -> tuple[int, int, int]:
    """(series, channels, length) of the training split, read once per problem."""
    return tuple(load_split(dataset, "train", data_dir).series.shape)


def method_config(method: str, dataset: str, data_dir: str | None, seed: int) -> dict:
    """The suite's resolved config of ``method`` on ``dataset`` with training seed ``seed``."""
    cfg = resolve(method)
    if method == "cpc":
        return merge(cfg, {**CPC_BUDGET, "dataset": dataset, "data_dir": data_dir, "seed": seed})
    if method in TWO_VIEW_METHODS:
        cfg = merge(cfg, TWO_VIEW_BUDGET)
    n, channels, length = _train_shape(dataset, data_dir)
    if method in ("ts2vec", *TWO_VIEW_METHODS):
        epochs = ts2vec_epochs(n, length, channels, cfg["batch_size"])
    else:
        epochs = {"t-loss": t_loss_epochs, "ts-tcc": ts_tcc_epochs}[method](n, cfg["batch_size"])
    return merge(cfg, {**OWN_BUDGET, "epochs": epochs, "dataset": dataset, "data_dir": data_dir, "seed": seed,
                       "batch_size": min(cfg["batch_size"], n)})


def minirocket(out: Path, dataset: str, data_dir: str | None) -> dict:
    """MiniRocket's test accuracy on ``dataset`` (aeon's classifier, seed 0; cached)."""
    path = out / "minirocket" / f"{dataset}.json"
    if path.exists():
        return json.loads(path.read_text())
    from aeon.classification.convolution_based import MiniRocketClassifier

    train, test = load_split(dataset, "train", data_dir), load_split(dataset, "test", data_dir)
    start = time.perf_counter()
    model = MiniRocketClassifier(random_state=0).fit(train.series.double().numpy(), train.labels.numpy())
    top1 = float((model.predict(test.series.double().numpy()) == test.labels.numpy()).mean())
    result = {"dataset": dataset, "test_top1": top1, "seconds": round(time.perf_counter() - start, 1),
              "model": "aeon MiniRocketClassifier(random_state=0): MiniRocket features, RidgeClassifierCV"}
    write_json(path, result)
    return result


def _svm(run_dir: Path, out: Path) -> dict:
    """The run's SVM probe result (``eval_svm.json``), computed once from its checkpoint."""
    path = run_dir / "eval_svm.json"
    if not path.exists():
        evaluate(EvalRequest.make("svm", run_checkpoint(run_dir), output=str(path), baseline_cache=str(out / "baselines")))
    return json.loads(path.read_text())


def run_name(method: str, dataset: str, seed: int) -> str:
    return f"{method}-{dataset}" + (f"-training-seed{seed}" if seed else "")


def _ranks(scores: dict[str, float]) -> dict[str, float]:
    """Rank of each model (1: the highest score; tied models share the mean of their ranks)."""
    ordered = sorted(scores.values(), reverse=True)
    return {name: mean(i + 1 for i, v in enumerate(ordered) if v == value) for name, value in scores.items()}


def series_ssl_suite(out: Path, data_dir: str | None = None, methods: list[str] | None = None,
                     datasets: list[str] | None = None) -> list[dict]:
    """Pretrain each method on each problem over the seeds (resumable), probe them, and write
    ``series-ssl.md``/``.csv``, ``series-ssl_summary.md``/``.csv`` and a bar plot of kNN accuracy."""
    methods = [m for m in SERIES_METHODS if not methods or m in methods]
    for dataset in datasets or SERIES_DATASETS:
        minirocket(out, dataset, data_dir)
        for method in methods:
            for seed in SEEDS:
                cfg = method_config(method, dataset, data_dir, seed)
                run_dir = out / "runs" / run_name(method, dataset, seed)
                if finished_run(run_dir, cfg) is None:
                    pretrain(cfg, run_dir, resume=True, baselines=True, probe_epochs=100)
                _svm(run_dir, out)
    return write_series_tables(out, data_dir)


def summarise(models: dict[str, dict[str, float]]) -> list[dict]:
    """Mean SVM accuracy and mean rank of the models that every problem of ``models`` (problem ->
    {model: accuracy}) has, over all those problems, best rank first."""
    every = set.intersection(*(set(s) for s in models.values())) if models else set()
    summary = []
    for model in sorted(every):
        ranks = [_ranks({m: scores[m] for m in every})[model] for scores in models.values()]
        summary.append({"model": model, "problems": len(models),
                        "mean_svm_accuracy": mean(scores[model] for scores in models.values()), "mean_rank": mean(ranks)})
    return sorted(summary, key=lambda r: r["mean_rank"])


def write_series_tables(out: Path, data_dir: str | None = None) -> list[dict]:
    """The tables and plot from every finished run and MiniRocket result in ``out``."""
    rows, models = [], {}  # models: dataset -> {model: SVM accuracy}
    for dataset in SERIES_DATASETS:
        rocket = out / "minirocket" / f"{dataset}.json"
        for method in SERIES_METHODS:
            runs = []
            for seed in SEEDS:
                run_dir = out / "runs" / run_name(method, dataset, seed)
                metrics = finished_run(run_dir, method_config(method, dataset, data_dir, seed), redo=False)
                if metrics is not None:
                    svm = run_dir / "eval_svm.json"
                    runs.append((metrics, json.loads(svm.read_text()) if svm.exists() else None))
            if not runs:
                continue
            row = {"dataset": dataset, "method": method, "train_series": runs[0][0]["train_images"], "seeds": len(runs)}
            columns = [("knn", [m["knn_top1"] for m, _ in runs]), ("linear", [m["linear_top1"] for m, _ in runs]),
                       ("random_init_knn", [m["baselines"]["random_init_knn_top1"] for m, _ in runs]),
                       ("random_init_linear", [m["baselines"]["random_init_linear_top1"] for m, _ in runs])]
            probed = all(svm is not None for _, svm in runs)  # the SVM columns once every seed has its probe
            if probed:
                columns = [("svm", [s["top1"] for _, s in runs]), *columns,
                           ("random_init_svm", [s["baselines"]["random_init"] for _, s in runs])]
            values = dict(columns)
            for column in ("svm", "knn", "linear", "random_init_svm", "random_init_knn", "random_init_linear"):
                row[column] = mean(values[column]) if column in values else None  # svm: None until probed
                row[f"{column}_range"] = seed_range(values[column]) if column in values else None
            # the raw series do not depend on the training seed; the linear probe's own seed does move it a little
            row.update(raw_series_svm=mean(s["baselines"]["pixels"] for _, s in runs) if probed else None,
                       raw_series_knn=mean(m["baselines"]["raw_pixels_knn_top1"] for m, _ in runs),
                       raw_series_linear=mean(m["baselines"]["standardized_pixels_linear_top1"] for m, _ in runs),
                       train_seconds=round(mean(m["train_seconds"] for m, _ in runs), 1))
            rows.append(row)
            if probed:
                scores = models.setdefault(dataset, {})
                scores[method] = row["svm"]
                # one row per untrained encoder: the first method's that trains it (TS2Vec's dilated-conv, not SimCLR's)
                scores.setdefault(f"random-init {runs[0][0]['backbone']}", row["random_init_svm"])
                scores["raw series"] = row["raw_series_svm"]
        if rocket.exists() and dataset in models:
            models[dataset]["minirocket"] = json.loads(rocket.read_text())["test_top1"]
    summary = summarise(models)
    notes = [f"CPC's settings laid over its defaults: `{CPC_BUDGET}`; TS2Vec's, T-Loss's and TS-TCC's: their "
             f"defaults (configs/METHOD.yaml) with `{OWN_BUDGET}`, the epochs from their step rules (TS2Vec: 200 steps "
             "of 8 series, 600 above 10^5 values; T-Loss: 1500 steps of 10; TS-TCC: its 40 epochs, at least 200 steps) and the batch capped "
             f"at the training set. SimCLR, BYOL and VICReg: theirs with `{TWO_VIEW_BUDGET}` (TS2Vec's encoder), "
             "TS2Vec's step rule, and two views of their `series_augment` pipeline (a window of 80-100% of the "
             "length resized back, scaling by N(1, 0.1), jitter of std 0.03).",
             "svm: `selfsup evaluate svm` (RBF SVC, C by 5-fold grid search over 1e-4 … 1e4 and a hard margin; a hard "
             "margin without search under 5 series a class on average or 50 in all); kNN: k=5, T=0.1, cosine; linear: one linear "
             "layer on standardised frozen features, Adam, 100 epochs; all on the full test split.",
             "raw_series: the series values as features; random_init: the method's encoder at its random "
             "initialisation; unequal lengths (pickup-gesture-wiimotez, japanese-vowels) are resampled to the longest "
             "training series.",
             f"Each row is the mean over training seeds {', '.join(map(str, SEEDS))}; `_range`: max minus min over the "
             "seeds, the run-to-run spread (a gap inside it is a tie); train_seconds: the seeds' mean, on a CPU shared "
             "with other runs (not a speed measurement)."]
    title = "Series representation learning on the UCR/UEA problems shipped with aeon"
    write_table(out, "series-ssl", title, rows, notes, command=f"selfsup benchmark --suite series-ssl --out {out}")
    summary_notes = [
        "SVM accuracy averaged over every problem with a finished row, and the mean rank over them (1: best; "
        "ties share their mean rank), as the archive papers report, for the models every such problem has (a method "
        "still running on some problem joins when it has them all); MiniRocket: aeon's MiniRocketClassifier "
        "(random_state 0) on the raw series.",
        "Published averages, for orientation only (other problems, full archives): the TimesURL table reports TS2Vec "
        "0.836, T-Loss 0.806 and TS-TCC 0.757 on 128 UCR problems; selfsup issue 34 cites MiniRocket at 0.821 on 106 UCR "
        "problems."]
    write_table(out, "series-ssl_summary", "Series representation learning: mean SVM accuracy and mean rank",
                summary, summary_notes, command=f"selfsup benchmark --suite series-ssl --out {out}")
    labels = [f"{r['dataset']}\n{r['method']}" for r in rows]
    if rows:
        bar_plot(out / "series-ssl_knn.png", labels, [r["knn"] for r in rows], "kNN top-1", title)
    return rows

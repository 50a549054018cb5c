"""``ts2vec-ridge``: TS2Vec's forecasting protocol (Yue et al., AAAI 2022, Sec. 4.2 and its code).

1. The library's ``ts2vec`` method (``methods/ts2vec.py``, backbone ``dilated-conv``) is trained
   by the library's engine (``engine.module.PretrainModule``, ``engine.train.fit``) on the
   training part of the series as one instance, standardised with its own mean and std:
   batch 1 and ``representation.steps`` optimiser steps (200, the code's ``n_iters`` for a
   small data set); the method's other settings are its packaged (paper) defaults.
2. Each origin t is represented by the encoder's output at its last step for the window of
   ``representation.padding`` + 1 values ending at t (200 + 1: the code's causal sliding
   encoding, ``sliding_padding`` 200); steps before the start of the series are masked, as the
   code masks its NaN padding.  Nothing after t enters the representation of t.
3. A ridge regression (scikit-learn ``Ridge``) from the representation to the standardised
   value at t + h is fitted on the training samples for each alpha in ``ALPHAS``; the alpha
   with the lowest validation RMSE + MAE (the code's score) is refitted on the training samples.

Where we differ: the code drops the first 200 training samples (their windows are not full);
here every model trains on the same samples from the shared first origin (``samples.Plan``),
so on short series the early windows are partly masked.  The code cuts a training part of at
least 2 × 3000 steps into sections of 3000 (``max_train_length``), so that its instance-wise
term has instances to contrast; here the encoder trains on the training part as one instance,
whose instance-wise term is 0 (on series under 6000 steps, every series the forecast suite
ships, the code also trains on one instance).  The code also encodes 7 time-stamp covariates
(minute, hour, day of the week, day of the month, day of the year, month, week of the year)
beside the values; here the encoder reads the values only.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

ALPHAS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)  # the code's fit_ridge grid
ENCODE_BATCH = 128


def encoder_config(cfg: dict) -> dict:
    """The ``ts2vec`` run configuration of a forecast config: the method's packaged defaults, one
    series per batch, ``representation.steps`` epochs of one step, no kNN monitor."""
    from ..config import resolve

    r = cfg["representation"]
    return resolve("ts2vec", flags={
        "dataset": "forecast-series", "seed": cfg["seed"], "epochs": r["steps"], "batch_size": 1,
        "trainer": {"accelerator": cfg["trainer"]["accelerator"], "progress_bar": cfg["trainer"]["progress_bar"],
                    "loggers": ["csv"]},
        "knn": {"every_n_epochs": 0, "final": False}})


def train_encoder(cfg: dict, out: Path, train_values: np.ndarray, ckpt: Path | None):
    """(the trained TS2Vec method, its normalisation, seconds): the library's engine on the
    training values, checkpointed in ``out/checkpoints/last.ckpt`` and resumed from ``ckpt``."""
    import lightning as L

    from ..data.series import SeriesDataset
    from ..data.views import Normalization
    from ..engine.module import PretrainModule
    from ..engine.train import fit, quiet_lightning, record_data_facts
    from ..rundir import RunDirectory
    from ..config import RunSettings

    quiet_lightning()
    series = SeriesDataset(torch.as_tensor(train_values, dtype=torch.float32)[None, None],
                           torch.zeros(1, dtype=torch.long), 0)
    ts2vec = encoder_config(cfg)
    standardise = Normalization((float(train_values.mean()),), (float(train_values.std()) or 1.0,))
    record_data_facts(ts2vec, series, series, "series", lambda _: standardise)
    L.seed_everything(cfg["seed"], verbose=False)
    module = PretrainModule(ts2vec)
    module.train_set = series
    start = time.perf_counter()
    fit(module, RunSettings.of(ts2vec), RunDirectory(out), series, None, None, ckpt)
    return module.method.cpu().eval(), module.norm, time.perf_counter() - start


@torch.no_grad()
def encode_origins(method, norm, values: np.ndarray, origins: np.ndarray, padding: int) -> np.ndarray:
    """[n, feature_dim]: the representation of the last step of the window of ``padding`` + 1
    values ending at each origin (steps before the series' start masked)."""
    x = norm(torch.as_tensor(values, dtype=torch.float32)[None, None])[0, 0]
    padded = torch.cat([torch.zeros(padding), x])
    known = torch.cat([torch.zeros(padding, dtype=torch.bool), torch.ones(len(x), dtype=torch.bool)])
    steps = torch.as_tensor(origins)[:, None] + torch.arange(padding + 1)[None]  # in padded positions
    out = []
    for chunk in steps.split(ENCODE_BATCH):
        out.append(method.backbone.forward_sequence(padded[chunk][:, None], known[chunk])[:, -1])
    return torch.cat(out).numpy().astype(np.float64)


def ridge_forecasts(features: dict, targets: dict) -> tuple[dict, dict]:
    """(predictions of each part, details): TS2Vec's ``fit_ridge``: the alpha of ``ALPHAS`` with
    the lowest validation RMSE + MAE, refitted on the training samples."""
    from sklearn.linear_model import Ridge

    def score(alpha: float) -> float:
        error = Ridge(alpha=alpha).fit(features["train"], targets["train"]).predict(features["val"]) - targets["val"]
        return float(np.sqrt(np.mean(error ** 2)) + np.mean(np.abs(error)))

    scores = {alpha: score(alpha) for alpha in ALPHAS}
    best = min(scores, key=scores.get)
    model = Ridge(alpha=best).fit(features["train"], targets["train"])
    return ({part: model.predict(f) for part, f in features.items() if part != "train"},
            {"ridge_alpha": best, "ridge_val_scores": {str(a): round(s, 6) for a, s in scores.items()}})


def ts2vec_ridge(cfg: dict, out: Path, values: np.ndarray, plan, ckpt: Path | None) -> tuple[dict, dict]:
    """(forecasts of the validation and test origins, details) of the whole protocol above."""
    method, norm, seconds = train_encoder(cfg, out, values[:plan.train_end], ckpt)
    start = time.perf_counter()
    padding, h = cfg["representation"]["padding"], plan.horizon
    parts = ("train", "val", "test")
    features = {p: encode_origins(method, norm, values, plan.origins(p), padding) for p in parts}
    mean, std = norm.mean[0], norm.std[0]
    targets = {p: (values[plan.origins(p) + h] - mean) / std for p in parts}
    predictions, details = ridge_forecasts(features, targets)
    print(f"ts2vec-ridge: encoder trained in {seconds:.1f} s, ridge alpha {details['ridge_alpha']}", file=sys.stderr)
    return ({p: v * std + mean for p, v in predictions.items()},
            {"train_seconds": round(seconds, 2), "encode_seconds": round(time.perf_counter() - start, 2),
             "steps": cfg["representation"]["steps"], "feature_dim": int(features["train"].shape[1]), **details,
             "resumed_from": str(ckpt) if ckpt else None})

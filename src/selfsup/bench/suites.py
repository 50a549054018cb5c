"""Accuracy suites: pretrain methods on equal budgets, then kNN, linear probe and baselines."""
from __future__ import annotations

import copy
import json
from pathlib import Path

from ..config import merge, resolve
from ..engine.train import pretrain
from .report import bar_plot, curve_plot, write_table

DIAGNOSTICS = ("normalized_std", "effective_rank", "alignment", "uniformity")


def accuracy_suite(out: Path, name: str, title: str, methods: list[str], overrides: dict, probe_epochs: int,
                   data_dir: str | None = None, per_method: dict | None = None) -> list[dict]:
    """Pretrain each method with ``overrides`` (then ``per_method[method]``) into
    ``out/runs/METHOD``, evaluate it with the shared protocol, and write ``{name}.md``/``.csv``
    and plots into ``out``.  A method whose run finished in an earlier call is not re-run."""
    rows, curves, finals, baselines = [], {}, {}, {}
    per_method = per_method or {}
    for method in methods:
        layer = copy.deepcopy(overrides)
        if data_dir:
            layer["data_dir"] = data_dir
        cfg = merge(merge(resolve(method), layer), per_method.get(method, {}))
        run_dir = out / "runs" / method
        if (run_dir / "metrics.json").exists():  # a finished run of an earlier, interrupted suite
            metrics = json.loads((run_dir / "metrics.json").read_text())
        else:
            metrics = pretrain(cfg, run_dir, resume=True, baselines=True, probe_epochs=probe_epochs)
        baselines = baselines or metrics.get("baselines", {})
        rows.append({"method": method, "epochs": cfg["epochs"], "knn_top1": metrics["knn_top1"],
                     "linear_top1": metrics["linear_top1"], "final_loss": metrics["final_loss"],
                     "train_seconds": metrics["train_seconds"], "samples_per_second": metrics["samples_per_second"],
                     "peak_memory_mb": metrics["peak_memory_mb"],
                     # the same architecture at its random initialisation (e.g. DeepCluster's Sobel input)
                     "random_init_knn_top1": metrics.get("baselines", {}).get("random_init_knn_top1"),
                     **{name: metrics.get("diagnostics", {}).get(name) for name in DIAGNOSTICS}})
        history = metrics["knn_history"]
        curves[method] = ([h["epoch"] for h in history], [h["knn_top1"] for h in history])
        finals[method] = (cfg["epochs"], metrics["knn_top1"])
    for label, key in [("raw pixels", "raw_pixels_knn_top1"), ("standardised pixels", "standardized_pixels_knn_top1"),
                       (f"random-init backbone ({methods[0]}'s network)", "random_init_knn_top1")]:
        rows.append({"method": f"baseline: {label}", "knn_top1": baselines.get(key)})
    knn = cfg["knn"]
    notes = [f"Settings laid over each method's defaults: `{overrides}`; then, per method: "
             + "; ".join(f"{m}: `{per_method[m]}`" for m in methods if m in per_method) + ".",
             f"kNN: k={knn['k']}, T={knn['temperature']}, cosine, weighted vote, on backbone features of the full test "
             "split (bank: the pretraining training split). The monitor in the curve plot uses at most "
             f"{knn['monitor_train_size']} bank images and {knn['monitor_test_size']} test queries.",
             f"Linear: one linear layer on frozen, standardised backbone features of clean images, Adam, "
             f"{probe_epochs} epochs.",
             "samples_per_second counts each training image once per epoch, however many views it yields.",
             "random_init_knn_top1 in a method's row: kNN of that method's own network (its input filter and "
             "BatchNorm policy included) at its random initialisation, the bar its pretraining must clear.",
             "Collapse diagnostics of the final backbone features on the monitor's test images "
             "(`selfsup.eval.diagnostics`): normalized_std (per-dimension std of L2-normalised features; "
             "1/sqrt(d) when spread, 0 when collapsed), effective_rank (of the feature covariance, 1..d), "
             "alignment and uniformity (Wang & Isola 2020; lower is better for both)."]
    write_table(out, name, title, rows, notes)
    bar_plot(out / f"{name}_knn.png", [r["method"].replace("baseline: ", "") for r in rows],
             [r["knn_top1"] or 0.0 for r in rows], "kNN top-1", title)
    curve_plot(out / f"{name}_knn_curve.png", curves, "epoch", "kNN top-1", title,
               {"raw pixels": baselines.get("raw_pixels_knn_top1"),
                "standardised pixels": baselines.get("standardized_pixels_knn_top1"),
                "random init": baselines.get("random_init_knn_top1")}, finals)
    return rows

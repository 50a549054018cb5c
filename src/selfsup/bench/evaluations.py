"""The evaluations suite: every protocol of ``selfsup evaluate`` on the checkpoints of the
fmnist-quick suite, one table, and one report page of those runs.

Each result is written beside its run (``fmnist-quick/runs/LABEL/eval_*.json`` and its
PNGs), so ``selfsup report`` of a run shows them; a result that exists is not recomputed,
unless it predates a fix of its protocol (``protocol_revision``) and its method is asked for.
Several processes of the suite share out the runs (``claim``).
"""
from __future__ import annotations

from collections import Counter
from contextlib import nullcontext
from pathlib import Path

from ..errors import SelfSupError
from ..methods import method_class
from ..rundir import RunDirectory
from .report import finetune_revision_notes, write_table
from .suites import checkpoint_kind, current_result, evaluate_run

# (result name, protocol, its options): SimCLR's 1% and 10% label fractions, transfer to
# scikit-learn digits, retrieval, the embedding maps.
PROTOCOLS = [
    ("finetune-1pct", "finetune", {"label_fraction": 0.01}),
    ("finetune-10pct", "finetune", {"label_fraction": 0.1}),
    ("transfer-digits", "transfer", {"dataset": "digits"}),
    ("retrieval", "retrieval", {}),
    ("embedding", "embedding", {}),
]


def _frozen(transfer: dict, retrieval: dict) -> dict:
    """The table's frozen-feature columns from a transfer and a retrieval result (or baseline)."""
    return {"digits_knn": transfer["knn_top1"], "digits_linear": transfer["linear_top1"],
            "retrieval_map": retrieval["mean_average_precision"], "precision_at_10": retrieval["precision_at_k"]["10"]}


def _checkpoints(results: dict) -> str:
    """"original" or "remade" (``run_checkpoint``) as every result names it, else which protocols used which."""
    kinds = {name: checkpoint_kind(r) for name, r in results.items()}
    if len(set(kinds.values())) == 1:
        return next(iter(kinds.values()))
    return "; ".join(f"{kind}: {', '.join(n for n, k in kinds.items() if k == kind)}" for kind in ("original", "remade"))


def evaluations_suite(out: Path, runs_dir: Path, methods: list[str] | None = None) -> list[dict]:
    """Run every protocol on each finished run in ``runs_dir`` (of ``methods``; None: all) and
    write ``out/evaluations.md``/``.csv`` (every run with all its results) and the report
    ``out/report/index.html``.  Results that exist are read back (those of ``methods`` made
    again where they predate a fix of their protocol); a missing one needs the run's
    checkpoint, which is pretrained again where it is gone (``run_checkpoint``)."""
    from ..report import write_report

    runs = sorted(p.parent for p in runs_dir.glob("*/metrics.json"))
    if not runs:
        raise SelfSupError(f"no finished runs in {runs_dir}; run "
                           "`selfsup benchmark --suite fmnist-quick --out benchmarks/fmnist-quick` first")
    rows, evaluated = [], []
    for run_dir in runs:
        method = RunDirectory(run_dir).metrics()["method"]
        asked = not methods or method in methods  # results older than a fix of their protocol made again
        there = all((run_dir / f"eval_{name}.json").exists() for name, _, _ in PROTOCOLS)
        if not asked and not there:
            continue  # not asked for: shown when every result is there
        done = not asked or all(current_result(run_dir, name, protocol) for name, protocol, _ in PROTOCOLS)
        with nullcontext(True) if done else RunDirectory(run_dir).claim("evaluations") as ours:
            if not ours:
                print(f"{run_dir.name}: being evaluated by another process of this suite; left to it")
                continue
            cache = {"baseline_cache": str(out / "baseline-cache")}
            r = {name: evaluate_run(run_dir, name, protocol, {**options, **(cache if protocol != "embedding" else {})},
                                    remake_older=asked)
                 for name, protocol, options in PROTOCOLS}
        rows.append({"method": run_dir.name + (" (supervised)" if method_class(method).supervised else ""),
                     "checkpoint": _checkpoints(r), "precision": r["finetune-1pct"]["precision"],
                     "finetune_1pct": r["finetune-1pct"]["top1"], "scratch_1pct": r["finetune-1pct"]["scratch_top1"],
                     "finetune_10pct": r["finetune-10pct"]["top1"], "scratch_10pct": r["finetune-10pct"]["scratch_top1"],
                     "finetune_revision": min(r[name].get("revision", 1) for name in ("finetune-1pct", "finetune-10pct")),
                     **_frozen(r["transfer-digits"], r["retrieval"])})
        evaluated.append((run_dir.name, r))
    if evaluated:  # the pixel and random-init rows, from a run of the network most rows share
        (network, shared), = Counter(r["finetune-1pct"].get("scratch_cache") for _, r in evaluated).most_common(1)
        label, r = next((name, r) for name, r in evaluated if r["finetune-1pct"].get("scratch_cache") == network)
        rows.append({"method": "baseline: standardised pixels",
                     "finetune_1pct": r["finetune-1pct"]["baselines"]["pixels_linear"],
                     "finetune_10pct": r["finetune-10pct"]["baselines"]["pixels_linear"],
                     **_frozen(r["transfer-digits"]["baselines"]["pixels"], r["retrieval"]["baselines"]["pixels"])})
        rows.append({"method": f"baseline: random-init backbone (the initial network of {shared} rows, e.g. {label}'s)",
                     "finetune_1pct": r["finetune-1pct"]["scratch_top1"],
                     "finetune_10pct": r["finetune-10pct"]["scratch_top1"],
                     **_frozen(r["transfer-digits"]["baselines"]["random_init"],
                               r["retrieval"]["baselines"]["random_init"])})
    notes = [f"Checkpoints: the fmnist-quick runs in `{runs_dir}`; each result is `RUN/eval_NAME.json` there. "
             "Where a run's checkpoint was gone (they are not committed), the run was pretrained again from its "
             "config.yaml in `RUN/remade/` and evaluated there (each eval file names its checkpoint; "
             "`RUN/remade/metrics.json` has the remade run's kNN).",
             "finetune_Xpct: the whole encoder and a linear layer fine-tuned on X% of the training labels "
             "(seeded, class-balanced), top-1 on the full test split; scratch_Xpct: the same from the method's random "
             "initialisation (made once per initial network, data and schedule, and kept in "
             f"`{out / 'baseline-cache'}` with the pixel and random-init scores of the other protocols: checkpoints "
             "of methods that build the same backbone share them). "
             "SimCLR's protocol: Nesterov SGD, lr 0.05*batch/256, no weight decay, crop and flip, 60 "
             "epochs for 1% and 30 for 10%, with a 10% linear warm-up, a cosine decay and gradient-norm clipping at 1 "
             "(ours: pretrained checkpoints diverged without the first and the last), at the checkpoint's training precision (the precision column; "
             "scratch runs at the same precision); a ViT's blocks learn at 0.75 times the rate of the block above "
             "(layer decay, as MAE and BEiT fine-tune). The pixel baseline row is a linear classifier on the same labelled "
             "images.",
             "checkpoint: original (the fmnist-quick run's own) or remade (pretrained again, see above); where the "
             "protocols used both, which used which (the frozen-feature results of a few runs predate their "
             "checkpoint's loss).",
             "digits_*: transfer to scikit-learn digits (8x8 grey, resized to 28x28): kNN (k=200, T=0.1) and a linear "
             "probe (Adam, 100 epochs) on frozen features.",
             "retrieval_map: mean average precision of test images querying the 60k training images by cosine "
             "similarity (relevant: same class), over the whole ranking; precision_at_10: the share of the 10 nearest "
             "with the query's class.",
             f"Report page of these runs: `{out / 'report' / 'index.html'}` (retrieval grids, t-SNE and UMAP maps).",
             *finetune_revision_notes(row.get("finetune_revision") for row in rows)]
    write_table(out, "evaluations", "Evaluation protocols on the fmnist-quick checkpoints", rows, notes,
                command=f"selfsup benchmark --suite evaluations --out {out}")
    write_report(runs, out / "report")
    return rows

"""The semisup suite: every semi-supervised method on Fashion-MNIST from 1, 4 and 25 labels
per class, over several label seeds, beside a linear probe of the SimCLR checkpoint on the
same labelled images.

Budget (scaled to a 2-core CPU; FixMatch trains 2^20 steps of 64 + 448 images): the pool is a
class-balanced 20k subset of the training split, batches of 32 labelled and 7 x 32
unlabelled images, 12 passes over the pool (about 1070 steps), and an EMA rate of 0.99
(FixMatch's 0.999 would leave 0.999^1070 = 34% of the random initial weights in the
evaluation network: supervised-only scored 15% with it); everything else is each method's
config (FixMatch's recipe).  FROST starts from the fmnist-quick SimCLR checkpoint
(``OUT/../fmnist-quick/runs/simclr``), as the issue asks.  Each run lives in
``OUT/runs/LABEL-Nlabels-seedS``; finished runs are reused, and the same command started in
several processes shares out the runs (``suites.claim``); the tables, written after this
process's training, show every finished run, those other processes finished meanwhile included.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

from ..config import merge, resolve
from ..build import load_pretrained
from ..data.datasets import dataset_info
from ..engine.train import load_datasets
from ..errors import SelfSupError
from ..eval.features import method_features
from ..eval.linear import train_linear_probe
from ..io import write_json
from ..methods.semisup.base import labelled_indices
from ..plots import curve_plot
from ..rundir import RunDirectory
from .report import bf16_views_notes, precision_exceptions, seed_range, write_table
from .definitions import SPREAD_SEEDS
from .suites import BEFORE_FIX, before_fix_note, claimed_run, finished_run, pretrain_row, run_checkpoint, run_slug

SEMISUP_BUDGET = {"dataset": "fashion-mnist", "subset": 20000, "epochs": 12, "batch_size": 32, "params": {"ema": 0.99},
                  "backbone": {"name": "resnet18", "width": 16, "small_stem": True},
                  "knn": {"every_n_epochs": 0}, "trainer": {"progress_bar": False, "precision": "auto"}}
LABELS_PER_CLASS = (1, 4, 25)
LABEL_SEEDS = (0, 1, 2)
SIMCLR_INIT = "simclr-init"  # stands for the SimCLR checkpoint in a row's settings
# The run-to-run spread: these cells (row, labels per class, label seed) again with the
# training seeds SPREAD_SEEDS (network initialisation, batches, augmentations, and the pool's
# subset, whose draw follows the run's seed; the label seed stays the same).
SPREAD_CELLS = (("supervised-only", 4, 0), ("fixmatch", 4, 0), ("supervised-only", 25, 0), ("flexmatch", 25, 0))
SEMISUP_ROWS = [
    ("supervised-only", "supervised-only", {}),
    ("pseudo-label", "pseudo-label", {}),
    ("self-training", "self-training", {"params": {"iterations": 4}}),
    ("fixmatch", "fixmatch", {}),
    ("fixmatch, balance hybrid", "fixmatch", {"params": {"balance": "hybrid"}}),
    ("frost from simclr (balance data)", "frost", {"params": {"iterations": 4}, "backbone": {"init": SIMCLR_INIT}}),
    ("frost from simclr, no balancing", "frost", {"params": {"iterations": 4, "balance": "none"},
                                                  "backbone": {"init": SIMCLR_INIT}}),
    *[(name, name, {}) for name in ("flexmatch", "freematch", "softmatch", "uda", "mean-teacher", "mixmatch",
                                    "remixmatch")],
]
# the rows whose per-class thresholds move, plotted over the epochs of one cell
THRESHOLD_ROWS, THRESHOLD_CELL = ("flexmatch", "freematch"), (4, 0)


def _spread_notes(spread: dict[tuple[str, int, int], dict[int, float]]) -> list[str]:
    """The note on the run-to-run spread: each spread cell's test top-1 per training seed."""
    cells = [f"{label} at {per_class} labels per class, label seed {seed}: "
             + ", ".join(f"{top1:.4f}" for _, top1 in sorted(by_seed.items()))
             + f" (training seeds {', '.join(map(str, sorted(by_seed)))}; range "
             f"{100 * seed_range(by_seed.values()):.1f} points)"
             for (label, per_class, seed), by_seed in spread.items() if len(by_seed) > 1]
    if not cells:
        return []
    return ["Run-to-run spread (the same cell and label seed, other training seeds, which also draw the pool "
            "and so its labelled images; runs "
            "`ROW-Nlabels-seedS-training-seedT/`): " + "; ".join(cells) + ". A difference between two cells "
            "smaller than these ranges is a tie."]


def _precision_notes(runs: list[dict]) -> list[str]:
    """Where the runs trained in more than one precision, the cells with runs in other than the
    most common one; where any trained in bf16-mixed, the note on its views."""
    found = precision_exceptions([(f"{r['row']} at {r['labels_per_class']}", r["precision"]) for r in runs])
    views = bf16_views_notes(r["precision"] for r in runs)
    if found is None:
        return views
    return [f"Precision: the runs trained in {found[0]} except some runs of these cells (labels per class; "
            f"`semisup_runs.csv` names each run's precision, the one `auto` chose on the machine that made it): "
            f"{found[1]}.", *views]


def simclr_probes(checkpoint: Path, cfg: dict, draws: list[tuple[int, int]]) -> dict[tuple[int, int], float]:
    """Test top-1 of a linear probe on the SimCLR checkpoint's features of the labelled images
    a semi-supervised run with ``cfg`` draws, for each ``(per_class, seed)`` of ``draws`` (the
    pool and the test split are embedded once)."""
    module = load_pretrained(checkpoint)
    train, _, test = load_datasets(cfg)
    pool_x, pool_y = method_features(module.method, train, module.norm)
    test_x, test_y = method_features(module.method, test, module.norm)
    probes = {}
    for per_class, seed in draws:
        labelled = labelled_indices(pool_y.numpy(), per_class, seed)
        probes[per_class, seed] = train_linear_probe(pool_x[labelled], pool_y[labelled], test_x, test_y,
                                                     train.num_classes, seed=seed)["test_top1"]
    return probes


def _mean_std(values: list[float]) -> str:
    if not values:
        return ""
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {spread:.4f} (n={len(values)})"


def semisup_suite(out: Path, data_dir: str | None = None, methods: list[str] | None = None,
                  labels: tuple[int, ...] = LABELS_PER_CLASS, seeds: tuple[int, ...] = LABEL_SEEDS,
                  budget: dict | None = None, init: Path | None = None) -> list[dict]:
    """Run the rows of ``methods`` (None: all) for every count of ``labels`` per class and
    label seed of ``seeds``, then write ``semisup.md``/``.csv``, ``semisup_runs.csv`` and the
    self-training plot from every finished run of the grid (the suite's own label counts and
    seeds and the ones asked for), so that a grid can be filled a part at a time."""
    simclr_run = RunDirectory(out.parent / "fmnist-quick" / "runs" / "simclr")

    def simclr_init() -> Path:  # asked for only when a run or probe needs it: remaking it takes a while
        nonlocal init
        if init is None:
            if simclr_run.metrics() is None:
                raise SelfSupError(f"FROST and the linear-probe row start from the SimCLR run {simclr_run.path}; run "
                                   f"`selfsup benchmark --suite fmnist-quick --out {out.parent / 'fmnist-quick'} "
                                   "--method simclr`")
            init = run_checkpoint(simclr_run.path)
        return init

    results: dict[tuple[str, int], list[float]] = {}
    rounds: dict[int, dict[str, tuple[list, list]]] = {}  # labels per class → line → (rounds, pool top-1)
    finals: dict[int, dict[str, tuple[int, float]]] = {}
    thresholds: dict[str, dict[str, tuple[list, list]]] = {}  # row → class → (epochs, thresholds)
    runs = []
    before_fix: set[tuple[str, int]] = set()  # cells with a run made before a fix of its method
    table_labels = sorted(set(LABELS_PER_CLASS) | set(labels))
    table_seeds = sorted(set(LABEL_SEEDS) | set(seeds))
    grid = []
    for label, method, settings in SEMISUP_ROWS:
        for per_class in table_labels:
            for seed in table_seeds:
                extra_seeds = SPREAD_SEEDS if (label, per_class, seed) in SPREAD_CELLS else ()
                for training_seed in (0, *extra_seeds):
                    change = merge(settings, {"params": {"labels_per_class": per_class, "label_seed": seed}},
                                   strict=False)
                    cfg = merge(merge(resolve(method), {**(budget or SEMISUP_BUDGET), "data_dir": data_dir}), change)
                    slug = f"{label}-{per_class}labels-seed{seed}"
                    if training_seed:
                        cfg["seed"], slug = training_seed, f"{slug}-training-seed{training_seed}"
                    run_dir = out / "runs" / run_slug(slug)
                    grid.append((label, per_class, seed, training_seed, cfg, run_dir))
                    if (methods and method not in methods) or per_class not in labels or seed not in seeds:
                        continue

                    def train(cfg=cfg, run_dir=run_dir):
                        if cfg["backbone"].get("init") == SIMCLR_INIT:
                            cfg["backbone"]["init"] = str(simclr_init())
                        return pretrain_row(run_dir.name, cfg, run_dir)

                    claimed_run(run_dir, cfg, run_dir.name, train)  # the init's path makes no other run
    spread: dict[tuple[str, int, int], dict[int, float]] = {}
    for label, per_class, seed, training_seed, cfg, run_dir in grid:  # runs other processes finished meanwhile count
        metrics = finished_run(run_dir, cfg, redo=False)
        if metrics is None:
            continue
        runs.append({"row": label, "labels_per_class": per_class, "label_seed": seed, "training_seed": training_seed,
                     "test_top1": metrics["test_top1"], "train_seconds": metrics["train_seconds"],
                     "precision": RunDirectory(run_dir).precision(),
                     "before_fix": bool(metrics.get("before_fix"))})
        if (label, per_class, seed) in SPREAD_CELLS:
            spread.setdefault((label, per_class, seed), {})[training_seed] = metrics["test_top1"]
        if training_seed:
            continue  # the spread's runs are not cells of the table
        results.setdefault((label, per_class), []).append(metrics["test_top1"])
        if metrics.get("before_fix"):
            before_fix.add((label, per_class))
        if label in THRESHOLD_ROWS and (per_class, seed) == THRESHOLD_CELL:
            moving = [h for h in metrics["epoch_history"] if "threshold_class_0" in h]
            classes = sorted(int(k.rsplit("_", 1)[1]) for k in moving[0] if k.startswith("threshold_class_")) \
                if moving else []
            names = dataset_info(cfg["dataset"]).class_names
            thresholds[label] = {names[c] if c < len(names) else f"class {c}":
                                 ([h["epoch"] for h in moving], [h[f"threshold_class_{c}"] for h in moving])
                                 for c in classes}
        history = [h for h in metrics["epoch_history"] if "pool_top1" in h]
        if history:
            name = f"{label}, label seed {seed}"
            rounds.setdefault(per_class, {})[name] = ([h["round"] for h in history],
                                                      [h["pool_top1"] for h in history])
            finals.setdefault(per_class, {})[name] = (history[-1]["round"] + 1, metrics["test_top1"])
    cells = sorted({(r["labels_per_class"], r["label_seed"]) for r in runs if not r["training_seed"]})
    if cells and (init is not None or simclr_run.metrics() is not None):
        path = out / "simclr_linear_probes.json"
        probes = json.loads(path.read_text()) if path.exists() else {}
        missing = [(n, s) for n, s in cells if f"{n}/{s}" not in probes]
        if missing:
            cfg = merge(resolve("supervised-only"), {**(budget or SEMISUP_BUDGET), "data_dir": data_dir})
            probes.update({f"{n}/{s}": top1 for (n, s), top1 in simclr_probes(simclr_init(), cfg, missing).items()})
            write_json(path, probes)
        for per_class, seed in cells:
            results.setdefault(("linear probe of the SimCLR checkpoint", per_class), []).append(
                probes[f"{per_class}/{seed}"])
    shown_labels = [n for n in table_labels if any(key[1] == n for key in results)]
    rows = []
    by_labels = {}  # plot line → (label counts, mean top-1); a line names its counts with a run made before a fix
    for name in dict.fromkeys(key[0] for key in results):
        rows.append({"method": name, **{f"{n}_per_class": _mean_std(results.get((name, n), []))
                                        + (BEFORE_FIX if (name, n) in before_fix else "") for n in shown_labels}})
        counts = [n for n in shown_labels if (name, n) in results]
        old = ", ".join(str(n) for n in counts if (name, n) in before_fix)
        by_labels[name + (f" (before a fix at {old})" if old else "")] = (
            counts, [statistics.mean(results[(name, n)]) for n in counts])
    budget = budget or SEMISUP_BUDGET
    notes = ["Test top-1 on the full Fashion-MNIST test split (EMA network), mean ± standard deviation over the label "
             "seeds (which images are labelled) of the finished runs, n of them; `semisup_runs.csv` says which.",
             f"Budget laid over each method's config: `{budget}` (pool: a class-balanced subset; FixMatch's paper trains "
             "2^20 steps, this about a thousand, so absolute numbers are far below the paper's). The EMA rate is 0.99, "
             "not FixMatch's: after about 1070 steps FixMatch's rate would leave a third of the random initial "
             "weights in the evaluation network.",
             "frost: initialised from the fmnist-quick SimCLR checkpoint; its linear-probe row trains one linear layer "
             "on that checkpoint's frozen features of the same labelled images (Adam, 100 epochs).",
             "Each run is `runs/ROW-Nlabels-seedS/` (config.yaml and metrics.json committed); `semisup_runs.csv` lists "
             "every run."] + _spread_notes(spread) + _precision_notes(runs) + ([before_fix_note("a run of the cell")] if before_fix else [])
    command = f"selfsup benchmark --suite semisup --out {out}" + "".join(
        f" --labels-per-class {n}" for n in shown_labels) + "".join(f" --label-seed {s}" for s in sorted({s for _, s in cells}))
    write_table(out, "semisup", "Semi-supervised learning on Fashion-MNIST", rows, notes, command=command)
    write_table(out, "semisup_runs", "Semi-supervised runs", runs, [], command=command)
    if rounds:
        def panel(n: int) -> str:
            return f"{n} label{'' if n == 1 else 's'} per class"

        curve_plot(out / "semisup_self_training.png", {panel(n): rounds[n] for n in sorted(rounds)},
                   "self-training round", "EMA network's top-1 on the pool",
                   "Self-training: top-1 of the EMA network's predictions on the whole pool at each round's start",
                   None, {panel(n): lines for n, lines in finals.items()})
    curve_plot(out / "semisup_by_labels.png", {"": by_labels}, "labelled images per class",
               "test top-1 (mean over label seeds)", "Semi-supervised learning on Fashion-MNIST: test top-1 against "
               "labelled images per class", log_x=True)
    if thresholds:
        per_class, seed = THRESHOLD_CELL
        curve_plot(out / "semisup_thresholds.png", thresholds, "epoch (thresholds at its start)",
                   "confidence a pseudo-label needs",
                   f"Per-class thresholds at {per_class} labels per class, label seed {seed}")
    return rows

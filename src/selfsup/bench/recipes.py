"""The recipes suite: does each method learn at the user's budget?  Every method that learns
without labels, at 1 and 5 epochs of fmnist-quick's budget, under its paper recipe and its short
one (``configs/recipes.yaml``), kNN on the full test split against its random-init network.

A cell with fmnist-quick's epochs whose settings are that suite's row of the method (the short
recipe; or the paper's, where a method has no short entry and the two are the same settings) is
that row's run (``OUT/../fmnist-quick/runs/METHOD``), not trained again.  Runs live in ``OUT/runs/LABEL``;
finished runs are reused and several processes share out the rest (``suites.claimed_run``).
"""
from __future__ import annotations

from pathlib import Path

from ..rundir import RunDirectory
from .definitions import FMNIST_QUICK, RECIPE_EPOCHS, RECIPE_SPREAD_ROW, SPREAD_SEEDS, recipe_runs
from .report import bf16_views_notes, precision_exceptions, seed_range, write_table
from .suites import BEFORE_FIX, claimed_run, finished_run, pretrain_row, run_slug, suite_config

# fmnist-quick's budget; the epochs and the recipe are each row's
RECIPE_BUDGET = {key: value for key, value in FMNIST_QUICK.items() if key != "epochs"}
QUICK_EPOCHS = FMNIST_QUICK["epochs"]  # the cells that fmnist-quick's runs can be


def _fmnist_quick_dir(out: Path, method: str) -> Path:
    return out.parent / "fmnist-quick" / "runs" / method


def _fmnist_quick_run(out: Path, method: str, cfg: dict) -> dict | None:
    """metrics.json of fmnist-quick's run of ``method`` if it finished with ``cfg``'s settings
    (``before_fix`` set where it predates a fix of the method)."""
    run_dir = _fmnist_quick_dir(out, method)
    return finished_run(run_dir, cfg, redo=False) if (run_dir / "metrics.json").exists() else None


def recipes_suite(out: Path, data_dir: str | None, methods: list[str] | None) -> list[dict]:
    """Train the rows of ``recipe_runs`` (of ``methods``; None: all) not finished yet, then write
    ``recipes.md``/``.csv``: one line per method, kNN per recipe and budget."""
    runs, cells, spread = recipe_runs(), {}, {}
    with_short = {m for _, m, s in runs if s["recipe"] == "short"}
    for label, method, settings in runs:
        cfg, run_dir = suite_config(RECIPE_BUDGET, settings, method, data_dir), out / "runs" / run_slug(label)
        as_quick = settings["epochs"] == QUICK_EPOCHS and (settings["recipe"] == "short" or method not in with_short)
        quick = _fmnist_quick_run(out, method, cfg) if as_quick else None
        current = quick if quick and not quick.get("before_fix") else None
        if current is None and (methods is None or method in methods):  # the suite's own run of the cell
            claimed_run(run_dir, cfg, label, lambda: pretrain_row(label, cfg, run_dir, baselines=True,
                                                                  baselines_cache=out / "baselines"))
        # fmnist-quick's run made before a fix stands for the cell until the suite has its own
        metrics = current or finished_run(run_dir, cfg, redo=False) or quick
        if metrics and (label == RECIPE_SPREAD_ROW or "seed" in settings):  # seed 0: the table's cell
            spread[settings.get("seed", 0)] = metrics["knn_top1"]
        if metrics and "seed" not in settings:
            made_in = _fmnist_quick_dir(out, method) if metrics is quick else run_dir
            cells[(method, settings["recipe"], settings["epochs"])] = (
                metrics, metrics is quick, RunDirectory(made_in).precision())
    rows, made_in_precision = [], []  # the precision list in the table's method order
    for method in dict.fromkeys(m for _, m, _ in runs):
        mine = {key[1:]: value for key, value in cells.items() if key[0] == method}
        if not mine:
            continue
        made_in_precision += [(f"{method} {recipe} {epochs} ep", precision)
                              for (recipe, epochs), (_, _, precision) in mine.items()]
        own = method in with_short
        row = {"method": method, "short_recipe": "yes" if own else "= paper"}
        for epochs in RECIPE_EPOCHS:
            for recipe in ("paper", "short"):
                found = mine.get((recipe if own else "paper", epochs))
                row[f"knn_{recipe}_{epochs}ep"] = found[0]["knn_top1"] if found else None
        baselines = next(iter(mine.values()))[0].get("baselines", {})
        row["random_init_knn"] = baselines.get("random_init_knn_top1")
        row["fmnist_quick_run"] = "yes" if any(quick for _, quick, _ in mine.values()) else ""
        rows.append(row)
    precisions = precision_exceptions(made_in_precision)
    notes = ["kNN (k 200, T 0.1) on backbone features of the full test split, bank: the training split; "
             f"fmnist-quick's budget but its epochs (`{RECIPE_BUDGET}`); the token methods on its ViT.",
             "paper: the method's packaged config (its paper's recipe); short: `configs/recipes.yaml`'s settings "
             "laid over it (`--recipe short`, and what `--recipe auto`, the default, picks below 100 epochs); "
             "short_recipe '= paper': the method has no short entry, so both columns are the one run.",
             "random_init_knn: the method's own network at its random initialisation (the bar it must clear).",
             f"fmnist_quick_run 'yes': the {QUICK_EPOCHS}-epoch cell (the short recipe's, or the one run of a method "
             "without a short entry) is fmnist-quick's run of the method (same settings).",
             "Each cell is the run in `runs/METHOD-RECIPE-N-ep/` (config.yaml and metrics.json committed)."]
    if len(spread) == 1 + len(SPREAD_SEEDS):
        knn = [spread[seed] for seed in sorted(spread)]
        notes.append(f"Run-to-run spread of a 1-epoch cell: `{RECIPE_SPREAD_ROW}` with training seeds 0 (the table's), "
                     f"{', '.join(map(str, SPREAD_SEEDS))} (`runs/{run_slug(RECIPE_SPREAD_ROW)}-training-seed-S/`): "
                     f"kNN {', '.join(f'{v:.4f}' for v in knn)}, a range of {100 * seed_range(knn):.2f} points; "
                     "two 1-epoch cells closer than this are a tie.")
    if precisions:
        notes.append(f"Precision (the one `auto` chose on the machine that made the run): {precisions[0]}, but for "
                     f"{precisions[1]}.")
    older = [f"{method} {recipe} {epochs} ep" for (method, recipe, epochs), (metrics, _, _) in cells.items()
             if metrics.get("before_fix")]
    if older:
        notes.append(f"Made before a fix of their method ({BEFORE_FIX.strip()}; the suite makes them again when the "
                     f"method is run): {', '.join(older)}.")
    notes += bf16_views_notes(precision for _, precision in made_in_precision)
    write_table(out, "recipes", "Paper and short recipes at 1 and 5 epochs on Fashion-MNIST (kNN)", rows, notes,
                command=f"selfsup benchmark --suite recipes --out {out}")
    return rows

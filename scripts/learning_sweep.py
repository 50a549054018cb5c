"""Runs the learning tests' measures (tests/test_learning.py) for a training seed and appends
one JSON line per method to benchmarks/learning-tests/seed-SEED.jsonl, then rewrites
benchmarks/learning-tests/learning-tests.md from every seed's file: the evidence behind the
tiers and margins the tests use.  Usage:
    .venv/bin/python scripts/learning_sweep.py SEED [METHOD ...]   (default: every tested method)
    .venv/bin/python scripts/learning_sweep.py --table              (only the table)"""
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("test_learning", ROOT / "tests" / "test_learning.py")
learning = importlib.util.module_from_spec(spec)
spec.loader.exec_module(learning)

RESULTS = ROOT / "benchmarks" / "learning-tests"


def margin_left(row: dict) -> float:
    """How far the measure cleared (> 0) or missed (< 0) its bar, as a fraction of the bar's reference."""
    if "frozen" in row:
        return (row["frozen"] - row["trained"]) / abs(row["frozen"]) - learning.STATEFUL_MARGIN
    if "objective_trained" in row:
        reference = abs(row["objective_random_init"])
        return (row["objective_random_init"] - row["objective_trained"]) / reference - learning.OBJECTIVE_MARGIN
    bar = learning.CLASSIFIER_MARGIN if row["measure"] == "test_top1" else learning.MARGIN
    return row["trained"] - row["random_init"] - bar


def passes(row: dict) -> bool:
    """Whether ``row`` clears the test's bars as they are now (a row may predate a change of them)."""
    collapsed = "spread_trained" in row and row["spread_trained"] < 0.5 * row["spread_random_init"]
    return margin_left(row) >= 0 and not collapsed


def write_table() -> None:
    rows = [json.loads(line) for path in sorted(RESULTS.glob("seed-*.jsonl")) for line in path.read_text().splitlines()]
    seeds = sorted({row["seed"] for row in rows})
    latest = {(row["method"], row["seed"]): row for row in rows}  # a method measured again: its last line
    lines = ["# Learning tests: each method's measure over training seeds", "",
             "Made by `scripts/learning_sweep.py SEED` (the measures of `tests/test_learning.py`, whose CI run uses "
             "seed 0). Each cell: the measure after training against its reference, then how far it cleared (+) or "
             "missed (−) the test's bar. Tiers: `stateful`: last-epoch loss against the same run at learning rate 0 "
             f"(bar: {learning.STATEFUL_MARGIN:.0%} lower); `objective`: held-out loss against the random "
             f"initialisation (bar: {learning.OBJECTIVE_MARGIN:.0%} lower, and no collapse); `representation` and "
             f"`classifier`: top-1 against the random initialisation (bars: +{learning.MARGIN} and "
             f"+{learning.CLASSIFIER_MARGIN}).", "",
             "| method | tier | " + " | ".join(f"seed {seed}" for seed in seeds) + " | seconds (last seed) |",
             "|---|---|" + "---|" * (len(seeds) + 1)]
    for method in sorted({row["method"] for row in rows}):
        cells, tier, seconds = [], "", ""
        for seed in seeds:
            row = latest.get((method, seed))
            if row is None:
                cells.append("")
                continue
            if "frozen" in row:
                tier, cell = "stateful", f"{row['trained']:.3f} vs {row['frozen']:.3f}"
            elif "objective_trained" in row:
                tier = "objective"
                cell = f"{row['objective_trained']:.3f} vs {row['objective_random_init']:.3f}"
            else:
                tier = "classifier" if row["measure"] == "test_top1" else "representation"
                cell = f"{row['measure'].replace('_top1', '')} {row['trained']:.3f} vs {row['random_init']:.3f}"
            cells.append(f"{cell} ({margin_left(row):+.3f}){'' if passes(row) else ' **fails**'}")
            seconds = f"{row['total_seconds']:.0f}"
        lines.append(f"| {method} | {tier} | " + " | ".join(cells) + f" | {seconds} |")
    (RESULTS / "learning-tests.md").write_text("\n".join(lines) + "\n")


if sys.argv[1:] == ["--table"]:
    write_table()
    sys.exit(0)
seed, methods = int(sys.argv[1]), sys.argv[2:] or learning.TESTED + learning.COLOUR_ONLY
os.environ.pop("SELFSUP_CHECKPOINT_ROOT", None)  # the runs' checkpoints go with their temporary folders
out_file = RESULTS / f"seed-{seed}.jsonl"
out_file.parent.mkdir(parents=True, exist_ok=True)
for method in methods:
    run_dir = Path(tempfile.mkdtemp(prefix=f"learning-{method}-"))
    photos = str(learning.colour_photo_crops(run_dir / "photos")) if method in learning.COLOUR_ONLY else None
    start = time.perf_counter()
    try:
        result = learning.learns(method, run_dir / "run", seed, photos)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    result.update(method=method, seed=seed, total_seconds=round(time.perf_counter() - start, 1))
    with out_file.open("a") as handle:
        handle.write(json.dumps(result) + "\n")
    print(f"{method} seed {seed}: {'learns' if result['passed'] else 'FAILS'} ({result['verdict']})", flush=True)
    write_table()

"""Before and after the fidelity fixes of issue 27 (and later ones): the committed metrics of every run
a fix changed (``before.json``, copied from the commit before the fix) beside the same run made
again with the fixed code, where it has been made.  Trains nothing."""
from __future__ import annotations

import json
from pathlib import Path

from .report import write_table
from .suites import made_before_a_fix

MEASURES = ("knn_top1", "linear_top1")


def fidelity_table(out: Path) -> list[dict]:
    """``out/fidelity.md``/``.csv`` from ``out/before.json`` and the runs under ``out.parent``."""
    before = json.loads((out / "before.json").read_text())
    rows = []
    for run, old in before["runs"].items():
        path = out.parent / run / "metrics.json"
        new = old.get("after") or (json.loads(path.read_text()) if path.exists() else None)
        if new is not None and made_before_a_fix(new, new["method"]):
            new = None  # still the run from before the fix
        row = {"run": run + (f" ({old['dataset']})" if "dataset" in old else ""),
               "before_at": old.get("commit", before["commit"])[:7]}
        for measure in MEASURES:
            row[f"{measure} before"] = old.get(measure)
            row[f"{measure} after"] = new.get(measure) if new else None
            row[f"{measure} change"] = (new[measure] - old[measure]) if new and new.get(measure) is not None \
                and old.get(measure) is not None else None
        if "baselines" in old:  # series: the encoder itself changed, so its random initialisation did too
            row["random_init_knn_top1 before"] = old["baselines"]["random_init_knn_top1"]
            row["random_init_knn_top1 after"] = (new or {}).get("baselines", {}).get("random_init_knn_top1")
        rows.append(row)
    rows.sort(key=lambda r: (r["knn_top1 after"] is None, r["run"]))
    notes = [f"before: the run's metrics.json at commit {before['commit'][:7]}, before the fixes (`before.json`), or at "
             "the commit in before_at for a run a later fix changed; after: the run made again by its suite's command "
             "with the fixed code (empty: not made again yet). Same settings and seed; only the code changed. A run "
             "whose suite has since changed its settings keeps its remade metrics in `before.json` (`after`, with the "
             "commit that held them).",
             "The fixes: BYOL's loss is the paper's 2 - 2cos per direction; DeepCluster-v2 clusters by spherical "
             "k-means; MoCo never takes an image's own earlier key as a negative (its queue is no longer clamped to "
             "the dataset) and computes end-to-end keys on a shuffled batch; DARe is the report's one-way decoupled "
             "L_con plus the moment-matched JSD summed over dimensions (on L2-normalised means, which the ablations "
             "measured better than the raw ones); weight decay reaches biases and norms where the reference code "
             "decays them (MoCo, SimSiam, InstDisc, DeepCluster, SupCon); jigsaw's permutation set maximises the "
             "average Hamming distance (multitask hosts jigsaw); CPC's series encoder normalises each time step "
             "alone, so it no longer sees the future. Later (2026-12-05, before_at 9b0c1f6): DINO, iBOT, MSN and "
             "I-JEPA raise their weight decay from 0.04 to 0.4 along a cosine, as their papers do."]
    write_table(out, "fidelity", "Runs the fidelity fixes changed: before and after", rows, notes,
                command=f"selfsup benchmark --suite fidelity --out {out}")
    return rows

"""Writing benchmark results: a markdown table, a CSV, and bar plots (line plots: ``selfsup.plots``)."""
from __future__ import annotations

import csv
import io
import sys
import textwrap
from pathlib import Path

from ..io import atomic_write_text


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return "" if value is None else str(value)


def seed_range(values) -> float:
    """Max minus min of one setting's results over its training seeds: the run-to-run spread
    the suites call differences inside a tie (0 for one run)."""
    values = list(values)
    return max(values) - min(values)


def precision_exceptions(cells: list[tuple[str, str]]) -> tuple[str, str] | None:
    """For ``(cell, precision)`` pairs (one per run; a suite asks for ``auto``, which depends on
    the machine): the precision most runs trained in and ``"P: cell, cell; ..."`` naming the cells
    with runs in the others, or None where every run trained in one precision."""
    by_precision: dict[str, dict[str, None]] = {}
    for cell, precision in cells:
        by_precision.setdefault(precision, {})[cell] = None
    if len(by_precision) < 2:
        return None
    usual = max(by_precision, key=lambda p: sum(precision == p for _, precision in cells))
    return usual, "; ".join(f"{p}: {', '.join(c)}" for p, c in by_precision.items() if p != usual)


def bf16_views_notes(precisions) -> list[str]:
    """The tables' note on the views of bf16-mixed runs (empty unless a run of ``precisions``,
    ``RunDirectory.precision`` records, trained some epochs in bf16-mixed): until commit 37e3693
    the engine made views under autocast."""
    if not any("bf16-mixed" in (precision or "") for precision in precisions):
        return []
    return ["bf16-mixed runs made before 2026-12-07 (commit 37e3693) made their views in bfloat16 too (the crops' "
            "sampling grid and the blur); later runs make views in float32."]


def finetune_revision_notes(revisions) -> list[str]:
    """The tables' note on fine-tuning results of ``revisions`` (their ``revision`` fields, the
    ``finetune_revision`` column) made before the fix of 2026-12-07 (empty when none was)."""
    if not any(revision == 1 for revision in revisions):
        return []
    return ["finetune_revision 1: fine-tuning made before 2026-12-07, which fine-tuned the pretrained network in the "
            "eval mode its checkpoint loads in (BatchNorm running statistics frozen at their pretraining values) while "
            "the from-scratch run trained in train mode; its pretrained figures are not the papers' protocol and wait "
            "to be remade (ViT rows, with LayerNorm and no dropout, are unaffected). Revision 2 fine-tunes in train mode; "
            "the suite fine-tunes a revision-1 run again when its row or method is asked for (`--row`, `--method`, or "
            "the whole suite), pretraining it again from its config.yaml where its checkpoint is gone."]


def write_table(out: Path, name: str, title: str, rows: list[dict], notes: list[str], command: str | None = None) -> None:
    """``{name}.md`` (title, command — by default the one running —, table, notes) and ``{name}.csv`` in ``out``."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    command = command or f"selfsup {' '.join(sys.argv[1:]) if sys.argv[1:] else 'benchmark'}"
    lines = [f"# {title}", "", f"Command: `{command}`", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(row.get(c)) for c in columns) + " |" for row in rows]
    lines += [""] + [f"- {note}" for note in notes]
    atomic_write_text(out / f"{name}.md", "\n".join(lines) + "\n")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / f"{name}.csv", buffer.getvalue())


def bar_plot(path: Path, labels: list[str], values: list[float], ylabel: str, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = [f"C{i % 10}" for i in range(len(values))]
    if len(labels) > 12:  # many rows (the ablations): horizontal bars keep every label readable
        fig, ax = plt.subplots(figsize=(8.0, 1.2 + 0.26 * len(labels)))
        bars = ax.barh(labels, values, color=colours)
        ax.invert_yaxis()  # the table's order, top to bottom
        ax.tick_params(axis="y", labelsize=8)
        ax.set_xlabel(ylabel)
    else:
        fig, ax = plt.subplots(figsize=(max(6.0, 0.8 * len(labels)), 3.5))
        bars = ax.bar(labels, values, color=colours)
        if len(labels) > 5:
            ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        ax.set_ylabel(ylabel)
    ax.bar_label(bars, fmt="%.3g", fontsize=8)
    ax.set_title(textwrap.fill(title, 70), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

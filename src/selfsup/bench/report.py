"""Writing benchmark results: a markdown table, a CSV, and plots."""
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


def curve_plot(path: Path, panels: dict[str, dict[str, tuple[list, list]]], xlabel: str, ylabel: str, title: str,
               baselines: dict[str, float] | None = None,
               finals: dict[str, dict[str, tuple[float, float]]] | None = None) -> None:
    """One axes per panel (its title → {line label → (xs, ys)}), stacked, each with its legend on the right.

    Dashed horizontal ``baselines`` are drawn in every panel; ``finals`` adds a star at a line's final point in the
    line's colour, explained once in the figure title;
    ``finals`` is keyed like ``panels`` (panel → line label → (x, y)).
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(len(panels), 1, figsize=(8.5, 0.6 + 3.0 * len(panels)), squeeze=False, layout="constrained")
    for ax, (panel, curves) in zip(axes[:, 0], panels.items()):
        for i, (label, (xs, ys)) in enumerate(curves.items()):  # 10 colours × 3 markers tell 30 lines apart
            line, = ax.plot(xs, ys, marker="os^"[i // 10 % 3], label=label)
            if label in (finals or {}).get(panel, {}):
                ax.plot(*finals[panel][label], marker="*", markersize=12, linestyle="none", color=line.get_color())
        styles = ["--", ":", "-."]
        for i, (label, value) in enumerate((k, v) for k, v in (baselines or {}).items() if v is not None):
            ax.axhline(value, linestyle=styles[i % 3], color="0.4", linewidth=1.2, label=f"{label} (full test)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(panel, fontsize=9)
        entries = len(curves) + len(baselines or {})
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, ncols=1 + entries // 14)
    star = "; ★ final top-1, full test split" if finals else ""
    fig.suptitle(textwrap.fill(title + star, 90), fontsize=10)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)

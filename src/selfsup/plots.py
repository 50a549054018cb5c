"""Line plots shared by the benchmark tables and the report pages (matplotlib, no display)."""
from __future__ import annotations

import textwrap
from pathlib import Path


def curve_plot(path: Path, panels: dict[str, dict[str, tuple[list, list]]], xlabel: str, ylabel: str,
               title: str = "", baselines: dict[str, float | None] | None = None,
               finals: dict[str, dict[str, tuple[float, float]]] | None = None, log_x: bool = False) -> bool:
    """One axes per panel (its title → {line label → (xs, ys)}), stacked, legends beside the axes.

    Empty curves are left out (the others keep the colour of their place); False, and no file,
    when no panel has a line.  Dashed grey
    ``baselines`` (label → y) are drawn in every panel; ``finals``, keyed like ``panels``,
    adds a star at a line's final point, explained once in the figure title.  Lines get 10
    colours × 3 markers on curves of under 30 points (such as epochs), × 3 line styles on longer
    ones (such as steps).  ``log_x``: a logarithmic x axis, ticked at the curves' x values
    (for a few spread-out settings such as label counts).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator, NullLocator, ScalarFormatter

    panels = {name: curves for name, curves in panels.items() if any(len(xs) for xs, _ in curves.values())}
    if not panels:
        return False
    baselines = {label: value for label, value in (baselines or {}).items() if value is not None}
    fig = Figure(figsize=(8.5, 0.6 + 3.0 * len(panels)), layout="constrained")
    FigureCanvasAgg(fig)
    for ax, (panel, curves) in zip(fig.subplots(len(panels), 1, squeeze=False)[:, 0], panels.items()):
        for i, (label, (xs, ys)) in enumerate(curves.items()):  # the i-th line keeps its style when some are empty
            if not len(xs):
                continue
            style = {"marker": "os^"[i // 10 % 3]} if len(xs) < 30 else {"linestyle": ["-", "--", ":"][i // 10 % 3]}
            line, = ax.plot(xs, ys, color=f"C{i % 10}", label=" " + label, **style)  # "_…" would hide the label
            if label in (finals or {}).get(panel, {}):
                ax.plot(*finals[panel][label], marker="*", markersize=12, linestyle="none", color=line.get_color())
        for i, (label, value) in enumerate(baselines.items()):
            ax.axhline(value, linestyle=["--", ":", "-."][i % 3], color="0.4", linewidth=1.2, label=label)
        if log_x:
            ax.set_xscale("log")
            ax.set_xticks(sorted({x for xs, _ in curves.values() for x in xs}), minor=False)
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_locator(NullLocator())
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if panel:
            ax.set_title(panel, fontsize=9)
        entries = sum(1 for xs, _ in curves.values() if len(xs)) + len(baselines)
        if entries > 1:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0,
                      ncols=1 + entries // 14)
    heading = "; ".join(part for part in [title, "★ final top-1, full test split" if finals else ""] if part)
    if heading:
        fig.suptitle(textwrap.fill(heading, 90), fontsize=10)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return True

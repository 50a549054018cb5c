"""``selfsup report``: one HTML page (``index.html``) and its markdown twin (``report.md``) from run directories.

Every run is read and checked before anything is written. The output folder is self-contained: the
page's plots and the runs' images are files next to it, linked by relative paths. ``.selfsup-report-files`` lists those
files, so that a later report into the same directory deletes the ones it no longer shows (and nothing else).
"""
from __future__ import annotations

import csv
import json
import re
import shutil
from dataclasses import dataclass
from html import escape
from pathlib import Path
from urllib.parse import quote

from .errors import SelfSupError
from .io import atomic_write_text, ensure_writable_dir
from .plots import curve_plot

HEADLINE = {"method": "method", "dataset": "dataset", "epochs": "epochs", "final_loss": "final loss",
            "knn_top1": "kNN top-1", "linear_top1": "linear top-1",
            "online_linear_top1": "online linear top-1", "train_seconds": "train seconds",
            "samples_per_second": "images/s", "peak_memory_mb": "peak memory (MB)"}
REPORT_FILES = ".selfsup-report-files"

STYLE = """body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; padding: 0 1em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; }
figure { display: inline-block; margin: 0 1em 1em 0; }
img { max-width: 100%; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; }
section { border-top: 2px solid #ddd; margin-top: 2em; }"""

# After loading, #image-check holds "LOADED/TOTAL" for the page's images (read by the browser test).
IMAGE_CHECK = """<div id="image-check" hidden></div>
<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const loaded = images.filter((img) => img.complete && img.naturalWidth > 0).length;
  document.getElementById("image-check").textContent = `${loaded}/${images.length}`;
});
</script>"""


@dataclass
class Run:
    """What the report shows of one run directory, read before anything is written."""
    path: Path
    label: str
    metrics: dict
    settings: str | None
    loss: tuple[list, list]
    knn: tuple[list, list]
    online: tuple[list, list]  # the online probe's top-1 per monitored epoch (empty without one)
    evaluations: dict[str, dict | str]  # file name -> its data, or why it could not be read
    images: list[Path]


def _md(text: str, inline: bool = True) -> str:
    """``text`` as literal markdown: characters that would start emphasis, code, HTML or a table
    cell are backslash-escaped (a run label like ``<i>run`` or ``a*b*`` stays as written);
    ``inline``: on one line."""
    text = re.sub(r"([\\`*<>|])", r"\\\1", text)
    return text.replace("\n", " ") if inline else text


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]

    def html(self) -> str:
        head = "".join(f"<th>{escape(c)}</th>" for c in self.header)
        body = "\n".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in self.rows)
        return f"<h3>{escape(self.title)}</h3>\n<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"

    def markdown(self) -> str:
        def row(cells):
            return "| " + " | ".join(map(_md, cells)) + " |"
        return "\n".join([f"### {_md(self.title)}", "", row(self.header), "|" + "---|" * len(self.header),
                          *map(row, self.rows)])


@dataclass
class Image:
    src: str  # relative to the report directory
    caption: str

    def html(self) -> str:
        return (f'<figure><img src="{escape(quote(self.src))}" alt="{escape(self.caption)}">'
                f"<figcaption>{escape(self.caption)}</figcaption></figure>")

    def markdown(self) -> str:
        alt = re.sub(r"([][])", r"\\\1", _md(self.caption))
        return f"![{alt}]({quote(self.src)})"


@dataclass
class Text:
    text: str

    def html(self) -> str:
        return f"<p>{escape(self.text)}</p>"

    def markdown(self) -> str:
        return _md(self.text, inline=False)


class Settings(Text):
    """The resolved config.yaml, collapsed."""

    def html(self) -> str:
        return f"<details><summary>resolved settings (config.yaml)</summary>\n<pre>{escape(self.text)}</pre>\n</details>"

    def markdown(self) -> str:
        fence = "`" * max([3] + [len(ticks) + 1 for ticks in re.findall("`+", self.text)])
        return (f"<details><summary>resolved settings (config.yaml)</summary>\n\n{fence}yaml\n"
                f"{self.text.rstrip()}\n{fence}\n\n</details>")


@dataclass
class Section:
    title: str
    blocks: list


def write_report(run_dirs: list, out: Path) -> Path:
    """Check every run, then write ``out/index.html``, ``out/report.md`` and their images; returns index.html."""
    paths = [Path(p) for p in run_dirs]  # shown as given: a committed page names no machine's folders
    runs = [load_run(path, label) for path, label in zip(paths, _labels([p.resolve() for p in paths]))]
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SelfSupError(f"--out {out} is a file; choose a directory for the report")
    ensure_writable_dir(out)
    try:
        sections = _sections(runs, out)
        title = "selfsup report: " + ", ".join(run.label for run in runs)
        atomic_write_text(out / "index.html", _html(title, sections))
        atomic_write_text(out / "report.md", _markdown(title, sections))
        _forget_earlier_files(out, [block.src for section in sections for block in section.blocks
                                    if isinstance(block, Image)])
    except OSError as exc:
        raise SelfSupError(f"cannot write the report into {out} ({exc})") from exc
    return out / "index.html"


def _earlier_files(out: Path) -> list[str]:
    """The files the last report into ``out`` wrote (its ``REPORT_FILES`` list, relative to ``out``)."""
    listing = out / REPORT_FILES
    return listing.read_text().splitlines() if listing.is_file() else []


def _forget_earlier_files(out: Path, written: list[str]) -> None:
    """Delete the files that the last report into ``out`` wrote and this one did not, and the folders they
    leave empty; then list this report's ``written`` files (relative to ``out``)."""
    listing = out / REPORT_FILES
    for name in set(_earlier_files(out)) - set(written):
        if not name or Path(name).is_absolute() or ".." in Path(name).parts:
            continue  # not a path this module writes: a hand-edited list deletes nothing outside ``out``
        if (out / name).is_file():
            (out / name).unlink()
        for folder in (out / name).parents:
            if folder == out or not folder.is_dir() or any(folder.iterdir()):
                break
            folder.rmdir()
    atomic_write_text(listing, "".join(f"{name}\n" for name in sorted(written)))


def load_run(path: Path, label: str) -> Run:
    """Read a run directory; a missing or unreadable ``metrics.json`` is the user's error."""
    metrics_path = path / "metrics.json"
    if not path.is_dir():
        raise SelfSupError(f"{path} is not a directory; pass run directories written by `selfsup pretrain`")
    if not metrics_path.is_file():
        raise SelfSupError(f"{path} has no metrics.json; pass a finished `selfsup pretrain` run directory")
    try:
        metrics = json.loads(metrics_path.read_text())
    except (OSError, ValueError) as exc:
        raise SelfSupError(f"cannot read {metrics_path} ({exc}); pass a finished run directory") from exc
    if not isinstance(metrics, dict):
        raise SelfSupError(f"{metrics_path} is not a JSON object of metrics; pass another run")
    settings_path = path / "config.yaml"
    settings = settings_path.read_text(errors="replace") if settings_path.is_file() else None
    history = [h for h in metrics.get("knn_history") or [] if isinstance(h, dict)
               and _is_number(h.get("epoch")) and _is_number(h.get("knn_top1"))]
    knn = ([h["epoch"] for h in history], [100 * h["knn_top1"] for h in history])
    probed = [h for h in history if _is_number(h.get("online_top1"))]
    online = ([h["epoch"] for h in probed], [100 * h["online_top1"] for h in probed])
    evaluations = {}
    for file in sorted(path.glob("eval_*.json")):
        try:
            data = json.loads(file.read_text())
            evaluations[file.name] = data if isinstance(data, dict) else {"value": data}
        except (OSError, ValueError) as exc:
            evaluations[file.name] = f"could not read {file.name}: {exc}"
    return Run(path, label, metrics, settings, _loss_curve(path, metrics), knn, online, evaluations,
               sorted(path.glob("*.png")))


def _labels(paths: list[Path]) -> list[str]:
    """Directory names; a repeated name gets its parent's name in front, and then a number behind."""
    names = [p.name for p in paths]
    labels = [p.name if names.count(p.name) == 1 else f"{p.parent.name}/{p.name}" for p in paths]
    return [label if labels.count(label) == 1 else f"{label} #{labels[:i].count(label) + 1}"
            for i, label in enumerate(labels)]


def _loss_curve(path: Path, metrics: dict) -> tuple[list, list]:
    """Training loss from every CSV log version in order (a resumed run continues the steps): per step, or per
    epoch where the steps logged fewer than two points; without logs (they are not committed), the loss per
    epoch that ``metrics.json`` keeps (``loss_history``, at each epoch's last step)."""
    columns = {"loss_step": {}, "loss": {}, "loss_epoch": {}}
    for log in sorted(path.glob("logs/csv/version_*/metrics.csv"), key=lambda p: (len(p.parent.name), p.parent.name)):
        try:
            with log.open(newline="") as f:
                for row in csv.DictReader(f):
                    for column, points in columns.items():
                        if row.get(column) and row.get("step"):
                            points[int(float(row["step"]))] = float(row[column])
        except (OSError, ValueError, csv.Error):
            continue  # an unreadable log loses its curve, not the report
    points = max(columns.values(), key=lambda p: min(len(p), 2))  # the first with two points, else with one
    if not points:
        points = {h["step"]: h["loss"] for h in metrics.get("loss_history") or []
                  if isinstance(h, dict) and _is_number(h.get("step")) and _is_number(h.get("loss"))}
    steps = sorted(points)
    return steps, [points[s] for s in steps]


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fmt(name: str, value) -> str:
    """Fractions named ``*top1`` or inside ``*linear_layers`` as percentages, floats with 4 significant digits."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        percent = (name.endswith("top1") or "linear_layers" in name) and 0 <= value <= 1
        return f"{100 * value:.2f}%" if percent else f"{value:.4g}"
    if isinstance(value, (str, int)):
        return str(value)
    if isinstance(value, list) and all(v is None or isinstance(v, (str, int, float)) for v in value):
        return ", ".join(_fmt(name, v) for v in value) or "[]"
    return json.dumps(value, default=str)


def _records(title: str, records: list[dict]) -> Table:
    """One row per dict, one column per key any of them has."""
    columns = list(dict.fromkeys(k for record in records for k in record))
    return Table(title, columns, [[_fmt(f"{title}: {c}", record[c]) if c in record else "" for c in columns]
                                  for record in records])


def _tables(title: str, data: dict) -> list[Table]:
    """A dict as tables: each nested dict or list of dicts in its own, every other value in one key-value table."""
    rows, tables = [], []
    for key, value in data.items():
        name = f"{title}: {key}"
        if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            tables.append(_records(name, [{"": k, **v} for k, v in value.items()]))
        elif isinstance(value, dict) and value:
            tables += _tables(name, value)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            tables.append(_records(name, value))
        else:
            rows.append([str(key), _fmt(name, value)])
    return ([Table(title, ["key", "value"], rows)] if rows else []) + tables


def _curves(runs: list[Run], out: Path, folder: str) -> list:
    """The loss and kNN plots of ``runs`` (overlaid when several) in ``out/folder``, or a note for each missing one."""
    (out / folder).mkdir(parents=True, exist_ok=True)
    blocks = []
    accuracy = {run.label: run.knn for run in runs} | {f"{run.label} (online probe)": run.online for run in runs}
    for name, lines, xlabel, ylabel, caption, missing in [
            ("loss", {run.label: run.loss for run in runs}, "step", "training loss", "training loss per step",
             "no loss log (logs/csv/version_*/metrics.csv)"),
            ("knn", accuracy, "epoch", "top-1 (%)", "kNN top-1 per epoch (monitor), and the online probe's where trained",
             "no kNN history in metrics.json")]:
        src = f"{folder}/{name}.png"
        if curve_plot(out / src, {"": lines}, xlabel, ylabel):
            blocks.append(Image(src, caption))
        elif src in _earlier_files(out) and (out / src).is_file():  # its data (logs) is not on this machine
            blocks.append(Image(src, f"{caption} (kept from an earlier report into this folder: {missing})"))
        else:
            blocks.append(Text(missing))
    return blocks


def _run_section(run: Run, out: Path, folder: str) -> Section:
    """Headline metrics, plots, metrics.json's other values, evaluations, images and settings of one run."""
    headline = Table("headline metrics", ["metric", "value"],
                     [[label, _fmt(key, run.metrics[key])] for key, label in HEADLINE.items() if key in run.metrics])
    rest = {k: v for k, v in run.metrics.items() if k not in HEADLINE}
    blocks = [Text(f"run directory: {run.path}"), headline, *_curves([run], out, folder), *_tables("metrics.json", rest)]
    for name, data in run.evaluations.items():
        blocks += [Text(data)] if isinstance(data, str) else _tables(name, data)
    for image in run.images:
        src = f"{folder}/images/{image.name}"
        (out / src).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(image, out / src)
        blocks.append(Image(src, image.name))
    blocks.append(Settings(run.settings) if run.settings is not None else Text("no config.yaml in the run directory"))
    return Section(run.label, blocks)


def _sections(runs: list[Run], out: Path) -> list[Section]:
    """A comparison of several runs, then one section per run; writes their plots and images into ``out``."""
    sections = []
    if len(runs) > 1:
        keys = [k for k in HEADLINE if any(k in run.metrics for run in runs)]
        table = Table("headline metrics", ["run"] + [HEADLINE[k] for k in keys],
                      [[run.label] + [_fmt(k, run.metrics.get(k)) if k in run.metrics else "" for k in keys]
                       for run in runs])
        sections.append(Section("comparison", [table, *_curves(runs, out, "comparison")]))
    folders: list[str] = []
    for run in runs:  # a folder per run named as the run, so that adding a run renames no other's
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", run.label).strip("-.") or "run"
        name, n = slug, 1
        while name in folders:  # two labels that slug alike: the later ones numbered
            n += 1
            name = f"{slug}-{n}"
        folders.append(name)
        sections.append(_run_section(run, out, f"runs/{name}"))
    return sections


def _html(title: str, sections: list[Section]) -> str:
    body = [f"<section>\n<h2>{escape(s.title)}</h2>\n" + "\n".join(b.html() for b in s.blocks) + "\n</section>"
            for s in sections]
    return "\n".join(['<!DOCTYPE html>', '<html lang="en">', '<head>', '<meta charset="utf-8">',
                      f"<title>{escape(title)}</title>", f"<style>\n{STYLE}\n</style>", "</head>", "<body>",
                      f"<h1>{escape(title)}</h1>", *body, IMAGE_CHECK, "</body>", "</html>"]) + "\n"


def _markdown(title: str, sections: list[Section]) -> str:
    parts = [f"# {_md(title)}"]
    for section in sections:
        parts += [f"## {_md(section.title)}", *(block.markdown() for block in section.blocks)]
    return "\n\n".join(parts) + "\n"

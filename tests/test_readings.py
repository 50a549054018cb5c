"""Numbers that cannot drift: every result figure quoted in the prose readings is a committed result.

The prose readings are README.md, benchmarks/README.md, benchmarks/tuning-*.md, docs/*.md and
the notes under each generated suite table (benchmarks/SUITE/*.md, scoped to that suite's results).
The committed results are the files git tracks under benchmarks/<suite>/ (as they stand in the
working tree): every *.csv and *.json (runs/*/metrics.json, eval_*.json, baselines, throughput
results) and the table rows of the generated *.md tables there (their notes are prose and back
nothing). benchmarks/README.md and the tuning notes are prose, not results.

What counts as a result figure in the prose (everything else is a setting or a label):
- a decimal (0.8096, 80.08%, 13.5, +3.3, −1.6, 1.70×, 1.45 times), unless it is a setting: the
  value of a hyperparameter named just before it (lr 0.15, τ 0.2, λ = 0.9 and 3, EMA 0.999,
  `--flag 0.1`, `key` (0.5) — a link whose text is code names a file, not a key —, a coefficient such as 0.9·x), a version (PyTorch 2.14), a date
  or a time of day;
- an integer with a unit of time, speed, share or effect size: 957 s, 22 ms, 369 images/s,
  10 minutes, 2 hours, 88%, 12 points (a list or range shares the unit of its last member: "957, 301
  and 103 s", "63–86%"); an integer with thousands separators (10,738).
Not figures: plain integers (epochs, batch sizes, k = 200, years, section and issue numbers,
counts), integer multiples ("4× the width", "300 times"), shares that are settings ("1% of the
labels", "the first 70% of the series"), and bounds ("within 3 points"): a bound is a claim
about several figures, which the figures quoted beside it must bear out. Fenced code blocks
tagged with a language (```bash, ```python, ...) and indented code blocks show commands and
configurations and are skipped; an untagged or ```text block is quoted program output and is
checked like prose.

A figure passes when
(a) it equals a committed number at the precision written: the committed value lies within half
    a unit of the figure's last digit (0.7483 backs 0.748). Points and percentages are
    fractions times 100 (0.7483 backs 74.8% and "74.83 points"); a signed figure or one with
    one or two decimals may be either (+13.5, 5.6, 0.89); a value written to three or more
    decimals stands as written. Signs are not compared: prose writes a fall as "−1.6" or as
    "loses 1.6".
(b) it is the difference (in points for fractions) or, written N× or "N times", the ratio of two
    figures of the same paragraph (a list item, a table row or a block of prose) that pass
    (a), consistent at the precision of all three: the intervals the written digits allow
    overlap. A value written to three decimals (0.810) is a value, never a difference.
(c) it is on EXTERNAL below: a figure quoted from a paper or a peer's published table, with the
    reason. Our own results are never listed there.

Scope. A comment `<!-- results: ITEM ... -->` limits the figures after it (to the next such
comment) to the committed results under those items of benchmarks/: a suite folder, a file, or
a glob (`fmnist-quick/runs/*/eval_*.json`). `<!-- results: -->` lifts the limit. Before the first
such comment a figure may come from any committed result. A scope that holds no committed
result backs nothing, so a reading that points at results still to be committed (the README's
quickstart output, benchmarks/quickstart/) fails once it quotes a figure, until they are.

Logbooks. In a tuning note (benchmarks/tuning-*.md), a table of one-off tuning runs that no
suite folder keeps is the record of those runs when a `<!-- logbook -->` comment stands right
above it: its cells are not checked, and they back the figures of the same note only. Any other
reading that wants such a number points to the note instead of quoting it.

The rule is only as strong as the committed numbers are sparse: within a suite's results a
made-up three-decimal accuracy finds some committed number at that precision about half the
time, so the readings quote the figures a difference is taken from, and each reading names the
narrowest scope that holds its figures.
"""
from __future__ import annotations

import bisect
import fnmatch
import json
import math
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROSE_GLOBS = ("README.md", "benchmarks/README.md", "benchmarks/tuning-*.md", "docs/*.md")


# (c) Figures quoted from papers or peers' published tables: (file, a phrase of the paragraph that
# holds the figure, the figure as written, why it is not ours). Keep this short.
EXTERNAL = [
    *[("benchmarks/README.md", "USB's classic CIFAR-10 table", figure,
       f"USB's classic CV results (results/classic_cv.csv of microsoft/Semi-supervised-learning): {name}'s "
       "CIFAR-10 error at 40 labels, % (quoted in the issue-32 reading)")
      for figure, name in (("4.97", "FreeMatch"), ("5.06", "SoftMatch"), ("5.21", "FlexMatch"), ("8.01", "UDA"),
                           ("8.33", "FixMatch"), ("14.50", "ReMixMatch"), ("70.67", "MixMatch"),
                           ("76.29", "Pseudo-Label"), ("76.93", "Mean Teacher"), ("77.58", "supervised-only"))],
    *[("benchmarks/README.md", "USB's classic CIFAR-10 table at 250 labels", figure,
       f"USB's classic CV results (results/classic_cv.csv of microsoft/Semi-supervised-learning): {name}'s "
       "CIFAR-10 error at 250 labels, % (quoted in the issue-32 reading at 25 labels per class)")
      for figure, name in (("5.0", "FlexMatch"), ("4.97", "FixMatch"), ("55.96", "supervised-only"),
                           ("4.84", "SoftMatch"), ("4.85", "FreeMatch"), ("5.12", "UDA"),
                           ("56.06", "Mean Teacher"), ("37.28", "MixMatch"), ("9.21", "ReMixMatch"))],
    *[("benchmarks/README.md", "lightly's CIFAR-10 table at 200 epochs", figure,
       f"lightly's CIFAR-10 benchmark (ResNet-18, 200 epochs): {name}'s kNN (quoted in issue 33)")
      for figure, name in (("0.869", "BYOL"), ("0.847", "SimCLR"), ("0.838", "MoCo"))],
    *[("benchmarks/README.md", "its ImageNet table at 100 epochs", figure,
       f"lightly's ImageNet-1k benchmark (docs.lightly.ai, getting_started/benchmarks; ResNet-50, batch 256, "
       f"100 epochs): {name}'s kNN top-1, %")
      for figure, name in (("46.0", "BYOL"), ("44.8", "SimCLR*"), ("41.8", "MoCoV2"))],
    *[("benchmarks/README.md", "stable-pretraining's Imagenette", figure,
       f"stable-pretraining's Imagenette ViT-S/16 200-epoch table: {name}'s kNN (quoted in issue 31)")
      for figure, name in (("85.4", "LeJEPA"), ("83.8", "DINO"), ("72.1", "MAE"), ("33.2", "I-JEPA"))],
    ("benchmarks/ablations/ablations.md", "BYOL (Grill et al. 2020", "1.4%",
     "BYOL paper (Table 5b): linear accuracy of a random network on ImageNet (the suite's paper note)"),
    ("benchmarks/ablations/ablations.md", "BYOL (Grill et al. 2020", "18.8%",
     "BYOL paper (Table 5b): a frozen random target's linear accuracy on ImageNet (the suite's paper note)"),
    ("benchmarks/ablations/ablations.md", "CPC (van den Oord et al. 2018", "28.5",
     "CPC paper (Table 2): phone accuracy predicting 2 steps ahead (the suite's paper note)"),
    ("benchmarks/README.md", "unlike ImageNet", "1.4%",
     "BYOL paper (Grill et al. 2020, Table 5b): linear accuracy of a random network on ImageNet"),
    ("benchmarks/README.md", "unlike ImageNet", "18.8%",
     "BYOL paper (Grill et al. 2020, Table 5b): learning from a frozen random target on ImageNet"),
    ("benchmarks/series-ssl/series-ssl_summary.md", "Published averages", "0.836",
     "TimesURL paper's table: TS2Vec's mean accuracy on 128 UCR problems (quoted in issue 34)"),
    ("benchmarks/series-ssl/series-ssl_summary.md", "Published averages", "0.806",
     "TimesURL paper's table: T-Loss's mean accuracy on 128 UCR problems (quoted in issue 34)"),
    ("benchmarks/series-ssl/series-ssl_summary.md", "Published averages", "0.757",
     "TimesURL paper's table: TS-TCC's mean accuracy on 128 UCR problems (quoted in issue 34)"),
    ("benchmarks/series-ssl/series-ssl_summary.md", "Published averages", "0.821",
     "MiniRocket's mean accuracy on 106 UCR problems, as issue 34 cites it"),
    ("benchmarks/tuning-series-ssl.md", "issue 34 quotes", "0.757",
     "TimesURL paper's table: TS-TCC's mean accuracy on 128 UCR problems (quoted in issue 34)"),
    ("benchmarks/tuning-series-ssl.md", "issue 34 quotes", "0.806",
     "TimesURL paper's table: T-Loss's mean accuracy on 128 UCR problems (quoted in issue 34)"),
    ("benchmarks/tuning-series-ssl.md", "issue 34 quotes", "0.836",
     "TimesURL paper's table: TS2Vec's mean accuracy on 128 UCR problems (quoted in issue 34)"),
    ("README.md", "its PyTorch ports report", "6 hours",
     "FixMatch's PyTorch ports: the CIFAR-10 protocol's time on one A100 (the README quotes it; no GPU here)"),
    ("README.md", "its PyTorch ports report", "4 days",
     "FixMatch's PyTorch ports: the same protocol on one 2080 Ti or M40"),
    ("benchmarks/README.md", "more clusters help", "10,000",
     "DeepCluster paper (Caron et al. 2018): its ImageNet cluster count, a setting of theirs"),
]


# --------------------------------------------------------------------------------------------
# committed results

_RESULT_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w.])")


def _json_numbers(value, out):
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, (int, float)):
        if math.isfinite(value):
            out.append(abs(float(value)))
    elif isinstance(value, dict):
        for v in value.values():
            _json_numbers(v, out)
    elif isinstance(value, list):
        for v in value:
            _json_numbers(v, out)


def result_numbers(path: str, text: str) -> list[float]:
    """The numbers a committed result file holds (absolute values)."""
    out: list[float] = []
    if path.endswith(".json"):
        _json_numbers(json.loads(text), out)
        return out
    if path.endswith(".md"):
        text = "\n".join(line for line in text.splitlines() if line.lstrip().startswith("|"))
    for m in _RESULT_NUMBER.finditer(text):
        out.append(abs(float(m.group())))
    return out


def is_result_file(path: str) -> bool:
    parts = path.split("/")
    if parts[0] != "benchmarks" or len(parts) < 3:
        return False  # benchmarks/README.md and the tuning notes are prose
    return path.endswith((".csv", ".json", ".md"))


def committed_result_files() -> list[str]:
    try:
        listed = subprocess.run(["git", "ls-files", "--", "benchmarks"], cwd=ROOT, check=True,
                                capture_output=True, text=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the committed results cannot be listed")
    return [p for p in listed if is_result_file(p) and (ROOT / p).is_file()]


class Pool:
    """Committed numbers by file, searched by value."""

    def __init__(self, files: dict[str, list[float]]):
        self.files = files
        self._cache: dict[tuple, list[float]] = {}

    def values(self, scope: tuple[str, ...] | None) -> list[float]:
        if scope not in self._cache:
            values = [v for path, numbers in self.files.items() if _in_scope(path, scope)
                      for v in numbers]
            self._cache[scope] = sorted(values)
        return self._cache[scope]

    def holds(self, lo: float, hi: float, scope) -> bool:
        values = self.values(scope)
        i = bisect.bisect_left(values, lo)
        return i < len(values) and values[i] <= hi


def _in_scope(path: str, scope: tuple[str, ...] | None) -> bool:
    if scope is None:
        return True
    rel = path[len("benchmarks/"):]
    for item in scope:
        if any(ch in item for ch in "*?["):
            if fnmatch.fnmatch(rel, item):
                return True
        elif rel == item or rel.startswith(item.rstrip("/") + "/"):
            return True
    return False


def committed_pool() -> Pool:
    files = {}
    for path in committed_result_files():
        files[path] = result_numbers(path, (ROOT / path).read_text(encoding="utf-8"))
    return Pool(files)


# --------------------------------------------------------------------------------------------
# figures in the prose

@dataclass
class Figure:
    text: str            # as written, with sign and unit
    value: float         # magnitude; percentages as written (88% -> 88)
    half_unit: float     # half a unit of the last written digit
    unit: str            # '', '%', 'x', 'points', 'time', 'speed'
    line: int


@dataclass
class Paragraph:
    path: str
    line: int
    text: str                         # cleaned: code spans, links and comments resolved
    lines: list[tuple[int, str]]      # (line number, cleaned text) for locating figures
    scope: tuple[str, ...] | None
    figures: list[Figure] = field(default_factory=list)


_NUMBER = re.compile(
    r"(?<![\w.^/,\[])(?<![^\W\d_]-)(?P<int>\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?P<frac>\.\d+)?(?![\w^]|[.,]\d)")
_UNIT = re.compile(
    r"\s*(?P<u>%|×(?!\s?\d)|(?:\s(?:points?|ms|s|seconds?|minutes?|min|hours?|h|days?|images/s|times))(?![\w/]))")
# Words after which a number is a setting: the hyperparameter it sets, a version, a reference.
SETTING_WORDS = {
    "lr", "rate", "rates", "τ", "t", "λ", "λa", "λb", "temperature", "momentum", "ema", "decay",
    "threshold", "scale", "jitter", "p", "m", "margin", "ε", "epsilon", "σ", "code", "pytorch",
    "torch", "version", "table", "figure", "appendix", "section", "issue", "lags", "lag", "season",
    "window", "trials", "width", "k", "clipping", "default", "sgd", "adam", "lars", "coefficient",
    "within",  # a bound, not a figure
}
# "1% and 10% of the labels", "the first 70% of the series": shares that are settings.
_SHARE_SETTING = re.compile(
    r"(?:\s*(?:and|or|,|–|to)\s*\d+%)*\s+of (?:the labels|the series|the steps|ImageNet)")
# Tokens a setting's value list is chained with: "τ 0.1 and 0.2", "λ = 0.05 and 0.0051".
_CHAIN = {"and", "or", ",", "=", "→", "to", "/", "(", ")", "≈", ">", "<", "vs", "·", "+", ";", ":"}
_TOKEN = re.compile(r"--[\w-]+|[^\W\d_][\w'-]*|\d[\d,.]*[%×]?|\S")


def _previous_word(text: str, start: int) -> str:
    """The nearest word before `start` that is not a number or a list connective."""
    tokens = _TOKEN.findall(text[:start])
    for tok in reversed(tokens):
        low = tok.lower()
        if low in _CHAIN or tok[0].isdigit() or tok in "+-−±" or low in {"points", "point", "%"}:
            continue
        return low
    return ""


def _is_setting(text: str, m: re.Match) -> bool:
    after = text[m.end():m.end() + 2]
    if after[:1] in {"·", "^"} or after.startswith(" ·") or after.startswith(" x "):
        return True  # a coefficient or a power in a formula
    word = _previous_word(text, m.start())
    return word in SETTING_WORDS or word.startswith("--")


def figures_in(text: str) -> list[tuple[int, Figure]]:
    """(offset, figure) for every result figure in a cleaned paragraph."""
    found: list[tuple[re.Match, str, str]] = []
    for m in _NUMBER.finditer(text):
        u = _UNIT.match(text, m.end())
        unit = ""
        if u:
            word = u.group("u").strip()
            unit = {"%": "%", "×": "x", "times": "x", "points": "points", "point": "points",
                    "images/s": "speed"}.get(word, "time")
            if unit == "x" and not m.group("frac"):
                unit = ""  # "300 times", "4× the width": counts and settings, not measured ratios
        found.append((m, unit, text[max(0, m.start() - 2):m.start()]))
    # A range or list shares the unit written after its last member: "63–86%", "7 and 9 points".
    for i in range(len(found) - 2, -1, -1):
        m, unit, before = found[i]
        nxt, nxt_unit, _ = found[i + 1]
        between = text[m.end():nxt.start()]
        joined = re.fullmatch(r"\s*(?:–|-|to|and|or)\s*[+\-−]?", between) or (
            # "957, 301 and 103 s": a list of integers, which alone would not be figures
            re.fullmatch(r",\s*", between) and not m.group("frac") and not nxt.group("frac"))
        if not unit and nxt_unit and joined:
            found[i] = (m, nxt_unit, before)
    out = []
    for m, unit, before in found:
        frac = m.group("frac") or ""
        grouped = "," in m.group("int")
        if not (frac or unit or grouped):
            continue  # a plain integer: a setting or a count
        if unit == "%" and not frac and _SHARE_SETTING.match(text, m.end() + 1):
            continue  # a label fraction or a split: a setting
        if not grouped and _is_setting(text, m):
            continue
        sign = ""
        if before and before[-1] in "+-−±" and (len(before) == 1 or before[-2] in " (\n\t["):
            sign = before[-1]
        digits = len(frac) - 1 if frac else 0
        value = float(m.group("int").replace(",", "") + frac)
        u = _UNIT.match(text, m.end())
        written = " ".join((sign + m.group(0) + (u.group("u") if u else "")).split())
        out.append((m.start(), Figure(written, value, 0.5 * 10.0 ** -digits, unit, 0)))
    return out


_FENCE = re.compile(r"^\s*(```+|~~~+)\s*([\w+-]*)")
_COMMENT = re.compile(r"<!--(.*?)-->", re.S)
_CODE_SPAN = re.compile(r"`[^`\n]+`")
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b|\b\d{1,2}:\d{2}\b")
_CODE_LINK = re.compile(r"\[`[^`\n]+`\]\([^)]*\)")  # a link whose text is code: a file named, not a key


def _clean(line: str) -> str:
    line = _CODE_LINK.sub(" LINK ", line)
    line = _CODE_SPAN.sub(" CODE ", line)
    line = _LINK.sub(r"\1", line)
    return _DATE.sub(" DATE ", line)


def paragraphs(path: str, text: str) -> tuple[list[Paragraph], list[str]]:
    """The checked paragraphs of a prose file, and its logbook tables' text."""
    paras: list[Paragraph] = []
    logbooks: list[str] = []
    scope: tuple[str, ...] | None = None
    current: list[tuple[int, str]] = []
    current_scope = scope
    fence: str | None = None          # the fence that opened a code block being skipped
    in_output = False                 # inside an untagged (output) block
    indented_code = False
    logbook_next = False
    in_logbook = False
    blank_before = True

    def flush():
        nonlocal current
        if current:
            joined = "\n".join(t for _, t in current)
            paras.append(Paragraph(path, current[0][0], joined, list(current), current_scope))
            current = []

    # Comments may span lines: lift them out first, keeping line numbers, and keep the
    # `results:` and `logbook` ones by the line they start on.
    comments: dict[int, list[str]] = {}

    def lift(m: re.Match) -> str:
        comments.setdefault(text.count("\n", 0, m.start()) + 1, []).append(m.group(1))
        return "\n" * m.group(0).count("\n")

    lines = _COMMENT.sub(lift, text).splitlines()
    for number, raw in enumerate(lines, 1):
        fm = _FENCE.match(raw)
        if fence is not None:
            if fm and fm.group(1)[0] == fence[0]:
                fence = None
            continue
        if in_output:
            if fm:
                in_output = False
                flush()
                blank_before = True
                continue
            current.append((number, _clean(raw)))
            continue
        if fm:
            flush()
            if fm.group(2) in ("", "text"):
                in_output = True
                current_scope = scope
            else:
                fence = fm.group(1)
            continue
        for comment in comments.get(number, ()):
            words = comment.split()
            if words[:1] == ["results:"]:
                flush()
                scope = tuple(words[1:]) or None   # an empty list: any committed result
            elif words[:1] == ["logbook"] and fnmatch.fnmatch(path, "benchmarks/tuning-*.md"):
                logbook_next = True
        line = raw
        if not line.strip():
            flush()
            blank_before = True
            indented_code = False
            in_logbook = False
            continue
        if (blank_before or indented_code) and raw.startswith("    ") and not current:
            indented_code = True
            continue
        indented_code = False
        if line.lstrip().startswith("|"):
            flush()
            if logbook_next or in_logbook:
                in_logbook = True
                logbook_next = False
                logbooks.append(line)
                blank_before = False
                continue
            if re.fullmatch(r"[|\s:-]+", line.strip()):
                continue
            current_scope = scope
            current.append((number, _clean(line)))
            flush()
            blank_before = False
            continue
        if re.match(r"\s*(?:[-*]|\d+\.)\s", line) or line.lstrip().startswith("#"):
            flush()
        if not current:
            current_scope = scope
        current.append((number, _clean(line)))
        blank_before = False
    flush()
    for para in paras:
        offsets = []
        pos = 0
        for number, t in para.lines:
            offsets.append((pos, number))
            pos += len(t) + 1
        for offset, fig in figures_in(para.text):
            fig.line = max(n for start, n in offsets if start <= offset)
            para.figures.append(fig)
    return paras, logbooks


# --------------------------------------------------------------------------------------------
# the matcher

def _fraction(fig: Figure) -> tuple[float, float]:
    """A figure as a value comparable with its paragraph's others (percent -> fraction)."""
    if fig.unit == "%":
        return fig.value / 100, fig.half_unit / 100
    return fig.value, fig.half_unit


_SLACK = 1e-7


def backed(fig: Figure, pool: Pool, scope, extra: list[float] = ()) -> bool:
    """(a): a committed number within half a unit of the figure, as it stands or times 100."""
    for scale in _scales(fig):
        # float32 results (0.7175 is stored as 0.71749997) get a hair of slack at a half
        lo = (fig.value - fig.half_unit) / scale * (1 - _SLACK) - _SLACK
        hi = (fig.value + fig.half_unit) / scale * (1 + _SLACK) + _SLACK
        if pool.holds(lo, hi, scope) or any(lo <= v <= hi for v in extra):
            return True
    return False


def _scales(fig: Figure) -> tuple[float, ...]:
    """How a figure may relate to fractions: as it stands (1) or in points/percent (100)."""
    if fig.unit in ("%", "points"):
        return (100.0,)
    if fig.unit in ("time", "speed", "x"):
        return (1.0,)
    if fig.text[:1] in "+-−" or fig.half_unit >= 0.005:
        return (1.0, 100.0)      # +3.3, 5.6, 0.89: a gap in points, or a value as it stands
    return (1.0,)                # 0.810: a value as it stands


def _gap_scales(fig: Figure) -> tuple[float, ...]:
    """How a figure may be a difference: a value written to three decimals (0.810) is not one."""
    if fig.unit == "x" or (fig.unit == "" and fig.text[:1] not in "+-−" and fig.half_unit < 0.05):
        return ()
    return _scales(fig)


def derived(fig: Figure, others: list[Figure]) -> bool:
    """(b): a difference or ratio of two other figures of the paragraph, at the written precision."""
    lo, hi = fig.value - fig.half_unit, fig.value + fig.half_unit
    ops = [_fraction(o) for o in others]
    for i, (a, ha) in enumerate(ops):
        for b, hb in ops[i + 1:]:
            d, hd = abs(a - b), ha + hb
            for scale in _gap_scales(fig):
                if (d - hd) * scale <= hi and (d + hd) * scale >= lo:
                    return True
            if fig.unit == "x":
                big, hbig, small, hsmall = (a, ha, b, hb) if a >= b else (b, hb, a, ha)
                if small - hsmall > 0 and (big - hbig) / (small + hsmall) <= hi and \
                        (big + hbig) / (small - hsmall) >= lo:
                    return True
    return False


def external(path: str, para: Paragraph, fig: Figure) -> bool:
    flat = " ".join(para.text.split())
    return any(p == path and phrase in flat and figure == fig.text.lstrip("+-−±")
               for p, phrase, figure, _ in EXTERNAL)


def unbacked(path: str, text: str, pool: Pool) -> list[str]:
    """One message per figure of a prose file that no rule backs."""
    paras, logbooks = paragraphs(path, text)
    logbook = sorted(abs(float(x)) for x in _RESULT_NUMBER.findall("\n".join(logbooks)))
    problems = []
    for para in paras:
        direct = [f for f in para.figures if backed(f, pool, para.scope, logbook)]
        for fig in para.figures:
            if fig in direct or external(path, para, fig):
                continue
            if derived(fig, [o for o in direct if o is not fig]):
                continue
            where = "committed result" if para.scope is None else \
                "committed result in benchmarks/{" + ", ".join(para.scope) + "}"
            if para.scope is not None and not pool.values(para.scope):
                where += " (nothing is committed there yet)"
            context = " ".join(next(t for n, t in para.lines if n == fig.line).split())
            problems.append(f"{path}:{fig.line}: {fig.text!r} is in no {where}, and no difference "
                            f"or ratio of two backed figures of its paragraph: {context}")
    return problems


def prose_files() -> list[Path]:
    found = []
    for pattern in PROSE_GLOBS:
        found.extend(sorted(ROOT.glob(pattern)))
    return found


# --------------------------------------------------------------------------------------------
# tests

def test_every_figure_in_the_readings_is_a_committed_result():
    pool = committed_pool()
    problems = []
    for path in prose_files():
        rel = path.relative_to(ROOT).as_posix()
        problems += unbacked(rel, path.read_text(encoding="utf-8"), pool)
    assert not problems, (f"{len(problems)} figure(s) in the readings are not committed results "
                          "(see tests/test_readings.py for the rule):\n" + "\n".join(problems))


def test_external_figures_are_still_quoted():
    """An allowlist entry whose figure left the readings is removed, not kept 'just in case'."""
    texts = {**{p.relative_to(ROOT).as_posix(): p.read_text(encoding="utf-8") for p in prose_files()}, **suite_notes()}
    for path, phrase, figure, reason in EXTERNAL:
        assert reason
        paras = paragraphs(path, texts[path])[0]
        assert any(phrase in " ".join(p.text.split()) and
                   any(f.text.lstrip("+-−±") == figure for f in p.figures) for p in paras), \
            (path, phrase, figure)


# The matcher itself, on made-up readings against a made-up pool, so the check cannot pass
# everything silently.

_POOL = Pool({"benchmarks/demo/demo.csv": [0.7483, 0.6917, 0.5570, 957.0, 301.0, 0.8008],
              "benchmarks/other/other.csv": [0.123]})


def _check(text: str, scope_comment: str = "", path: str = "demo.md") -> list[str]:
    return unbacked(path, scope_comment + text + "\n", _POOL)


def test_matcher_rejects_a_made_up_number():
    assert len(_check("SimCLR reaches 0.777 on the test split.\n")) == 1
    assert len(_check("It took 958 s.\n")) == 1


def test_matcher_accepts_a_committed_number_rounded_as_written():
    assert _check("SimCLR reaches 0.748, that is 74.8% or 74.83 points; the run took 957 s.\n") == []
    assert _check("The quickstart printed 80.08%.\n") == []


def test_matcher_accepts_differences_and_ratios_of_backed_figures_of_one_paragraph():
    assert _check("FixMatch 0.692 against 0.557: +13.5 points.\n") == []
    assert _check("Equal compute: 957 s against 301 s, 3.18× the time.\n") == []


def test_matcher_rejects_a_wrong_difference_or_one_across_paragraphs():
    assert len(_check("FixMatch 0.692 against 0.557: +14.0 points.\n")) == 1
    assert len(_check("FixMatch scores 0.692.\n\nSupervised-only 0.557, 13.5 points below.\n")) == 1
    assert len(_check("Equal compute: 957 s against 301 s, 3.3× the time.\n")) == 1


def test_matcher_reads_units_across_lists_and_keeps_values_apart_from_gaps():
    assert _check("Equal compute took 957 and 301 s.\n") == []
    assert len(_check("Equal compute took 956 and 301 s.\n")) == 1     # 956 is a time too
    assert len(_check("FixMatch 0.692 against 0.557, a gap of 0.135.\n")) == 1   # a value, not a gap
    assert _check("The rows lie within 3 points of each other (0.692 and 0.557).\n") == []  # a bound


def test_matcher_skips_settings_and_code_but_checks_output_blocks():
    settings = ("SimCLR with lr 0.15, τ 0.2 and 0.5, EMA 0.999, `--set x=0.3` and `y` (0.7), "
                "5 epochs of batch 256, k = 200, on 1% and 10% of the labels, 4× the width, "
                "at 09:40 on 2026-11-25 (issue 27).\n\n"
                "```bash\nselfsup pretrain --set optimizer.lr=0.123\n```\n")
    assert _check(settings) == []
    assert len(_check("```\nkNN top-1: 0.777\n```\n")) == 1
    assert len(_check("```text\nkNN top-1: 0.777\n```\n")) == 1
    # a link whose text is code names a file, not a setting: the figure after it is checked
    assert len(_check("Measured ([`times.csv`](benchmarks/times.csv)): 958 s.\n")) == 1


def test_matcher_keeps_to_the_scope_a_comment_names():
    assert len(_check("Other suite: 0.123.\n", "<!-- results: demo -->\n")) == 1
    assert _check("Other suite: 0.123.\n", "<!-- results: demo other -->\n") == []
    assert len(_check("Nothing committed yet: 0.748.\n", "<!-- results: quickstart -->\n")) == 1
    assert _check("Any again: 0.123.\n", "<!-- results:\n     demo -->\n"
                  "Demo: 0.748.\n\n<!-- results: -->\n") == []


def test_matcher_reads_logbook_tables_as_a_tuning_note_s_own_records():
    logbook = "<!-- logbook -->\n| run | kNN |\n|---|---|\n| A | 0.612 |\n\nRun A read 0.612.\n"
    assert _check(logbook, path="benchmarks/tuning-demo.md") == []
    assert len(_check("| run | kNN |\n|---|---|\n| A | 0.612 |\n", path="benchmarks/tuning-demo.md")) == 1
    assert len(_check(logbook, path="benchmarks/README.md")) == 2   # only tuning notes keep logbooks


def suite_notes() -> dict[str, str]:
    """The notes under each generated suite table (benchmarks/SUITE/*.md, git-tracked), each
    scoped to its own suite's committed results: a note computed from the numbers must quote
    numbers that are in them."""
    notes = {}
    for path in sorted(ROOT.glob("benchmarks/*/*.md")):
        suite = path.parent.name
        lines = path.read_text(encoding="utf-8").splitlines()
        below = [line for line in lines if line.startswith("- ")]
        if below and any(line.startswith("|") for line in lines):
            notes[path.relative_to(ROOT).as_posix()] = f"<!-- results: {suite} -->\n" + "\n\n".join(below) + "\n"
    return notes


def test_every_figure_in_the_suites_notes_is_a_committed_result():
    pool = committed_pool()
    notes = suite_notes()
    assert len(notes) >= 8
    problems = [problem for rel, text in notes.items() for problem in unbacked(rel, text, pool)]
    assert not problems, f"{len(problems)} figure(s) in the suites' notes are not committed results:\n" + "\n".join(
        problems)

"""``selfsup report``: an HTML page and a markdown twin from run directories; bad runs write nothing."""
import json
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from matplotlib.image import imsave

from support import TINY
from selfsup.cli import main

ODD_LABEL = "<i>run &1"  # must come out escaped in the HTML


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A real 2-epoch run, and a copy of it under the same directory name with evaluations, images and
    another kNN value."""
    root = tmp_path_factory.mktemp("runs")
    first = root / "a" / "run"
    assert main(["pretrain", "--method", "simclr", "--epochs", "2", "--out", str(first), *TINY,
                 "--set", "data.synthetic_size=128", "--set", "trainer.log_every_n_steps=1"]) == 0
    second = root / "b" / "run"
    shutil.copytree(first, second)
    metrics = json.loads((second / "metrics.json").read_text())
    metrics.update(knn_top1=0.8125, linear_layers={"conv1": 0.5, "conv5": 0.75}, unknown_thing={"x": [1, {"y": 2}]})
    (second / "metrics.json").write_text(json.dumps(metrics))
    (second / "eval_linear.json").write_text(json.dumps(
        {"protocol": "linear", "top1": 0.6, "layers": {"conv1": {"test_top1": 0.31, "train_top1": 0.4}},
         "baselines": {"random_init": 0.2}, "curve": [0.1, 0.2]}))
    (second / "eval_retrieval.json").write_text(json.dumps({"precision_at_k": {"1": 0.7, "5": 0.65}, "mAP": 0.42}))
    (second / "eval_broken.json").write_text("{not json")
    imsave(second / "retrieval.png", np.zeros((8, 8, 3)))
    imsave(second / "embedding tsne & more.png", np.ones((8, 8, 3)))
    odd = root / ODD_LABEL
    odd.mkdir()
    (odd / "metrics.json").write_text(json.dumps({"method": "hand-made", "knn_top1": 0.25, "knn_history": "garbage",
                                                  "epoch_history": [{"epoch": 0, "nmi": 0.5}, {"epoch": 1}]}))
    return first, second, odd


def run_report(capsys, *argv) -> tuple[int, str]:
    code = main(["report", *map(str, argv)])
    return code, capsys.readouterr().err


def image_sources(out: Path) -> list[str]:
    html = (out / "index.html").read_text()
    markdown = (out / "report.md").read_text()
    return re.findall(r'<img src="([^"]+)"', html) + re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)


def test_report_of_several_runs(capsys, runs, tmp_path):
    out = tmp_path / "report"
    code, err = run_report(capsys, *runs, "--out", out)
    assert code == 0, err
    html, markdown = (out / "index.html").read_text(), (out / "report.md").read_text()
    knn = f"{100 * json.loads((runs[0] / 'metrics.json').read_text())['knn_top1']:.2f}%"
    assert "<h2>a/run</h2>" in html and "<h2>b/run</h2>" in html  # same names told apart by their parents
    assert "## a/run\n" in markdown and "## b/run\n" in markdown
    for text in (html, markdown):
        assert knn in text and "81.25%" in text and "25.00%" in text
        assert "comparison" in text and "eval_linear.json" in text and "conv5" in text and "0.42" in text
        assert "could not read eval_broken.json" in text and "method: simclr" in text
        assert "75.00%" in text  # linear_layers: top-1 fractions
    assert '[1, {"y": 2}]' in markdown  # an unknown structure is shown as JSON, not dropped
    assert "&lt;i&gt;run &amp;1" in html and ODD_LABEL not in html
    assert "\\<i\\>run &1" in markdown and ODD_LABEL not in markdown  # no raw HTML tag in the markdown either
    assert "no loss log" in html and "no config.yaml" in html
    sources = image_sources(out)
    # comparison and each real run: loss + kNN; the odd run has neither; the copy's two images, in both files
    assert len(sources) == 2 * (2 + 2 + 2 + 2)
    for src in sources:
        assert (out / unquote(src)).is_file(), src
    assert sum(src.endswith("retrieval.png") for src in sources) == 2


def test_one_run_and_overwriting_an_existing_report(capsys, runs, tmp_path, monkeypatch):
    out = tmp_path / "report"
    assert run_report(capsys, runs[1], runs[0], "--out", out)[0] == 0
    (out / "runs" / "notes.txt").write_text("the user's")  # beside the report's files: must survive
    (tmp_path / "outside.png").write_text("the user's")  # named in a hand-edited list: must survive too
    with (out / ".selfsup-report-files").open("a") as listing:
        listing.write(f"../outside.png\n{tmp_path / 'outside.png'}\n")
    monkeypatch.chdir(runs[0].parents[1])
    code, err = run_report(capsys, Path("a/run"), "--out", out)
    assert code == 0, err
    html = (out / "index.html").read_text()
    assert "comparison" not in html and "b/run" not in html and "<h2>run</h2>" in html
    assert "run directory: a/run<" in html  # as given: a committed page names no machine's folders
    for src in image_sources(out):
        assert (out / unquote(src)).is_file(), src
    # the first report's plots and images that this one does not show are gone, with their emptied folders
    images = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert images == sorted({unquote(src) for src in image_sources(out)}) == ["runs/run/knn.png", "runs/run/loss.png"]
    assert sorted(p.name for p in out.iterdir()) == [".selfsup-report-files", "index.html", "report.md", "runs"]
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["notes.txt", "run"]
    assert (tmp_path / "outside.png").is_file()


def test_a_committed_run_without_logs_keeps_its_loss_curve_and_its_folder(capsys, runs, tmp_path):
    """Logs are not committed: the loss per epoch in metrics.json draws the curve instead; folders are
    named by run, so a run added to the report renames no other run's folder."""
    bare = tmp_path / "x" / "run"
    shutil.copytree(runs[0], bare, ignore=shutil.ignore_patterns("logs", "checkpoints"))
    history = json.loads((bare / "metrics.json").read_text())["loss_history"]
    assert [h["epoch"] for h in history] == [0, 1] and history[0]["step"] < history[1]["step"]
    other, twin = tmp_path / "y" / "run", tmp_path / "x-run"  # labels x/run, y/run and x-run: two slug to x-run
    shutil.copytree(bare, other)
    shutil.copytree(bare, twin)
    out = tmp_path / "report"
    code, err = run_report(capsys, bare, other, twin, "--out", out)
    assert code == 0, err
    assert "no loss log" not in (out / "index.html").read_text()
    folders = ["x-run", "x-run-2", "y-run"]
    assert sorted(p.name for p in (out / "runs").iterdir()) == folders
    assert all((out / "runs" / name / "loss.png").is_file() for name in folders)
    code, err = run_report(capsys, runs[0], bare, other, twin, "--out", out)
    assert code == 0, err
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["a-run", *folders]


def test_a_plot_whose_data_is_gone_is_kept_from_the_earlier_report(capsys, runs, tmp_path):
    """An old run's logs were on the machine that made it; without them, and with no loss per epoch in its
    metrics.json, a report into the same folder keeps the loss plot the earlier one drew, and says so."""
    run = tmp_path / "old" / "run"
    shutil.copytree(runs[0], run)
    out = tmp_path / "report"
    assert run_report(capsys, run, "--out", out)[0] == 0
    drawn = (out / "runs" / "run" / "loss.png").read_bytes()
    shutil.rmtree(run / "logs")
    metrics = json.loads((run / "metrics.json").read_text())
    del metrics["loss_history"]
    (run / "metrics.json").write_text(json.dumps(metrics))
    assert run_report(capsys, run, "--out", out)[0] == 0
    html = (out / "index.html").read_text()
    assert (out / "runs" / "run" / "loss.png").read_bytes() == drawn and "runs/run/loss.png" in image_sources(out)
    assert "kept from an earlier report into this folder" in html
    fresh = tmp_path / "fresh"  # a folder with no earlier report: nothing to keep
    assert run_report(capsys, run, "--out", fresh)[0] == 0
    assert "no loss log" in (fresh / "index.html").read_text() and not (fresh / "runs" / "run" / "loss.png").exists()


@pytest.mark.browser
def test_images_load_in_a_headless_browser(capsys, runs, tmp_path):
    browser = next(filter(None, map(shutil.which, ["chromium", "chromium-browser", "google-chrome"])), None)
    if browser is None:
        pytest.skip("chromium not installed: apt-get install -y chromium")
    out = tmp_path / "report"
    assert run_report(capsys, *runs, "--out", out)[0] == 0
    dom = subprocess.run([browser, "--headless", "--disable-gpu", "--no-sandbox", "--virtual-time-budget=5000",
                          "--dump-dom", (out / "index.html").as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    found = re.search(r'<div id="image-check"[^>]*>(\d+)/(\d+)</div>', dom)
    assert found, dom[-2000:]
    assert found.group(1) == found.group(2) == str(len(image_sources(out)) // 2)


@pytest.mark.parametrize("problem", ["absent", "not a directory", "no metrics.json", "invalid json", "json list"])
def test_bad_run_exits_2_and_writes_nothing(capsys, runs, tmp_path, problem):
    bad = tmp_path / "bad"
    if problem == "not a directory":
        bad.write_text("x")
    elif problem != "absent":
        bad.mkdir()
        contents = {"no metrics.json": None, "invalid json": "{oops", "json list": "[1, 2]"}[problem]
        if contents is not None:
            (bad / "metrics.json").write_text(contents)
    out = tmp_path / "report"
    code, err = run_report(capsys, runs[0], bad, "--out", out)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("selfsup: error:") and str(bad) in err, err
    assert not out.exists()


def test_out_that_is_a_file_is_refused(capsys, runs, tmp_path):
    out = tmp_path / "report"
    out.write_text("keep me")
    code, err = run_report(capsys, runs[0], "--out", out)
    assert code == 2 and "is a file" in err and str(out) in err
    assert out.read_text() == "keep me"


def test_curve_plot_draws_only_non_empty_curves_in_the_colour_of_their_place(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from selfsup.plots import curve_plot

    assert not curve_plot(tmp_path / "none.png", {"": {"a": ([], [])}}, "x", "y")
    assert not (tmp_path / "none.png").exists()
    drawn = []
    savefig = Figure.savefig

    def record(fig, *args, **kwargs):
        drawn.extend((line.get_label(), line.get_color()) for ax in fig.axes for line in ax.get_lines())
        return savefig(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", record)
    assert curve_plot(tmp_path / "two.png", {"": {"a": ([], []), "b": ([1, 2], [3, 4])}}, "x", "y",
                      baselines={"floor": 2.0, "missing": None})
    assert drawn == [(" b", "C1"), ("floor", "0.4")] and (tmp_path / "two.png").stat().st_size > 0


def test_curve_plot_on_a_log_x_axis_ticks_the_curves_x_values(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from selfsup.plots import curve_plot

    axes = []
    savefig = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: axes.extend(fig.axes) or savefig(fig, *a, **k))
    assert curve_plot(tmp_path / "log.png", {"": {"a": ([1, 4, 25], [0.3, 0.6, 0.8]), "b": ([4, 100], [0.5, 0.9])}},
                      "labels", "top-1", log_x=True)
    assert axes[0].get_xscale() == "log" and list(axes[0].get_xticks()) == [1, 4, 25, 100]
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["1", "4", "25", "100"]

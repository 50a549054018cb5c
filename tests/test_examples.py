"""The scripts in examples/ run as a user runs them (a fresh Python, the working directory
elsewhere) on the synthetic images, and do what they say."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, *args: str, cwd: Path) -> str:
    result = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True, cwd=cwd,
                            timeout=600, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


def test_own_loop_trains_the_backbone_beyond_its_start(tmp_path):
    out = run_example("own_loop.py", "--dataset", "synthetic", "--steps", "20", "--batch-size", "128", cwd=tmp_path)
    before, after = (float(x) for x in re.findall(r"kNN top-1 (?:before|after) training: ([0-9.]+)", out))
    assert after > before + 0.1, out


@pytest.mark.slow  # about a minute on one core
def test_pretrain_export_finetune_then_evaluate_the_run(tmp_path):
    out = run_example("pretrain_export_finetune.py", "--out", str(tmp_path / "ex"), "--dataset", "synthetic",
                      "--epochs", "1", "--labelled", "200", cwd=tmp_path)
    assert "model = torchvision.models.resnet18()" in out  # the recipe printed
    assert json.loads((tmp_path / "ex" / "finetune.json").read_text())["test_top1"] > 1 / 6 + 0.05  # six classes
    out = run_example("evaluate_checkpoint.py", str(tmp_path / "ex" / "run"), "--probe-epochs", "5", cwd=tmp_path)
    assert re.search(r"kNN top-1 [0-9.]+ \(standardised pixels", out) and "linear probe top-1" in out
    assert {f"eval_{p}.json" for p in ("knn", "linear", "diagnostics")} <= {p.name for p in (tmp_path / "ex" / "run").iterdir()}

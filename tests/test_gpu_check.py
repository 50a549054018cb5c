"""scripts/gpu-check.sh: a clear exit where no CUDA device exists, and its items run (on the CPU
here) with one line each, so that the script a GPU machine runs is known to work."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_without_cuda_it_says_so_and_exits_0():
    result = subprocess.run(["bash", str(ROOT / "scripts" / "gpu-check.sh")], capture_output=True, text=True,
                            env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"}, timeout=300)
    assert result.returncode == 0 and "no CUDA device here" in result.stdout


@pytest.mark.slow
def test_every_item_runs_on_the_cpu(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--device", "cpu",
                             "--method", "dare", "--method", "mae", "--method", "t-loss", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=1200)
    lines = [line for line in result.stdout.splitlines() if line.startswith(("OK", "FAIL"))]
    assert result.returncode == 0, result.stdout + result.stderr
    assert [line.split()[1] for line in lines] == ["pretrain", "pretrain", "pretrain", "checkpoint,", "evaluate",
                                                    "semisup", "forecast"]
    assert "resumed to epoch 6" in result.stdout and "every item passed" in result.stdout

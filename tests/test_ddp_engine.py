"""The engine under Lightning's DDP with two CPU processes (gloo), through the CLI."""
import json
import os
import subprocess
import sys

import torch

from conftest import TINY


def test_two_process_cpu_ddp_run(tmp_path):
    out = tmp_path / "ddp"
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "selfsup.cli", "pretrain", "--method", "simclr", "--epochs", "2",
                           "--devices", "2", "--accelerator", "cpu", "--batch-size", "32", "--out", str(out), "--baselines"]
                          + [a for a in TINY if a not in ("--batch-size", "64")],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    # 512 images, 32 per rank and step, 2 ranks: 8 steps per epoch, every image seen once per epoch
    checkpoint = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 16
    assert metrics["knn_top1"] > metrics["baselines"]["random_init_knn_top1"] + 0.1  # it learned, on two processes

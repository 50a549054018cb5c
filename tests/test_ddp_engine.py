"""The engine under Lightning's DDP with two CPU processes (gloo), through the CLI."""
import json

import pytest
import torch

from support import TINY
from two_processes import two_process_command


pytestmark = pytest.mark.ddp


def test_two_process_cpu_ddp_run(tmp_path):
    out = tmp_path / "ddp"
    proc = two_process_command(["pretrain", "--method", "simclr", "--epochs", "2", "--batch-size", "32", "--out", out,
                                "--baselines"] + [a for a in TINY if a not in ("--batch-size", "64")])
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    # 512 images, 32 per rank and step, 2 ranks: 8 steps per epoch, every image seen once per epoch
    checkpoint = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 16
    assert metrics["knn_top1"] > metrics["baselines"]["random_init_knn_top1"] + 0.1  # it learned, on two processes

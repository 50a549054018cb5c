"""The engine under Lightning's DDP with two CPU processes (gloo), through the CLI."""
import json

import pytest
import torch

from lightning import seed_everything

from support import TINY
from selfsup.engine.module import PretrainModule
from two_processes import two_process_command


pytestmark = pytest.mark.ddp


def test_two_process_cpu_ddp_run(tmp_path):
    out = tmp_path / "ddp"
    proc = two_process_command(["pretrain", "--method", "simclr", "--epochs", "2", "--batch-size", "32", "--out", out,
                                "--recipe", "paper",  # T 0.5: the short recipe's 0.2 learns less in these 16 steps
                                "--baselines"] + [a for a in TINY if a not in ("--batch-size", "64")])
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    # 512 images, 32 per rank and step, 2 ranks: 8 steps per epoch, every image seen once per epoch
    checkpoint = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 16
    assert metrics["knn_top1"] > metrics["baselines"]["random_init_knn_top1"] + 0.1  # it learned, on two processes


def test_two_process_cpu_ddp_run_of_a_vision_transformer_method(tmp_path):
    """DINO on a two-block ViT: multi-crop, the EMA teacher and the all-reduced centre across two ranks."""
    out = tmp_path / "ddp-vit"
    proc = two_process_command(["pretrain", "--method", "dino", "--epochs", "2", "--batch-size", "32", "--out", out,
                                "--backbone", "vit", "--set", "backbone.depth=2", "--set", "backbone.heads=2",
                                "--set", "params.local_crops=2", "--set", "params.out_dim=256", "--baselines"]
                               + [a for a in TINY if a not in ("--batch-size", "64")])
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    checkpoint = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 16 and [h["epoch"] for h in metrics["knn_history"]] == [1, 2]
    state = checkpoint["state_dict"]
    # the teacher followed the student by EMA: it left the shared initial weights, less far than the student
    seed_everything(0, verbose=False)
    initial = PretrainModule(dict(checkpoint["hyper_parameters"]["cfg"])).state_dict()
    name = "method.{}.vit.blocks.0.attn.qkv.weight"
    start, student, teacher = initial[name.format("backbone")], state[name.format("backbone")], \
        state[name.format("teacher_backbone")]
    assert torch.equal(start, initial[name.format("teacher_backbone")])
    assert 0 < (teacher - start).norm() < 0.1 * (student - start).norm()  # momentum 0.996: a few percent
    # the centre moved from 0 by the all-reduced batch means
    assert state["method.center"].abs().mean() > 0
    assert all(torch.isfinite(v.float()).all() for v in state.values())
    assert metrics["knn_top1"] > 1 / 6, metrics  # 6 classes

"""Runs selfsup on a CUDA device: every registered method for a few dozen steps in bf16 (the
semi-supervised ones through `selfsup semisup`), a checkpoint interrupted and resumed, the kNN
monitor, `evaluate knn`, one forecast, and on CUDA only MAE under FSDP and the tests that need a CUDA device
(tests/test_rng.py, whose CUDA test every CPU machine skips).  One line per item (OK or FAIL with the error's last line); exit 1
when any item fails, 0 with a message when no CUDA device exists.

    bash scripts/gpu-check.sh [--out DIR] [--method M ...]
    python scripts/gpu_check.py --device cpu --method simclr   # the same items on the CPU (tests)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def selfsup(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "selfsup.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


class Checklist:
    def __init__(self):
        self.failures = 0

    def item(self, name: str, run) -> None:
        start = time.perf_counter()
        try:
            detail = run()
            print(f"OK    {name:<28} {detail} ({time.perf_counter() - start:.0f} s)", flush=True)
        except Exception as error:  # one line per item whatever went wrong
            self.failures += 1
            print(f"FAIL  {name:<28} {type(error).__name__}: {last_line(str(error))}", flush=True)


def check(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    if result.returncode != 0:
        raise RuntimeError(last_line(result.stderr or result.stdout))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--method", action="append", help="methods to train (default: every registered one)")
    parser.add_argument("--out", type=Path, help="run folders (default: a temporary folder)")
    args = parser.parse_args(argv)
    import torch

    from selfsup.bench.definitions import TINY_RUN_PARAMS
    from selfsup.config import resolve
    from selfsup.models.backbones import STACKED_SERIES_BACKBONES
    from selfsup.models.vit import VIT_BACKBONES
    from selfsup.methods import METHODS

    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu-check: no CUDA device here; nothing to check (run it on a machine with a GPU)")
        return 0
    out = args.out or Path(tempfile.mkdtemp(prefix="selfsup-gpu-check-"))
    accelerator, precision = ("gpu", "bf16-mixed") if args.device == "cuda" else ("cpu", "32-true")
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(f"gpu-check on {device_name}, torch {torch.__version__}, runs in {out}", flush=True)
    # 512 synthetic images, batch 32: 16 steps an epoch; the kNN monitor after each epoch (W-MSE whitens
    # sub-batches that fit the batch)
    common = ["--dataset", "synthetic", "--batch-size", "32", "--accelerator", accelerator, "--width", "8",
              "--set", f"trainer.precision={precision}", "--set", "trainer.progress_bar=false",
              "--set", "knn.monitor_train_size=256", "--set", "knn.monitor_test_size=128", "--set", "knn.k=20"]
    checklist = Checklist()
    chosen = args.method or list(METHODS)
    methods = [name for name in chosen if not METHODS[name].semi_supervised]
    semi_supervised = [name for name in chosen if METHODS[name].semi_supervised] or ["fixmatch"]  # one at least

    def pretrain(method: str, epochs: int = 2):
        def run():
            small = [arg for key, value in TINY_RUN_PARAMS.get(method, {}).items() for arg in ("--set", f"params.{key}={value}")]
            if resolve(method)["backbone"]["name"] in VIT_BACKBONES:  # a two-block ViT: the token path, not the size
                small += ["--backbone", "vit", "--width", "32", "--set", "backbone.depth=2"]
            if "image" not in METHODS[method].modalities:  # series-only methods: the synthetic series
                small += ["--dataset", "synthetic-series"]
            if resolve(method)["backbone"]["name"] in STACKED_SERIES_BACKBONES:  # 3 of their 10 blocks
                small += ["--set", "backbone.depth=3"]
            check(selfsup("pretrain", "--method", method, "--epochs", str(epochs), "--out", str(out / method), *common,
                          *small))
            metrics = json.loads((out / method / "metrics.json").read_text())
            return f"loss {metrics['final_loss']:.3f}, kNN {metrics['knn_top1']:.3f}"
        return run

    for method in methods:
        checklist.item(f"pretrain {method}", pretrain(method))

    resumed_method = "moco-v2"  # the run killed and resumed (a queue, a momentum encoder: state to restore)

    def interrupted_and_resumed():
        run_dir = out / "resume"
        cmd = [sys.executable, "-m", "selfsup.cli", "pretrain", "--method", resumed_method, "--epochs", "6",
               "--out", str(run_dir), *common]
        process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        checkpoint = run_dir / "checkpoints" / "last.ckpt"
        while process.poll() is None and not checkpoint.exists():
            time.sleep(0.05)
        process.kill()
        process.wait()
        if (run_dir / "metrics.json").exists():
            raise RuntimeError("the run finished before it could be interrupted")
        check(selfsup("pretrain", "--method", resumed_method, "--epochs", "6", "--out", str(run_dir), "--resume", *common))
        metrics = json.loads((run_dir / "metrics.json").read_text())
        epochs = [entry["epoch"] for entry in metrics["knn_history"]]
        return f"killed after the first checkpoint, resumed to epoch {metrics['epochs']}, monitor epochs {epochs}"

    checklist.item("checkpoint, kill, resume", interrupted_and_resumed)

    def evaluate_knn():  # the first method's run, or the resumed run where no method was pretrained
        first = next((m for m in methods if (out / m / "checkpoints" / "last.ckpt").exists()), "resume")
        method = resumed_method if first == "resume" else first
        dataset = "synthetic" if "image" in METHODS[method].modalities else "synthetic-series"
        result = check(selfsup("evaluate", "knn", "--checkpoint", str(out / first / "checkpoints" / "last.ckpt"),
                               "--dataset", dataset, "--k", "20"))
        return f"{method}: kNN top-1 {json.loads(result.stdout)['top1']:.3f}"

    checklist.item("evaluate knn", evaluate_knn)

    def semisup(method: str):
        def run():  # 3 epochs: self-training's and FROST's 3 labelling rounds need as many
            check(selfsup("semisup", "--method", method, "--labels-per-class", "4", "--epochs", "3",
                          "--out", str(out / method), *common))
            metrics = json.loads((out / method / "metrics.json").read_text())
            return f"test top-1 {metrics['test_top1']:.3f}"
        return run

    for method in semi_supervised:
        checklist.item(f"semisup {method}", semisup(method))

    def fsdp():
        vit = ["--backbone", "vit", "--width", "32", "--set", "backbone.depth=2"]
        check(selfsup("pretrain", "--method", "mae", "--epochs", "2", "--out", str(out / "fsdp"), *common, *vit,
                      "--set", "trainer.strategy=fsdp"))
        metrics = json.loads((out / "fsdp" / "metrics.json").read_text())
        return f"mae under fsdp: loss {metrics['final_loss']:.3f}, kNN {metrics['knn_top1']:.3f}"

    if args.device == "cuda":  # Lightning's FSDP runs on CUDA only
        checklist.item("fsdp", fsdp)

    def forecast():
        check(selfsup("forecast", "--series", "sunspots", "--model", "plain", "--epochs", "5", "--out",
                      str(out / "forecast"), "--set", f"trainer.accelerator={accelerator}"))
        metrics = json.loads((out / "forecast" / "metrics.json").read_text())
        return f"test NRMSE {metrics['nrmse']:.3f}"

    checklist.item("forecast plain", forecast)

    def cuda_tests():  # the tests that need a CUDA device (skipped on every CPU machine)
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
                                 str(Path(__file__).resolve().parents[1] / "tests" / "test_rng.py")],
                                capture_output=True, text=True, timeout=600)
        if result.returncode != 0 or " skipped" in last_line(result.stdout):
            raise RuntimeError(last_line(result.stdout + result.stderr))
        return last_line(result.stdout)

    if args.device == "cuda":
        checklist.item("pytest tests/test_rng.py", cuda_tests)
    print(f"gpu-check: {checklist.failures} item(s) failed" if checklist.failures else "gpu-check: every item passed")
    return 1 if checklist.failures else 0


if __name__ == "__main__":
    sys.exit(main())

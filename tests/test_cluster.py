"""Ranks as Lightning reads them (SLURM, torchrun, its own launcher), and a two-process torchrun run."""
import os
import subprocess
import sys

import pytest
import torch

from support import TINY
from selfsup.engine.cluster import cluster_environment, is_launched_worker

SLURM = {"SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "2", "SLURM_JOB_NAME": "pretrain", "SLURM_LOCALID": "0", "SLURM_NODEID": "0"}
TORCHRUN = {"TORCHELASTIC_RUN_ID": "job", "GROUP_RANK": "0", "LOCAL_WORLD_SIZE": "2", "WORLD_SIZE": "2"}


@pytest.mark.parametrize("env, worker, kind", [
    ({}, False, "LightningEnvironment"),
    ({"LOCAL_RANK": "1"}, True, "LightningEnvironment"),  # a process Lightning's launcher started
    ({"NODE_RANK": "1"}, True, "LightningEnvironment"),  # a second node started by hand
    ({**SLURM, "SLURM_PROCID": "0"}, False, "SLURMEnvironment"),
    ({**SLURM, "SLURM_PROCID": "1"}, True, "SLURMEnvironment"),  # no RANK under srun: read as rank 0 before
    ({**SLURM, "SLURM_PROCID": "1", "SLURM_JOB_NAME": "interactive"}, False, "LightningEnvironment"),
    ({**TORCHRUN, "RANK": "0", "LOCAL_RANK": "0"}, False, "TorchElasticEnvironment"),
    ({**TORCHRUN, "RANK": "1", "LOCAL_RANK": "1"}, True, "TorchElasticEnvironment"),
])
def test_only_global_rank_zero_owns_the_run_directory(monkeypatch, env, worker, kind):
    for name in [*SLURM, *TORCHRUN, "SLURM_PROCID", "RANK", "LOCAL_RANK", "NODE_RANK"]:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert type(cluster_environment()).__name__ == kind
    assert is_launched_worker() is worker


@pytest.mark.ddp
def test_torchrun_two_cpu_processes_train_one_run(tmp_path):
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "RANK", "LOCAL_RANK"))}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             "-m", "selfsup.cli", "pretrain", "--method", "simclr", "--epochs", "1", "--devices", "2",
                             "--accelerator", "cpu", "--out", str(out), *TINY, "--batch-size", "32"],
                            capture_output=True, text=True, timeout=600, env={**env, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("results in") == 1  # rank 0 alone reports and writes
    checkpoint = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 512 // (2 * 32)  # each step took a batch on each of the two processes
    assert len(list((out / "logs" / "csv").glob("version_*"))) == 1

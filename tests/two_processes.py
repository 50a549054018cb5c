"""The distributed tests' two CPU processes: a function on a gloo process group, or a
``selfsup`` command with ``--devices 2``."""
import os
import socket
import subprocess
import sys

import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank, world, port, worker, args, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        results[rank] = worker(rank, world, *args)
    finally:
        dist.destroy_process_group()


def run_two_processes(worker, *args, world: int = 2) -> dict:
    """``worker(rank, world, *args)`` on each of ``world`` processes; {rank: its return value}.
    ``worker`` must be a module-level function (it is pickled)."""
    results = mp.Manager().dict()
    mp.spawn(_entry, args=(world, free_port(), worker, args, results), nprocs=world, join=True)
    return dict(results)


def sharded_loss_and_grads(rank, world, loss, z1, z2):
    """A two-view ``loss`` (given ``gather=True``) on this rank's shard of [N, D] ``z1`` and ``z2``:
    the loss and both shards' gradients divided by ``world``, as DDP averages them.  A worker
    for ``run_two_processes`` (pass ``functools.partial(loss_function, settings...)``)."""
    shard = z1.shape[0] // world
    a = z1[rank * shard:(rank + 1) * shard].clone().requires_grad_(True)
    b = z2[rank * shard:(rank + 1) * shard].clone().requires_grad_(True)
    value = loss(a, b, gather=True)
    value.backward()
    return value.detach(), a.grad / world, b.grad / world


def two_process_command(argv: list, script=None, timeout: int = 600, **env) -> subprocess.CompletedProcess:
    """``selfsup ARGV --devices 2 --accelerator cpu`` (Lightning's DDP on two processes, one
    thread each); ``script``: another entry point (one that registers the tests' toy methods),
    ``env``: extra environment variables."""
    entry = [str(script)] if script else ["-m", "selfsup.cli"]
    environment = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1", **env)
    return subprocess.run([sys.executable, *entry, *map(str, argv), "--devices", "2", "--accelerator", "cpu"],
                          capture_output=True, text=True, env=environment, timeout=timeout)

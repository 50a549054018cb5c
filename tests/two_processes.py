"""Run a function on two CPU processes joined by a gloo process group (the distributed tests)."""
import os
import socket

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

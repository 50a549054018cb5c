"""Two CPU processes (gloo): the gathered loss and its gradients equal the single-process
result on the concatenated batch."""
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from selfsup.losses import nt_xent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, z1, z2, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        n = z1.shape[0] // world
        a = z1[rank * n:(rank + 1) * n].clone().requires_grad_(True)
        b = z2[rank * n:(rank + 1) * n].clone().requires_grad_(True)
        loss = nt_xent(a, b, temperature=0.3, gather=True)
        loss.backward()
        results[rank] = (loss.detach(), a.grad, b.grad)
    finally:
        dist.destroy_process_group()


def test_gathered_nt_xent_equals_single_process():
    world = 2
    z1, z2 = torch.randn(8, 6), torch.randn(8, 6)
    manager = mp.Manager()
    results = manager.dict()
    mp.spawn(_worker, args=(world, _free_port(), z1, z2, results), nprocs=world, join=True)

    a, b = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
    full = nt_xent(a, b, temperature=0.3)
    full.backward()
    # DDP averages the ranks' losses and gradients.
    mean_loss = sum(results[r][0] for r in range(world)) / world
    assert torch.allclose(mean_loss, full, atol=1e-6)
    n = z1.shape[0] // world
    for r in range(world):
        assert torch.allclose(results[r][1] / world, a.grad[r * n:(r + 1) * n], atol=1e-6)
        assert torch.allclose(results[r][2] / world, b.grad[r * n:(r + 1) * n], atol=1e-6)

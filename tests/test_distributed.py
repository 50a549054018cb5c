"""Two CPU processes (gloo): the gathered loss and its gradients equal the single-process
result on the concatenated batch."""

import pytest
import torch

from selfsup.losses import decoupled_nt_xent, nt_xent
from two_processes import run_two_processes

LOSSES = {"nt_xent": nt_xent, "decoupled_nt_xent": decoupled_nt_xent}


def _worker(rank, world, z1, z2, name):
    n = z1.shape[0] // world
    a = z1[rank * n:(rank + 1) * n].clone().requires_grad_(True)
    b = z2[rank * n:(rank + 1) * n].clone().requires_grad_(True)
    loss = LOSSES[name](a, b, temperature=0.3, gather=True)
    loss.backward()
    return loss.detach(), a.grad, b.grad


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_gathered_loss_equals_single_process(name):
    world = 2
    z1, z2 = torch.randn(8, 6), torch.randn(8, 6)
    results = run_two_processes(_worker, z1, z2, name)

    a, b = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
    full = LOSSES[name](a, b, temperature=0.3)
    full.backward()
    # DDP averages the ranks' losses and gradients.
    mean_loss = sum(results[r][0] for r in range(world)) / world
    assert torch.allclose(mean_loss, full, atol=1e-6)
    n = z1.shape[0] // world
    for r in range(world):
        assert torch.allclose(results[r][1] / world, a.grad[r * n:(r + 1) * n], atol=1e-6)
        assert torch.allclose(results[r][2] / world, b.grad[r * n:(r + 1) * n], atol=1e-6)

"""negative_cosine and barlow_twins against hand-computed values, an independent formula,
their gradients, and (Barlow Twins) two processes against one."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from selfsup.losses import barlow_twins, negative_cosine
from two_processes import run_two_processes


def test_negative_cosine_hand_computed():
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z = torch.tensor([[1.0, 1.0], [0.0, -1.0]])
    assert negative_cosine(p, z).item() == pytest.approx(-(1 / math.sqrt(2) - 1) / 2)


@pytest.mark.parametrize("n,d", [(1, 3), (5, 8), (16, 128)])
def test_negative_cosine_is_byol_normalised_mse_shifted(n, d):
    """BYOL writes the loss as ||p/|p| − z/|z|||² = 2 − 2·cos."""
    p, z = torch.randn(n, d, dtype=torch.float64), torch.randn(n, d, dtype=torch.float64)
    mse = (F.normalize(p, dim=1) - F.normalize(z, dim=1)).pow(2).sum(dim=1).mean()
    assert torch.allclose(2 + 2 * negative_cosine(p, z), mse)
    assert negative_cosine(p, p).item() == pytest.approx(-1.0)


def test_negative_cosine_gradient_reaches_p_only():
    p = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    z = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    negative_cosine(p, z).backward()
    assert z.grad is None and p.grad.abs().sum() > 0
    negative_cosine(p, z, stop_gradient=False).backward()
    z_first = z.detach().clone().requires_grad_(True)  # cos is symmetric: z's gradient as the first argument
    negative_cosine(z_first, p.detach()).backward()
    assert torch.allclose(z.grad, z_first.grad)
    torch.autograd.gradcheck(lambda q: negative_cosine(q, z), (p.detach().clone().requires_grad_(True),))


def barlow_reference(z1: np.ndarray, z2: np.ndarray, lambd: float) -> float:
    """Eq. (1) written element by element in float64."""
    a = (z1 - z1.mean(0)) / np.sqrt(z1.var(0) + 1e-5)
    b = (z2 - z2.mean(0)) / np.sqrt(z2.var(0) + 1e-5)
    n, d = a.shape
    loss = 0.0
    for i in range(d):
        for j in range(d):
            c = sum(a[k, i] * b[k, j] for k in range(n)) / n
            loss += (1 - c) ** 2 if i == j else lambd * c ** 2
    return loss


def test_barlow_twins_hand_computed():
    z1 = torch.tensor([[1.0, 2.0], [-1.0, -2.0]], dtype=torch.float64)
    z2 = torch.tensor([[1.0, -1.0], [-1.0, 1.0]], dtype=torch.float64)
    unit, a1 = 1 / math.sqrt(1 + 1e-5), 2 / math.sqrt(4 + 1e-5)  # standardised magnitudes
    c = [[unit * unit, -unit * unit], [a1 * unit, -a1 * unit]]
    expected = (1 - c[0][0]) ** 2 + (1 - c[1][1]) ** 2 + 0.5 * (c[0][1] ** 2 + c[1][0] ** 2)
    assert barlow_twins(z1, z2, lambd=0.5).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("n,d,lambd", [(2, 3, 0.0051), (7, 5, 0.5), (16, 4, 0.0)])
def test_barlow_twins_matches_reference(n, d, lambd):
    z1, z2 = torch.randn(n, d) * 3 + 1, torch.randn(n, d)
    assert barlow_twins(z1, z2, lambd).item() == pytest.approx(barlow_reference(z1.double().numpy(), z2.double().numpy(), lambd), rel=1e-4)


def test_barlow_twins_is_zero_for_identical_decorrelated_views():
    z = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])  # unit variance, uncorrelated
    assert barlow_twins(z, z).item() == pytest.approx(0.0, abs=1e-4)


def test_barlow_twins_gradcheck_and_bad_shapes():
    z1 = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda a, b: barlow_twins(a, b, 0.3), (z1, z2))
    for a, b in [(torch.randn(4, 3), torch.randn(4, 2)), (torch.randn(1, 3), torch.randn(1, 3)), (torch.randn(4), torch.randn(4))]:
        with pytest.raises(ValueError, match="barlow_twins expects"):
            barlow_twins(a, b)


def _barlow_worker(rank, world, z1, z2):
    half = z1.shape[0] // world
    a = z1[rank * half:(rank + 1) * half].clone().requires_grad_(True)
    b = z2[rank * half:(rank + 1) * half].clone().requires_grad_(True)
    loss = barlow_twins(a, b, 0.1, gather=True)
    loss.backward()
    return loss.detach(), a.grad / world, b.grad / world  # DDP averages over ranks


def test_barlow_twins_two_processes_equal_one():
    world = 2
    z1, z2 = torch.randn(8, 4, dtype=torch.float64), torch.randn(8, 4, dtype=torch.float64)
    results = run_two_processes(_barlow_worker, z1, z2)
    a, b = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
    full = barlow_twins(a, b, 0.1)
    full.backward()
    for rank in range(world):
        loss, grad_a, grad_b = results[rank]
        assert torch.allclose(loss, full.detach(), atol=1e-5)
        assert torch.allclose(grad_a, a.grad[rank * 4:(rank + 1) * 4], atol=1e-5)
        assert torch.allclose(grad_b, b.grad[rank * 4:(rank + 1) * 4], atol=1e-5)

"""negative_cosine and barlow_twins against hand-computed values, an independent formula,
their gradients, and (Barlow Twins) two processes against one."""
import functools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from selfsup.losses import barlow_twins, negative_cosine
from two_processes import run_two_processes, sharded_loss_and_grads


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


def test_barlow_twins_two_processes_equal_one():
    world = 2
    z1, z2 = torch.randn(8, 4, dtype=torch.float64), torch.randn(8, 4, dtype=torch.float64)
    results = run_two_processes(sharded_loss_and_grads, functools.partial(barlow_twins, lambd=0.1), z1, z2)
    a, b = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
    full = barlow_twins(a, b, 0.1)
    full.backward()
    for rank in range(world):
        loss, grad_a, grad_b = results[rank]
        assert torch.allclose(loss, full.detach(), atol=1e-5)
        assert torch.allclose(grad_a, a.grad[rank * 4:(rank + 1) * 4], atol=1e-5)
        assert torch.allclose(grad_b, b.grad[rank * 4:(rank + 1) * 4], atol=1e-5)


def vicreg_reference(z1: np.ndarray, z2: np.ndarray, lam=25.0, mu=25.0, nu=1.0, gamma=1.0, eps=1e-4) -> float:
    """VICReg element by element in float64, as the official code computes eq. (6): the
    invariance averaged over N·D, the variance hinge halved over the two branches, the
    covariance summed over them."""
    n, d = z1.shape
    invariance = sum((z1[i, j] - z2[i, j]) ** 2 for i in range(n) for j in range(d)) / (n * d)
    variance = covariance = 0.0
    for z in (z1, z2):
        mean = [sum(z[i, j] for i in range(n)) / n for j in range(d)]
        cov = [[sum((z[k, i] - mean[i]) * (z[k, j] - mean[j]) for k in range(n)) / (n - 1) for j in range(d)]
               for i in range(d)]
        variance += sum(max(0.0, gamma - math.sqrt(cov[j][j] + eps)) for j in range(d)) / d / 2
        covariance += sum(cov[i][j] ** 2 for i in range(d) for j in range(d) if i != j) / d
    return lam * invariance + mu * variance + nu * covariance


@pytest.mark.parametrize("n,d,scale,weights", [(2, 3, 1.0, (25, 25, 1)), (7, 5, 0.3, (25, 25, 1)),
                                               (16, 4, 2.0, (1, 0, 10))])
def test_vicreg_matches_reference(n, d, scale, weights):
    from selfsup.losses import vicreg

    z1, z2 = torch.randn(n, d, dtype=torch.float64) * scale, torch.randn(n, d, dtype=torch.float64) * scale + 1
    expected = vicreg_reference(z1.numpy(), z2.numpy(), *weights)
    assert vicreg(z1, z2, *weights).item() == pytest.approx(expected, rel=1e-9)
    torch.autograd.gradcheck(lambda a, b: vicreg(a, b, *weights), (z1.requires_grad_(True), z2.requires_grad_(True)))


def test_vicreg_terms_see_collapse_and_correlation():
    from selfsup.losses import vicreg_terms

    collapsed = torch.ones(8, 3)  # every dimension constant: the hinge at its maximum, 1 − sqrt(ε) per branch
    invariance, variance, covariance = vicreg_terms(collapsed, collapsed)
    assert invariance.item() == 0 and covariance.item() == 0
    assert variance.item() == pytest.approx(1 - math.sqrt(1e-4), rel=1e-6)
    spread = torch.tensor([[2.0, 2.0], [-2.0, -2.0], [2.0, 2.0], [-2.0, -2.0]])  # std > 1, two equal dimensions
    _, variance, covariance = vicreg_terms(spread, spread)
    assert variance.item() == 0
    assert covariance.item() == pytest.approx(2 * 2 * (16 / 3) ** 2 / 2)  # C_01 = C_10 = 16/3, two branches, / d
    with pytest.raises(ValueError, match="vicreg expects"):
        vicreg_terms(torch.randn(1, 3), torch.randn(1, 3))


def test_vicreg_two_processes_equal_one():
    from selfsup.losses import vicreg

    z1, z2 = torch.randn(8, 4, dtype=torch.float64), torch.randn(8, 4, dtype=torch.float64)
    results = run_two_processes(sharded_loss_and_grads, vicreg, z1, z2)
    a, b = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
    full = vicreg(a, b)
    full.backward()
    for rank, (loss, grad_a, grad_b) in results.items():
        assert torch.allclose(loss, full.detach(), atol=1e-9)
        assert torch.allclose(grad_a, a.grad[rank * 4:(rank + 1) * 4], atol=1e-9)
        assert torch.allclose(grad_b, b.grad[rank * 4:(rank + 1) * 4], atol=1e-9)


def test_cholesky_whitening_gives_identity_covariance_and_a_lower_triangular_map():
    from selfsup.losses import cholesky_whiten

    x = torch.randn(40, 5, dtype=torch.float64) @ torch.randn(5, 5, dtype=torch.float64) + 3
    white = cholesky_whiten(x)
    assert torch.allclose(white.T @ white / 39, torch.eye(5, dtype=torch.float64), atol=1e-9)
    # x̂ = L⁻¹(x − μ): the first whitened coordinate is the first centred one over its std
    centred = x - x.mean(0)
    assert torch.allclose(white[:, 0], centred[:, 0] / centred[:, 0].std(), atol=1e-9)
    with pytest.raises(ValueError, match="more rows than columns"):
        cholesky_whiten(torch.randn(5, 5))


def w_mse_reference(views: list[np.ndarray], eps: float = 0.0) -> float:
    """W-MSE with one sub-batch (the whole batch), numpy's Cholesky factor, pairs averaged."""
    whitened = []
    for z in views:
        n, d = z.shape
        c = z - z.mean(0)
        factor = np.linalg.cholesky((1 - eps) * c.T @ c / (n - 1) + eps * np.eye(d))
        w = np.linalg.solve(factor, c.T).T
        whitened.append(w / np.linalg.norm(w, axis=1, keepdims=True))
    pairs = [(a, b) for i, a in enumerate(whitened) for b in whitened[i + 1:]]
    return float(np.mean([np.mean(np.sum((a - b) ** 2, axis=1)) for a, b in pairs]))


@pytest.mark.parametrize("views,n,d,eps", [(2, 16, 4, 0.0), (4, 24, 6, 0.1)])
def test_w_mse_matches_reference_on_one_sub_batch(views, n, d, eps):
    from selfsup.losses import w_mse

    z = [torch.randn(n, d, dtype=torch.float64) for _ in range(views)]
    loss = w_mse(z, n, torch.Generator().manual_seed(0), eps=eps)
    assert loss.item() == pytest.approx(w_mse_reference([v.numpy() for v in z], eps), rel=1e-7)
    # whitening and the mean are blind to the order of the batch: another draw, the same loss
    assert w_mse(z, n, torch.Generator().manual_seed(1), eps=eps).item() == pytest.approx(loss.item(), rel=1e-9)


def test_w_mse_whitens_each_sub_batch_on_its_own_and_keeps_the_gradient():
    from selfsup.losses import w_mse

    z1 = torch.randn(32, 3, dtype=torch.float64, requires_grad=True)
    z2 = (z1.detach() + 0.1 * torch.randn(32, 3, dtype=torch.float64)).requires_grad_(True)
    generator = torch.Generator().manual_seed(5)
    loss = w_mse([z1, z2], 8, generator, iterations=2)
    # the same loss, by hand: the generator's two splits into four sub-batches of 8, each whitened alone
    replay, expected = torch.Generator().manual_seed(5), 0.0
    for _ in range(2):
        groups = torch.randperm(32, generator=replay).view(-1, 8)
        expected += np.mean([w_mse_reference([z1.detach()[g].numpy(), z2.detach()[g].numpy()]) for g in groups]) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-7)
    loss.backward()
    assert z1.grad.abs().sum() > 0 and z2.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="multiple of whiten_size"):
        w_mse([z1, z2], 6, generator)
    with pytest.raises(ValueError, match="exceed the embedding width"):
        w_mse([z1[:, :3], z2[:, :3]], 2, generator)


def tico_reference(a: np.ndarray, b: np.ndarray, previous: np.ndarray, beta: float, rho: float):
    """TiCo's eq. (3) row by row: C_t = β C_{t−1} + (1 − β)/N Σ_i ẑ_i ẑ_iᵀ, then
    −mean_i ẑ_a,i·ẑ_b,i + ρ mean_i ẑ_a,iᵀ C_t ẑ_a,i."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    current = beta * previous + (1 - beta) * sum(np.outer(row, row) for row in a) / len(a)
    loss = -np.mean([a[i] @ b[i] for i in range(len(a))]) + rho * np.mean([a[i] @ current @ a[i] for i in range(len(a))])
    return loss, current


def test_tico_matches_reference_over_steps():
    from selfsup.losses import tico

    covariance, expected_covariance = torch.zeros(4, 4, dtype=torch.float64), np.zeros((4, 4))
    for step in range(3):
        a, b = torch.randn(6, 4, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64)
        loss, covariance = tico(a, b, covariance, beta=0.9, rho=8.0)
        expected, expected_covariance = tico_reference(a.numpy(), b.numpy(), expected_covariance, 0.9, 8.0)
        assert loss.item() == pytest.approx(expected, rel=1e-9)
        assert np.allclose(covariance.numpy(), expected_covariance) and not covariance.requires_grad
    a = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda x: tico(x, b, covariance)[0], (a,))
    # identical views of one image repeated: invariance at its best (−1), the covariance term at ρ(1 − β)
    same = torch.ones(5, 3)
    loss, _ = tico(same, same, torch.zeros(3, 3), beta=0.9, rho=8.0)
    assert loss.item() == pytest.approx(-1 + 8.0 * 0.1, rel=1e-6)
    with pytest.raises(ValueError, match="tico expects"):
        tico(torch.randn(4, 3), torch.randn(4, 3), torch.zeros(2, 2))


def _tico_worker(rank, world, z1, z2, previous):
    from selfsup.losses import tico

    half = z1.shape[0] // world
    a = z1[rank * half:(rank + 1) * half].clone().requires_grad_(True)
    loss, covariance = tico(a, z2[rank * half:(rank + 1) * half], previous, gather=True)
    loss.backward()
    return loss.detach(), a.grad / world, covariance


def test_tico_two_processes_equal_one():
    from selfsup.losses import tico

    z1, z2, previous = (torch.randn(8, 4, dtype=torch.float64), torch.randn(8, 4, dtype=torch.float64),
                        torch.eye(4, dtype=torch.float64) / 4)
    results = run_two_processes(_tico_worker, z1, z2, previous)
    a = z1.clone().requires_grad_(True)
    full, covariance = tico(a, z2, previous)
    full.backward()
    assert torch.allclose(sum(loss for loss, _, _ in results.values()) / 2, full.detach(), atol=1e-9)
    for rank, (_, grad, rank_covariance) in results.items():
        assert torch.allclose(grad, a.grad[rank * 4:(rank + 1) * 4], atol=1e-9)
        assert torch.allclose(rank_covariance, covariance, atol=1e-12)


def emp_ssl_reference(patches: np.ndarray, weight: float, eps: float) -> float:
    """EMP-SSL as its paper writes it: the D × D form of the coding rate for every patch, the
    cosine of each patch embedding to its image's patch mean."""
    p, n, d = patches.shape
    z = patches / np.linalg.norm(patches, axis=2, keepdims=True)
    rates = [np.linalg.slogdet(np.eye(d) + d / (n * eps) * z[k].T @ z[k])[1] / 2 for k in range(p)]
    mean = z.mean(axis=0)
    cos = [[z[k, i] @ mean[i] / np.linalg.norm(mean[i]) for i in range(n)] for k in range(p)]
    return -np.mean(rates) - weight * np.mean(cos)


@pytest.mark.parametrize("p,n,d", [(2, 8, 4), (5, 6, 10), (3, 16, 16)])
def test_emp_ssl_matches_reference(p, n, d):
    from selfsup.losses import emp_ssl

    patches = torch.randn(p, n, d, dtype=torch.float64)
    assert emp_ssl(patches, 200.0, 0.2).item() == pytest.approx(emp_ssl_reference(patches.numpy(), 200.0, 0.2), rel=1e-9)
    torch.autograd.gradcheck(lambda x: emp_ssl(x, 3.0, 0.5), (patches.requires_grad_(True),))


def test_total_coding_rate_grows_with_spread_and_is_zero_for_nothing():
    from selfsup.losses import total_coding_rate

    assert total_coding_rate(torch.zeros(8, 4)).item() == pytest.approx(0.0, abs=1e-6)
    spread = torch.eye(4).repeat(2, 1)  # 8 embeddings along 4 orthogonal directions
    collapsed = torch.ones(8, 4) / 2  # 8 copies of one unit vector
    # ½ logdet(I + 4/(8·0.2)·ZᵀZ): ZᵀZ = 2·I for the spread rows, one eigenvalue 8 for the copies
    assert total_coding_rate(spread).item() == pytest.approx(4 * math.log(1 + 2.5 * 2) / 2, rel=1e-6)
    assert total_coding_rate(collapsed).item() == pytest.approx(math.log(1 + 2.5 * 8) / 2, rel=1e-6)
    with pytest.raises(ValueError, match="emp_ssl expects"):
        from selfsup.losses import emp_ssl
        emp_ssl(torch.randn(1, 4, 3))

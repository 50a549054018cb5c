import math

import numpy as np
import pytest
import torch

from selfsup.losses import nt_xent


def nt_xent_reference(z1: np.ndarray, z2: np.ndarray, temperature: float) -> float:
    """Eq. (1) of SimCLR written out anchor by anchor."""
    z = np.concatenate([z1, z2])
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    n = len(z1)
    total = 0.0
    for i in range(2 * n):
        positive = (i + n) % (2 * n)
        sims = np.array([z[i] @ z[k] for k in range(2 * n)]) / temperature
        denominator = sum(math.exp(sims[k]) for k in range(2 * n) if k != i)
        total += -math.log(math.exp(sims[positive]) / denominator)
    return total / (2 * n)


def test_nt_xent_hand_computed():
    # Two orthogonal images, identical views: each anchor has similarity 1 to its positive and
    # 0 to the two negatives, so every term is -log(e^(1/T) / (e^(1/T) + 2)).
    z = torch.eye(2)
    expected = math.log(1 + 2 * math.exp(-1 / 0.5))
    assert nt_xent(z, z.clone(), temperature=0.5).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0])
def test_nt_xent_matches_reference(temperature):
    z1, z2 = torch.randn(6, 5, dtype=torch.float64), torch.randn(6, 5, dtype=torch.float64)
    ours = nt_xent(z1, z2, temperature).item()
    assert ours == pytest.approx(nt_xent_reference(z1.numpy(), z2.numpy(), temperature), rel=1e-9)


def test_nt_xent_scale_invariant_and_symmetric():
    z1, z2 = torch.randn(8, 4), torch.randn(8, 4)
    loss = nt_xent(z1, z2)
    assert torch.allclose(loss, nt_xent(3 * z1, 0.5 * z2), atol=1e-6)
    assert torch.allclose(loss, nt_xent(z2, z1), atol=1e-6)


def test_nt_xent_gradients():
    z1 = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: nt_xent(a, b, 0.3), (z1, z2))


def test_nt_xent_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="nt_xent"):
        nt_xent(torch.randn(4, 3), torch.randn(5, 3))


def decoupled_reference(z1, z2, t):
    """DARe's L_con by loops: −mean_i log(e^{s_ii/τ} / Σ_{j≠i} e^{s_ij/τ}), s cosine similarity."""
    import math

    n = len(z1)
    cos = lambda u, v: (u @ v / (u.norm() * v.norm())).item()  # noqa: E731
    return -sum(math.log(math.exp(cos(z1[i], z2[i]) / t)
                         / sum(math.exp(cos(z1[i], z2[j]) / t) for j in range(n) if j != i)) for i in range(n)) / n


@pytest.mark.parametrize("n,d,t", [(2, 3, 1.0), (5, 4, 0.5), (16, 8, 0.1)])
def test_decoupled_nt_xent_matches_reference(n, d, t):
    from selfsup.losses import decoupled_nt_xent

    g = torch.Generator().manual_seed(n * d)
    z1, z2 = torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(n, d, generator=g, dtype=torch.float64)
    assert decoupled_nt_xent(z1, z2, t).item() == pytest.approx(decoupled_reference(z1, z2, t), rel=1e-9)
    # two views that agree: with the positive out of the denominator the loss goes below zero
    assert decoupled_nt_xent(z1, z1, t).item() < decoupled_nt_xent(z1, z2, t).item()
    z1.requires_grad_(True)
    torch.autograd.gradcheck(lambda a: decoupled_nt_xent(a, z2, t), (z1,))
    with pytest.raises(ValueError, match="at least two candidates"):
        decoupled_nt_xent(z1[:1], z2[:1], t)


def dcl_reference(z1, z2, t, sigma=None):
    """Yeh et al. 2022 eqs. (6)-(7) anchor by anchor: −w_i·s_i+/τ + log Σ_{k ∉ {i, i+}} e^{s_ik/τ}
    over the 2N views, w_i = 1 (DCL) or 2 − e^{s_i+/σ} / mean_j e^{s_j+/σ} (DCLW)."""
    z = np.concatenate([z1, z2])
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    n = len(z1)
    pair = np.array([z[i] @ z[i + n] for i in range(n)])
    weight = np.ones(n) if sigma is None else 2 - np.exp(pair / sigma) / np.exp(pair / sigma).mean()
    total = 0.0
    for i in range(2 * n):
        positive = (i + n) % (2 * n)
        negatives = sum(math.exp(z[i] @ z[k] / t) for k in range(2 * n) if k not in (i, positive))
        total += -weight[i % n] * (z[i] @ z[positive]) / t + math.log(negatives)
    return total / (2 * n)


@pytest.mark.parametrize("n,d,t,sigma", [(2, 3, 1.0, None), (5, 4, 0.1, None), (16, 8, 0.5, None),
                                         (5, 4, 0.1, 0.5), (16, 8, 0.2, 2.0)])
def test_dcl_matches_reference(n, d, t, sigma):
    from selfsup.losses import dcl

    g = torch.Generator().manual_seed(n * d)
    z1, z2 = torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(n, d, generator=g, dtype=torch.float64)
    assert dcl(z1, z2, t, sigma).item() == pytest.approx(dcl_reference(z1.numpy(), z2.numpy(), t, sigma), rel=1e-9)
    if sigma is None:  # DCLW's weight carries no gradient, by design: finite differences would see it
        z1.requires_grad_(True)
        torch.autograd.gradcheck(lambda a: dcl(a, z2, t), (z1,))


def test_dcl_is_nt_xent_without_the_positive_in_the_denominator():
    """NT-Xent's −log(e^p / (e^p + Σ neg)) = DCL's −p + log Σ neg + log(1 + e^p / Σ neg) per anchor,
    so for two orthogonal images with identical views (p = 1/τ, two negatives of 0) the two
    differ by exactly log(1 + e^{1/τ}/2)."""
    from selfsup.losses import dcl

    z, t = torch.eye(2), 0.5
    assert (nt_xent(z, z, t) - dcl(z, z, t)).item() == pytest.approx(math.log(1 + math.exp(1 / t) / 2), rel=1e-6)
    # equal positive similarities give every pair DCLW's weight 1
    assert dcl(z, z, t, weight_sigma=0.5).item() == pytest.approx(dcl(z, z, t).item(), rel=1e-6)
    with pytest.raises(ValueError, match="dcl expects"):
        dcl(torch.randn(4, 3), torch.randn(5, 3))


def test_dclw_two_processes_equal_one():
    """The negatives and DCLW's weight normaliser are those of the global batch."""
    import functools

    from selfsup.losses import dcl
    from two_processes import run_two_processes, sharded_loss_and_grads

    z1, z2 = torch.randn(8, 4, dtype=torch.float64), torch.randn(8, 4, dtype=torch.float64)
    results = run_two_processes(sharded_loss_and_grads, functools.partial(dcl, temperature=0.2, weight_sigma=0.5),
                                z1, z2)
    a, b = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
    dcl(a, b, 0.2, weight_sigma=0.5).backward()
    for rank, (loss, grad_a, grad_b) in results.items():
        # each rank's loss is the mean over its own anchors: their average is the global loss
        assert torch.allclose(grad_a, a.grad[rank * 4:(rank + 1) * 4], atol=1e-6)
        assert torch.allclose(grad_b, b.grad[rank * 4:(rank + 1) * 4], atol=1e-6)
    full = dcl(z1, z2, 0.2, weight_sigma=0.5)
    assert torch.allclose(sum(loss for loss, _, _ in results.values()) / 2, full, atol=1e-9)

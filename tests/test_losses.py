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

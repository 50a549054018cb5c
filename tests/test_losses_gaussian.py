"""gaussian_kl and gaussian_jsd against hand-computed values and torch.distributions."""
import math

import pytest
import torch
from torch.distributions import Independent, Normal, kl_divergence

from selfsup.losses import gaussian_jsd, gaussian_kl


def reference_kl(mu1, logvar1, mu2, logvar2):
    p = Independent(Normal(mu1, (0.5 * logvar1).exp()), 1)
    q = Independent(Normal(mu2, (0.5 * logvar2).exp()), 1)
    return kl_divergence(p, q).mean()


def reference_jsd(mu1, logvar1, mu2, logvar2):
    var_m = (logvar1.exp() + logvar2.exp()) / 2
    mix = ((mu1 + mu2) / 2, var_m.log())
    return (reference_kl(mu1, logvar1, *mix) + reference_kl(mu2, logvar2, *mix)) / 2


def test_gaussian_kl_hand_computed():
    # one dimension: N(0, 1) against N(1, e^2): ½[2 + (1 + 1)/e² − 1]
    mu1, lv1, mu2, lv2 = (torch.tensor([[v]]) for v in (0.0, 0.0, 1.0, 2.0))
    assert gaussian_kl(mu1, lv1, mu2, lv2).item() == pytest.approx(0.5 * (2 + 2 / math.e ** 2 - 1), rel=1e-6)
    # two dimensions are summed, two samples averaged; equal Gaussians give zero
    mu, lv = torch.randn(2, 2), torch.randn(2, 2)
    assert gaussian_kl(mu, lv, mu, lv).item() == pytest.approx(0.0, abs=1e-6)


def test_gaussian_jsd_hand_computed():
    # N(−1, 1) and N(1, 1): mixture N(0, 1), each KL = ½·1² → JSD = ½
    mu1, mu2, lv = torch.tensor([[-1.0]]), torch.tensor([[1.0]]), torch.zeros(1, 1)
    assert gaussian_jsd(mu1, lv, mu2, lv).item() == pytest.approx(0.5, rel=1e-6)


@pytest.mark.parametrize("b,d,scale", [(1, 1, 1.0), (4, 3, 0.5), (7, 16, 2.0)])
def test_gaussian_divergences_match_torch_distributions(b, d, scale):
    torch.manual_seed(b * d)
    args = [torch.randn(b, d, dtype=torch.float64) * scale for _ in range(4)]
    assert gaussian_kl(*args).item() == pytest.approx(reference_kl(*args).item(), rel=1e-9)
    assert gaussian_jsd(*args).item() == pytest.approx(reference_jsd(*args).item(), rel=1e-9)
    mu1, lv1, mu2, lv2 = args
    assert gaussian_jsd(mu1, lv1, mu2, lv2).item() == pytest.approx(gaussian_jsd(mu2, lv2, mu1, lv1).item(), rel=1e-12)
    assert gaussian_jsd(*args).item() >= 0 and gaussian_kl(*args).item() >= 0


def test_gaussian_divergences_gradients_and_bad_input():
    args = tuple(torch.randn(3, 2, dtype=torch.float64, requires_grad=True) for _ in range(4))
    torch.autograd.gradcheck(gaussian_kl, args)
    torch.autograd.gradcheck(gaussian_jsd, args)
    with pytest.raises(ValueError, match="gaussian_jsd expects four"):
        gaussian_jsd(torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(3, 3), torch.zeros(3, 2))

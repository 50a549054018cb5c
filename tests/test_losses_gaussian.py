"""gaussian_kl against hand-computed values and torch.distributions; gaussian_jsd against
Monte-Carlo estimates of the true Jensen-Shannon divergence of the two Gaussians."""
import math

import pytest
import torch
from torch.distributions import Independent, Normal, kl_divergence

from selfsup.losses import gaussian_jsd, gaussian_kl


def reference_kl(mu1, logvar1, mu2, logvar2):
    p = Independent(Normal(mu1, (0.5 * logvar1).exp()), 1)
    q = Independent(Normal(mu2, (0.5 * logvar2).exp()), 1)
    return kl_divergence(p, q).mean()


def monte_carlo(mu1, logvar1, mu2, logvar2, samples=400_000, seed=0):
    """(true JSD, KL(mixture ‖ moment-matched Gaussian)) of one pair of 1-D Gaussians, by sampling."""
    g = torch.Generator().manual_seed(seed)
    p1, p2 = Normal(mu1, math.exp(logvar1 / 2)), Normal(mu2, math.exp(logvar2 / 2))
    x1 = mu1 + math.exp(logvar1 / 2) * torch.randn(samples, generator=g, dtype=torch.float64)
    x2 = mu2 + math.exp(logvar2 / 2) * torch.randn(samples, generator=g, dtype=torch.float64)
    log_mix = lambda x: torch.logaddexp(p1.log_prob(x), p2.log_prob(x)) - math.log(2)  # noqa: E731
    jsd = 0.5 * ((p1.log_prob(x1) - log_mix(x1)).mean() + (p2.log_prob(x2) - log_mix(x2)).mean())
    var_m = (math.exp(logvar1) + math.exp(logvar2)) / 2 + ((mu1 - mu2) / 2) ** 2
    q = Normal((mu1 + mu2) / 2, math.sqrt(var_m))
    gap = 0.5 * ((log_mix(x1) - q.log_prob(x1)).mean() + (log_mix(x2) - q.log_prob(x2)).mean())
    return jsd.item(), gap.item()


def test_gaussian_kl_hand_computed():
    # one dimension: N(0, 1) against N(1, e^2): ½[2 + (1 + 1)/e² − 1]
    mu1, lv1, mu2, lv2 = (torch.tensor([[v]]) for v in (0.0, 0.0, 1.0, 2.0))
    assert gaussian_kl(mu1, lv1, mu2, lv2).item() == pytest.approx(0.5 * (2 + 2 / math.e ** 2 - 1), rel=1e-6)
    # two dimensions are summed, two samples averaged; equal Gaussians give zero
    mu, lv = torch.randn(2, 2), torch.randn(2, 2)
    assert gaussian_kl(mu, lv, mu, lv).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("mu1,lv1,mu2,lv2", [(0.0, 0.0, 0.3, 0.2), (-1.0, 0.0, 1.0, 0.0), (0.5, -1.0, -0.5, 1.5),
                                             (0.0, 0.0, 3.0, 0.0)])
def test_gaussian_jsd_is_the_true_jsd_plus_the_mixtures_distance_to_its_moment_match(mu1, lv1, mu2, lv2):
    # ½KL(N1‖M) + ½KL(N2‖M) = JSD(N1, N2) + KL(½N1 + ½N2 ‖ M) for any M; each side by sampling
    value = gaussian_jsd(*(torch.tensor([[v]], dtype=torch.float64) for v in (mu1, lv1, mu2, lv2))).item()
    jsd, gap = monte_carlo(mu1, lv1, mu2, lv2)
    assert value == pytest.approx(jsd + gap, abs=4e-3)
    assert jsd - 4e-3 <= value and 0 <= jsd <= math.log(2) + 4e-3
    if abs(mu1 - mu2) < 0.5 and abs(lv1 - lv2) < 0.5:  # close Gaussians: the mixture is nearly Gaussian
        assert value == pytest.approx(jsd, rel=0.05)


def test_gaussian_jsd_hand_computed_with_the_mean_term():
    # N(−1, 1) and N(1, 1): moment-matched mixture N(0, 2); each KL = ½[log 2 + (1 + 1)/2 − 1] = ½ log 2
    mu1, mu2, lv = torch.tensor([[-1.0]]), torch.tensor([[1.0]]), torch.zeros(1, 1)
    assert gaussian_jsd(mu1, lv, mu2, lv).item() == pytest.approx(0.5 * math.log(2), rel=1e-6)
    # dimensions are summed, rows averaged
    two = gaussian_jsd(torch.tensor([[-1.0, -1.0]] * 3), torch.zeros(3, 2), torch.tensor([[1.0, 1.0]] * 3), torch.zeros(3, 2))
    assert two.item() == pytest.approx(math.log(2), rel=1e-6)


@pytest.mark.parametrize("b,d,scale", [(1, 1, 1.0), (4, 3, 0.5), (7, 16, 2.0)])
def test_gaussian_divergences_properties(b, d, scale):
    torch.manual_seed(b * d)
    args = [torch.randn(b, d, dtype=torch.float64) * scale for _ in range(4)]
    assert gaussian_kl(*args).item() == pytest.approx(reference_kl(*args).item(), rel=1e-9)
    mu1, lv1, mu2, lv2 = args
    assert gaussian_jsd(mu1, lv1, mu2, lv2).item() == pytest.approx(gaussian_jsd(mu2, lv2, mu1, lv1).item(), rel=1e-12)
    assert gaussian_jsd(mu1, lv1, mu1, lv1).item() == pytest.approx(0.0, abs=1e-12)
    assert gaussian_jsd(*args).item() >= 0 and gaussian_kl(*args).item() >= 0


def test_gaussian_divergences_gradients_and_bad_input():
    args = tuple(torch.randn(3, 2, dtype=torch.float64, requires_grad=True) for _ in range(4))
    torch.autograd.gradcheck(gaussian_kl, args)
    torch.autograd.gradcheck(gaussian_jsd, args)
    with pytest.raises(ValueError, match="gaussian_jsd expects four"):
        gaussian_jsd(torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(3, 3), torch.zeros(3, 2))

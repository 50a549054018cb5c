"""DARe and SuperInfo beyond the per-method engine test: the loss is a contrastive term on
reparameterised samples (DARe: the report's one-way decoupled L_con; SuperInfo: NT-Xent) plus the
weighted divergence, with noise from the method's own generator."""
import math

import pytest
import torch
import torch.nn.functional as F

from selfsup.losses import gaussian_jsd, gaussian_kl, nt_xent
from support import tiny


def samples_and_gaussians(method, seed=3):
    images = torch.Generator().manual_seed(0)
    views = [torch.rand(8, 3, 16, 16, generator=images) for _ in range(2)]
    method.train()
    method.generator.manual_seed(seed)
    out = method.training_step({"views": views}, 0)
    with torch.no_grad():  # the same forward pass, written out, with the noise drawn again from the same seed
        mu, logvar = method.head(method.backbone(torch.cat(views)))
        noise = torch.randn(mu.shape, generator=torch.Generator().manual_seed(seed))
        z1, z2 = (mu + noise * torch.exp(logvar / 2)).chunk(2)
    return out, (z1, z2), mu.chunk(2), logvar.chunk(2)


def step_and_reference(method, seed=3):
    out, (z1, z2), mu, logvar = samples_and_gaussians(method, seed)
    return out, nt_xent(z1, z2, method.cfg["temperature"]), mu, logvar


def dare_contrastive_reference(z1, z2, t):
    """The report's L_con written out: −mean_i log(e^{s_ii/τ} / Σ_{j≠i} e^{s_ij/τ})."""
    s = F.normalize(z1, dim=1) @ F.normalize(z2, dim=1).T / t
    n = len(s)
    return -sum(math.log(math.exp(s[i, i]) / sum(math.exp(s[i, j]) for j in range(n) if j != i))
                for i in range(n)) / n


def test_superinfo_is_nt_xent_plus_weighted_kl_bounds():
    method = tiny("superinfo", lambda_a=0.3, lambda_b=0.05)
    out, contrastive, (mu1, mu2), (lv1, lv2) = step_and_reference(method)
    expected = contrastive + 0.3 * gaussian_kl(mu1, lv1, mu2, lv2) + 0.05 * gaussian_kl(mu2, lv2, mu1, lv1)
    assert torch.allclose(out["loss"].detach(), expected, rtol=1e-4)
    plain = tiny("superinfo", lambda_a=0.0, lambda_b=0.0)
    out, contrastive, _, _ = step_and_reference(plain)
    assert torch.allclose(out["loss"].detach(), contrastive, rtol=1e-5)  # λa = λb = 0: InfoNCE alone


@pytest.mark.parametrize("normalize_mean", [False, True])
def test_dare_is_the_reports_one_way_decoupled_loss_plus_the_jsd(normalize_mean):
    method = tiny("dare", lambd=0.9, normalize_mean=normalize_mean)
    out, (z1, z2), (mu1, mu2), (lv1, lv2) = samples_and_gaussians(method)
    if normalize_mean:
        mu1, mu2 = F.normalize(mu1, dim=1), F.normalize(mu2, dim=1)
    contrastive = dare_contrastive_reference(z1.double(), z2.double(), method.cfg["temperature"])
    assert out["contrastive"].item() == pytest.approx(contrastive, rel=1e-4)
    assert out["loss"].item() == pytest.approx(contrastive + 0.9 * gaussian_jsd(mu1, lv1, mu2, lv2).item(), rel=1e-4)
    out["loss"].backward()
    assert method.head.net[-1].weight.grad.abs().sum() > 0 and method.backbone.conv1.weight.grad is not None


def test_dare_symmetric_option_is_nt_xent():
    out, contrastive, _, _ = step_and_reference(tiny("dare", contrastive="nt_xent", lambd=0.0))
    assert out["loss"].item() == pytest.approx(contrastive.item(), rel=1e-5)


def test_gaussian_methods_draw_their_noise_from_the_method_generator():
    method = tiny("dare")
    first, _, _, _ = step_and_reference(method, seed=1)
    again, _, _, _ = step_and_reference(method, seed=1)
    other, _, _, _ = step_and_reference(method, seed=2)
    assert first["loss"].item() == again["loss"].item() != other["loss"].item()

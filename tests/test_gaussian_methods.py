"""DARe and SuperInfo beyond the per-method engine test: the loss is NT-Xent on reparameterised
samples plus the weighted divergence, with noise from the method's own generator."""
import torch
import torch.nn.functional as F

from selfsup.losses import gaussian_jsd, gaussian_kl, nt_xent
from test_non_contrastive_methods import tiny


def step_and_reference(method, seed=3):
    images = torch.Generator().manual_seed(0)
    views = [torch.rand(8, 3, 16, 16, generator=images) for _ in range(2)]
    method.train()
    method.generator.manual_seed(seed)
    out = method.training_step({"views": views}, 0)
    with torch.no_grad():  # the same forward pass, written out, with the noise drawn again from the same seed
        mu, logvar = method.head(method.backbone(torch.cat(views)))
        noise = torch.randn(mu.shape, generator=torch.Generator().manual_seed(seed))
        z1, z2 = (mu + noise * torch.exp(logvar / 2)).chunk(2)
    return out, nt_xent(z1, z2, method.cfg["temperature"]), mu.chunk(2), logvar.chunk(2)


def test_superinfo_is_nt_xent_plus_weighted_kl_bounds():
    method = tiny("superinfo", lambda_a=0.3, lambda_b=0.05)
    out, contrastive, (mu1, mu2), (lv1, lv2) = step_and_reference(method)
    expected = contrastive + 0.3 * gaussian_kl(mu1, lv1, mu2, lv2) + 0.05 * gaussian_kl(mu2, lv2, mu1, lv1)
    assert torch.allclose(out["loss"].detach(), expected, rtol=1e-4)
    plain = tiny("superinfo", lambda_a=0.0, lambda_b=0.0)
    out, contrastive, _, _ = step_and_reference(plain)
    assert torch.allclose(out["loss"].detach(), contrastive, rtol=1e-5)  # λa = λb = 0: InfoNCE alone


def test_dare_adds_the_per_dimension_jsd_of_normalised_means_and_learns_the_variance():
    method = tiny("dare", lambd=0.9)
    out, contrastive, (mu1, mu2), (lv1, lv2) = step_and_reference(method)
    jsd = gaussian_jsd(F.normalize(mu1, dim=1), lv1, F.normalize(mu2, dim=1), lv2) / mu1.shape[1]
    assert torch.allclose(out["loss"].detach(), contrastive + 0.9 * jsd, rtol=1e-4)
    out["loss"].backward()
    assert method.head.net[-1].weight.grad.abs().sum() > 0 and method.backbone.conv1.weight.grad is not None


def test_gaussian_methods_draw_their_noise_from_the_method_generator():
    method = tiny("dare")
    first, _, _, _ = step_and_reference(method, seed=1)
    again, _, _, _ = step_and_reference(method, seed=1)
    other, _, _, _ = step_and_reference(method, seed=2)
    assert first["loss"].item() == again["loss"].item() != other["loss"].item()

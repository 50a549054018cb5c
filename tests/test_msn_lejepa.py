"""MSN and LeJEPA: their losses against second formulas (the official code's steps written out in
NumPy; the Epps-Pulley integral in closed form), two processes against one, and the methods'
views, masking, prototypes and shared SIGReg directions."""
import math

import numpy as np
import pytest
import torch

from selfsup.losses import epps_pulley, lejepa, me_max, msn, sigreg
from support import tiny
from two_processes import run_two_processes


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def official_sinkhorn(q, iterations):
    """The official ``distributed_sinkhorn`` on one process: Q = probabilitiesᵀ, mass 1, then rows
    to 1/K and columns to 1/B in turn, columns scaled back to sum to 1."""
    q = q.T / q.sum()
    k, b = q.shape
    for _ in range(iterations):
        q = q / q.sum(1, keepdims=True) / k
        q = q / q.sum(0, keepdims=True) / b
    return (q * b).T


def msn_reference(anchor, target, tau, sharpen, iterations, weight):
    """MSN's loss as its official code computes it: soft nearest-prototype probabilities, the
    target's raised to 1/T and renormalised, Sinkhorn, repeated for each anchor view, then
    mean Σ −q log p plus the weight times (log K − H(mean p))."""
    probs = softmax(anchor / tau)  # [V, B, K]
    q = softmax(target / tau) ** (1 / sharpen)
    q = q / q.sum(1, keepdims=True)
    if iterations:
        q = official_sinkhorn(q, iterations)
    cross_entropy = np.mean([(-(q * np.log(p)).sum(1)).mean() for p in probs])
    mean = probs.reshape(-1, probs.shape[-1]).mean(0)
    return cross_entropy + weight * (math.log(len(mean)) + (mean * np.log(mean)).sum())


@pytest.mark.parametrize("views,sharpen,iterations,weight", [(1, 0.25, 3, 1.0), (3, 0.25, 0, 1.0),
                                                              (2, 1.0, 3, 0.0), (4, 0.5, 1, 2.0)])
def test_msn_matches_the_official_steps(views, sharpen, iterations, weight):
    generator = torch.Generator().manual_seed(views)
    anchor = torch.rand(views, 6, 5, dtype=torch.float64, generator=generator) * 2 - 1
    target = torch.rand(6, 5, dtype=torch.float64, generator=generator) * 2 - 1
    expected = msn_reference(anchor.numpy(), target.numpy(), 0.1, sharpen, iterations, weight)
    assert msn(anchor, target, 0.1, sharpen, iterations, weight).item() == pytest.approx(expected, rel=1e-9)


def test_me_max_is_zero_for_a_uniform_mean_and_log_k_for_one_shared_prototype():
    assert me_max(torch.eye(4, dtype=torch.float64)).item() == pytest.approx(0.0, abs=1e-12)
    assert me_max(torch.tensor([[0.0, 1.0, 0.0]] * 5)).item() == pytest.approx(math.log(3), rel=1e-6)


def test_msn_gradient_reaches_the_anchors_only():
    anchor = torch.randn(2, 4, 6, dtype=torch.float64, requires_grad=True)
    target = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    msn(anchor, target).backward()
    assert target.grad is None and anchor.grad.abs().sum() > 0
    torch.autograd.gradcheck(lambda a: msn(a, target.detach()), (anchor.detach().requires_grad_(True),))


def _msn_on_shard(rank, world, anchor, target):
    shard = target.shape[0] // world
    mine = anchor[:, rank * shard:(rank + 1) * shard].clone().requires_grad_(True)
    value = msn(mine, target[rank * shard:(rank + 1) * shard], gather=True)
    value.backward()
    return value.detach(), mine.grad / world


def test_msn_on_two_processes_equals_one():
    """Sinkhorn and ME-MAX over the global batch: the mean of the ranks' losses and their
    gradients (averaged as DDP does) are those of one process on the whole batch."""
    generator = torch.Generator().manual_seed(0)
    anchor = torch.randn(3, 8, 5, dtype=torch.float64, generator=generator).requires_grad_(True)
    target = torch.randn(8, 5, dtype=torch.float64, generator=generator)
    expected = msn(anchor, target)
    expected.backward()
    results = run_two_processes(_msn_on_shard, anchor.detach(), target)
    assert torch.stack([results[r][0] for r in (0, 1)]).mean().item() == pytest.approx(expected.item(), rel=1e-9)
    assert torch.allclose(torch.cat([results[r][1] for r in (0, 1)], dim=1), anchor.grad, atol=1e-12)


def epps_pulley_closed_form(x):
    """N ∫_ℝ |φ_N(t) − e^(−t²/2)|² e^(−t²/2) dt in closed form: expanding the square, each term is a
    Gaussian integral: √(2π)/N² Σ_jk e^(−(x_j−x_k)²/2) − 2√π/N Σ_j e^(−x_j²/4) + √(2π/3)."""
    n = len(x)
    pairs = np.exp(-np.subtract.outer(x, x) ** 2 / 2).sum()
    return n * (math.sqrt(2 * math.pi) * pairs / n ** 2 - 2 * math.sqrt(math.pi) * np.exp(-x ** 2 / 4).mean()
                + math.sqrt(2 * math.pi / 3))


@pytest.mark.parametrize("scale", [0.3, 1.0, 2.5])
def test_epps_pulley_matches_its_closed_form(scale):
    x = torch.randn(200, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * scale
    x[:, 2] = x[:, 2].abs()  # a skewed column
    expected = [epps_pulley_closed_form(column) for column in x.numpy().T]
    fine = epps_pulley(x, knots=801, t_max=12.0)
    assert fine.numpy() == pytest.approx(expected, rel=1e-6)
    # the default quadrature (17 points on [0, 3]) is within a few per cent where it matters
    assert epps_pulley(x).numpy() == pytest.approx(expected, rel=0.05, abs=0.05)


def test_epps_pulley_is_small_for_gaussian_samples_and_large_for_collapsed_ones():
    generator = torch.Generator().manual_seed(0)
    gaussian = epps_pulley(torch.randn(1000, 4, generator=generator))  # a test statistic: O(1) under N(0, 1)
    assert gaussian.mean() < 2.0
    assert (epps_pulley(torch.zeros(1000, 1)) > 100 * gaussian.mean()).all()
    assert (epps_pulley(3 * torch.randn(1000, 4, generator=generator)) > 100 * gaussian.mean()).all()


def test_sigreg_is_the_mean_statistic_of_the_projections():
    generator = torch.Generator().manual_seed(2)
    z = torch.randn(64, 5, dtype=torch.float64, generator=generator)
    directions = torch.randn(5, 7, dtype=torch.float64, generator=generator)
    directions = directions / directions.norm(dim=0)
    expected = np.mean([epps_pulley_closed_form(column) for column in (z @ directions).numpy().T])
    assert sigreg(z, directions, knots=801, t_max=12.0).item() == pytest.approx(expected, rel=1e-6)


def test_lejepa_weighs_the_prediction_of_the_global_mean_against_sigreg():
    generator = torch.Generator().manual_seed(3)
    z = torch.randn(4, 16, 3, dtype=torch.float64, generator=generator)
    directions = torch.eye(3, dtype=torch.float64)
    centre = z[:2].mean(0)
    prediction = np.mean([((centre - view) ** 2).mean().item() for view in z])
    regulariser = np.mean([sigreg(view, directions).item() for view in z])
    assert lejepa(z, 2, directions, 0.2).item() == pytest.approx(0.8 * prediction + 0.2 * regulariser, rel=1e-9)
    same = z[:1].expand(4, -1, -1)
    assert lejepa(same, 2, directions, 0.0).item() == pytest.approx(0.0, abs=1e-12)


def _lejepa_on_shard(rank, world, z, directions):
    shard = z.shape[1] // world
    mine = z[:, rank * shard:(rank + 1) * shard].clone().requires_grad_(True)
    value = lejepa(mine, 2, directions, 0.5, gather=True)
    value.backward()
    return value.detach(), mine.grad / world


def test_lejepa_on_two_processes_equals_one():
    """SIGReg tests the global batch; the prediction term is a per-image mean (averaged by DDP)."""
    generator = torch.Generator().manual_seed(4)
    z = torch.randn(3, 8, 4, dtype=torch.float64, generator=generator).requires_grad_(True)
    directions = torch.randn(4, 6, dtype=torch.float64, generator=generator)
    expected = lejepa(z, 2, directions, 0.5)
    expected.backward()
    results = run_two_processes(_lejepa_on_shard, z.detach(), directions)
    assert torch.stack([results[r][0] for r in (0, 1)]).mean().item() == pytest.approx(expected.item(), rel=1e-9)
    assert torch.allclose(torch.cat([results[r][1] for r in (0, 1)], dim=1), z.grad, atol=1e-12)


def test_msn_drops_patches_of_the_anchor_only_and_trains_the_prototypes():
    method = tiny("msn", prototypes=16, proj_hidden_dim=16, proj_dim=8, focal_views=2, mask_ratio=0.5)
    assert [(spec.count, spec.size) for spec in method.views] == [(2, None), (2, 8)]
    seen = []
    for backbone in (method.backbone, method.target_backbone):
        backbone.vit.blocks.register_forward_hook(lambda module, args, out: seen.append(out.shape[1]))
    views = [torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16), torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)]
    out = method.training_step({"views": views}, 0)
    patches = method.backbone.patch_grid(16, 16)
    # anchor (half its patches and [CLS]), focal views (all of theirs: 2 x 2), target (all of them)
    assert seen == [1 + patches[0] * patches[1] // 2, 1 + 4, 1 + patches[0] * patches[1]]
    out["loss"].backward()
    assert method.prototypes.grad.abs().sum() > 0
    assert all(p.grad is None for p in method.target_backbone.parameters())
    assert getattr(method.prototypes, "no_weight_decay", False)


def test_lejepa_draws_the_same_directions_on_every_rank_and_new_ones_each_step():
    method = tiny("lejepa", proj_hidden_dim=16, proj_dim=8, directions=4, local_views=0)
    views = [torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)]
    torch.manual_seed(0)
    first = method.training_step({"views": views}, 5)["loss"]
    method.generator = torch.Generator().manual_seed(123)  # another rank's generator: no effect
    assert method.training_step({"views": views}, 5)["loss"].item() == pytest.approx(first.item(), rel=1e-6)
    assert method.training_step({"views": views}, 6)["loss"].item() != pytest.approx(first.item(), rel=1e-6)

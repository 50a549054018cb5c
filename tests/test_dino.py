"""DINO: its loss and centre against a second formula (and two processes against one), its
head, and the method's gradient surgery and teacher-temperature schedule."""
import math

import numpy as np
import pytest
import torch

from selfsup.losses import dino, dino_center
from selfsup.methods.masking import varying_patch_mask
from support import perturb, replay, tiny
from two_processes import run_two_processes


def dino_reference(student, teacher, center, tau_s, tau_t):
    """DINO's Algorithm 1 with explicit sums: H(t, s) = −Σ_k p_t(k) log p_s(k), over every
    (teacher view i, student view v ≠ i), averaged over the batch and the pairs."""
    def softmax(x):
        e = np.exp(x - x.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    total, pairs = 0.0, 0
    for i, t in enumerate(teacher):
        p_t = softmax((t - center) / tau_t)
        for v, s in enumerate(student):
            if v == i:
                continue
            p_s = softmax(s / tau_s)
            total += np.mean([-sum(p_t[b, k] * math.log(p_s[b, k]) for k in range(t.shape[1])) for b in range(t.shape[0])])
            pairs += 1
    return total / pairs


@pytest.mark.parametrize("views,tau_s,tau_t", [(2, 0.1, 0.04), (4, 0.1, 0.07), (3, 0.5, 0.2)])
def test_dino_matches_reference(views, tau_s, tau_t):
    generator = torch.Generator().manual_seed(views)
    student = [torch.randn(5, 7, dtype=torch.float64, generator=generator) for _ in range(views)]
    teacher = [torch.randn(5, 7, dtype=torch.float64, generator=generator) for _ in range(2)]
    center = torch.randn(7, dtype=torch.float64, generator=generator)
    expected = dino_reference([s.numpy() for s in student], [t.numpy() for t in teacher], center.numpy(), tau_s, tau_t)
    assert dino(student, teacher, center, tau_s, tau_t).item() == pytest.approx(expected, rel=1e-9)


def test_dino_gradient_reaches_the_student_only():
    student = [torch.randn(4, 6, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    teacher = [torch.randn(4, 6, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    dino(student, teacher, torch.zeros(6, dtype=torch.float64)).backward()
    assert all(t.grad is None for t in teacher) and all(s.grad.abs().sum() > 0 for s in student)
    torch.autograd.gradcheck(lambda *s: dino(list(s), [t.detach() for t in teacher], torch.zeros(6, dtype=torch.float64)),
                             tuple(s.detach().requires_grad_(True) for s in student))


def test_a_uniform_teacher_gives_the_students_mean_log_partition():
    """Centring that removes every difference between outputs leaves the target uniform: the
    loss is then log K − mean of log-softmax's mean, a closed form."""
    student = [torch.randn(3, 5, dtype=torch.float64) for _ in range(2)]
    teacher = [torch.ones(3, 5, dtype=torch.float64)] * 2
    expected = np.mean([-(torch.log_softmax(s / 0.1, 1).mean(1)).mean().item() for s in student])
    assert dino(student, teacher, torch.zeros(5, dtype=torch.float64)).item() == pytest.approx(expected, rel=1e-9)


def test_center_is_an_ema_of_the_teachers_mean_score():
    # column means over both crops' rows 2 and 3 (the mean of every score, 2.5, would give 9.25 twice)
    teacher = [torch.tensor([[1.0, 3.0], [3.0, 9.0]]), torch.tensor([[0.0, 0.0], [4.0, 0.0]])]
    assert torch.allclose(dino_center(teacher, torch.tensor([10.0, 10.0]), 0.9), torch.tensor([9.2, 9.3]))


def test_center_counts_half_precision_scores_in_float32():
    # 257 rows: bfloat16 holds neither the count nor the sum exactly (both round to 256)
    teacher = [torch.zeros(255, 1, dtype=torch.bfloat16), torch.ones(2, 1, dtype=torch.bfloat16)]
    center = dino_center(teacher, torch.zeros(1), 0.9)
    assert center.dtype == torch.float32 and center.item() == pytest.approx(0.1 * 2 / 257, rel=1e-6)


def _center_on_shard(rank, world, teacher, center):
    shard = teacher[0].shape[0] // world
    return dino_center([t[rank * shard:(rank + 1) * shard] for t in teacher], center, 0.9)


def test_center_on_two_processes_equals_one():
    teacher = [torch.randn(8, 5, dtype=torch.float64) for _ in range(2)]
    center = torch.randn(5, dtype=torch.float64)
    expected = dino_center(teacher, center, 0.9)
    for value in run_two_processes(_center_on_shard, teacher, center).values():
        assert torch.allclose(value, expected, atol=1e-12)


def tiny_dino(**params):
    return tiny("dino", out_dim=32, proj_hidden_dim=16, bottleneck_dim=8, **params)


def test_head_output_does_not_depend_on_the_last_layers_row_norms():
    method = tiny_dino()
    x = torch.randn(4, method.feature_dim)
    before = method.head(x)
    with torch.no_grad():
        method.head.last_layer.weight.mul_(torch.rand(32, 1) * 5 + 0.1)
    assert torch.allclose(method.head(x), before, atol=1e-5)


def test_trained_last_layer_norms_start_at_one_scale_the_rows_and_wait_out_the_first_epoch():
    fixed, trained = tiny_dino(), tiny_dino(norm_last_layer=False)
    trained.head.load_state_dict(fixed.head.state_dict(), strict=False)
    x = torch.randn(4, fixed.feature_dim)
    assert torch.equal(trained.head.last_layer.norm, torch.ones(32, 1))
    assert torch.allclose(trained.head(x), fixed.head(x), atol=1e-6)  # norms of 1: the fixed head's output
    with torch.no_grad():
        trained.head.last_layer.norm.mul_(3.0)
    assert torch.allclose(trained.head(x), 3 * fixed.head(x), atol=1e-5)
    trained.head(x).sum().backward()
    assert trained.head.last_layer.norm.grad is not None
    trained.on_before_optimizer_step(epoch=0, step=0)
    assert trained.head.last_layer.norm.grad is None and trained.head.last_layer.weight.grad is None


def test_head_mlp_starts_from_the_code_s_small_normal_weights_and_zero_biases():
    head = tiny("dino", out_dim=32, proj_hidden_dim=512, bottleneck_dim=256).head
    for layer in head.mlp[::2]:
        assert layer.weight.std().item() == pytest.approx(0.02, rel=0.1) and not layer.bias.any()


def test_the_teacher_never_drops_paths_where_the_student_does():
    method = tiny("dino", out_dim=32, proj_hidden_dim=16, bottleneck_dim=8, backbone={"drop_path": 0.3})
    student = [m.drop_prob for m in method.backbone.modules() if hasattr(m, "drop_prob")]
    assert student and max(student) == pytest.approx(0.3)
    assert all(m.drop_prob == 0 for m in method.teacher_backbone.modules() if hasattr(m, "drop_prob"))


def test_last_layer_gradient_dropped_in_the_first_epoch_and_every_gradient_clipped():
    method = tiny_dino(clip_grad=0.5)
    for p in method.parameters():
        if p.requires_grad:
            p.grad = torch.full_like(p, 10.0)
    method.on_before_optimizer_step(epoch=0, step=0)
    assert method.head.last_layer.weight.grad is None
    norms = [p.grad.norm().item() for p in method.parameters() if p.grad is not None]
    assert norms and max(norms) == pytest.approx(0.5, rel=1e-4)
    method.head.last_layer.weight.grad = torch.ones_like(method.head.last_layer.weight)
    method.on_before_optimizer_step(epoch=1, step=0)
    assert method.head.last_layer.weight.grad is not None


def test_teacher_temperature_warms_up_linearly_then_stays():
    method = tiny_dino(teacher_temperature_warmup_epochs=4)
    temperatures = []
    for epoch in (0, 2, 4, 9):
        method.on_epoch_start(epoch, None)
        temperatures.append(method.teacher_temperature())
    # the code's np.linspace(0.04, 0.07, 4) for epochs 0-3, then 0.07
    assert temperatures == pytest.approx([0.04, 0.06, 0.07, 0.07])


def test_a_dino_step_matches_every_student_view_to_each_other_global_teacher_view():
    # the paper's Algorithm 1 with multi-crop: the teacher (centred, sharpened at the epoch's τ_t)
    # sees the 2 global crops, the student every crop (one backbone pass per resolution); the
    # centre then moves towards the teacher's batch mean
    method = tiny_dino(local_crops=2, teacher_temperature_warmup_epochs=4)
    perturb(method.teacher_backbone, method.teacher_head)
    method.center.copy_(torch.randn(32) * 0.3)
    method.on_epoch_start(2, None)  # τ_t 0.06, two thirds of the way through the warm-up (0.04 at 0, 0.07 at 3)
    torch.manual_seed(1)
    crops = [torch.randn(4, 3, 16, 16) for _ in range(2)] + [torch.randn(4, 3, 8, 8) for _ in range(2)]
    center = method.center.clone()
    out = method.training_step({"views": crops}, 0)
    with torch.no_grad():
        student = [*method.head(method.backbone(torch.cat(crops[:2]))).chunk(2),
                   *method.head(method.backbone(torch.cat(crops[2:]))).chunk(2)]
        teacher = method.teacher_head(method.teacher_backbone(torch.cat(crops[:2]))).chunk(2)
    p_t = [np.exp(((t - center) / 0.06).double().numpy()) for t in teacher]
    p_t = [p / p.sum(1, keepdims=True) for p in p_t]
    log_p_s = [(s / 0.1).double().numpy() for s in student]
    log_p_s = [x - np.log(np.exp(x).sum(1, keepdims=True)) for x in log_p_s]
    terms = [-(p_t[t] * log_p_s[v]).sum(1).mean() for t in range(2) for v in range(4) if v != t]
    assert len(terms) == 6 and out["teacher_temperature"] == pytest.approx(0.06)
    assert out["loss"].item() == pytest.approx(np.mean(terms), rel=1e-5)
    expected_center = 0.9 * center + 0.1 * torch.cat(teacher).mean(0)
    assert torch.allclose(method.center, expected_center, atol=1e-6)


def ibot_patch_reference(student, teacher, masks, center, tau_s, tau_t):
    def softmax(x):
        e = np.exp(x - x.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    views = []
    for s, t, m in zip(student, teacher, masks):
        p_t, p_s = softmax((t - center) / tau_t), softmax(s / tau_s)
        per_image = []
        for b in range(s.shape[0]):
            masked = [n for n in range(s.shape[1]) if m[b, n]]
            per_image.append(np.mean([-(p_t[b, n] * np.log(p_s[b, n])).sum() for n in masked]) if masked else 0.0)
        views.append(np.mean(per_image))
    return np.mean(views)


def test_ibot_patch_term_matches_reference():
    from selfsup.losses import ibot_patch

    generator = torch.Generator().manual_seed(4)
    student = [torch.randn(3, 5, 6, dtype=torch.float64, generator=generator) for _ in range(2)]
    teacher = [torch.randn(3, 5, 6, dtype=torch.float64, generator=generator) for _ in range(2)]
    masks = [torch.rand(3, 5, generator=generator) < 0.5 for _ in range(2)]
    masks[0][1] = False  # an image without masked patches adds 0
    center = torch.randn(6, dtype=torch.float64, generator=generator)
    expected = ibot_patch_reference([s.numpy() for s in student], [t.numpy() for t in teacher],
                                    [m.numpy() for m in masks], center.numpy(), 0.1, 0.04)
    assert ibot_patch(student, teacher, masks, center, 0.1, 0.04).item() == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("shape", ["block", "random"])
def test_varying_masks_hide_a_drawn_share_of_a_drawn_half_of_the_images(shape):
    from selfsup.methods.masking import varying_patch_mask

    exact = varying_patch_mask(200, 4, 5, (0.5, 0.5), 1.0, torch.Generator().manual_seed(0), shape=shape)
    assert exact.sum(1).max() == 10 and exact.sum(1).float().mean() > 9  # blocks stop short rather than overshoot
    assert not varying_patch_mask(8, 4, 5, (0.1, 0.5), 0.0, torch.Generator().manual_seed(0), shape=shape).any()
    some = varying_patch_mask(400, 4, 5, (0.1, 0.5), 0.5, torch.Generator().manual_seed(0), shape=shape)
    counts = some.sum(1)
    assert 0.4 < (counts > 0).float().mean() < 0.6 and counts.max() <= 10
    assert counts[counts > 0].min() >= (2 if shape == "random" else 1)  # round(0.1 · 20); a block mask may stop short
    assert torch.equal(some, varying_patch_mask(400, 4, 5, (0.1, 0.5), 0.5, torch.Generator().manual_seed(0),
                                                shape=shape))


def hidden_with_a_hidden_neighbour(mask: torch.Tensor, rows: int, cols: int) -> float:
    grid = torch.nn.functional.pad(mask.view(-1, rows, cols).float(), (1, 1, 1, 1))
    neighbours = grid[:, :-2, 1:-1] + grid[:, 2:, 1:-1] + grid[:, 1:-1, :-2] + grid[:, 1:-1, 2:]
    inner = grid[:, 1:-1, 1:-1]
    return (((neighbours > 0) & (inner > 0)).sum() / inner.sum()).item()


def test_block_masks_hide_rectangles_where_random_masks_scatter():
    """iBOT's masks are BEiT's blocks: nearly every hidden patch touches another hidden one
    (0.996 measured on a 7×7 grid), where uniformly drawn patches at the same shares do so less
    often (0.72)."""
    from selfsup.methods.masking import varying_patch_mask

    block = varying_patch_mask(512, 7, 7, (0.1, 0.5), 1.0, torch.Generator().manual_seed(0), shape="block")
    scattered = varying_patch_mask(512, 7, 7, (0.1, 0.5), 1.0, torch.Generator().manual_seed(0), shape="random")
    assert hidden_with_a_hidden_neighbour(block, 7, 7) > 0.98 > 0.8 > hidden_with_a_hidden_neighbour(scattered, 7, 7)
    assert abs(block.float().mean() - scattered.float().mean()) < 0.03


def test_ibot_trains_the_mask_token_and_keeps_a_patch_centre():
    method = tiny("ibot", out_dim=32, proj_hidden_dim=16, bottleneck_dim=8, local_crops=0, mask_probability=1.0)
    perturb(method.teacher_backbone, method.teacher_head)
    views = [torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)]
    out = replay(method, lambda: method.training_step({"views": views}, 0))
    out["loss"].backward()
    assert method.mask_token.grad.abs().sum() > 0
    # each view's masked patches against the teacher's tokens of the same view, unmasked (the masks replayed)
    cfg, (rows, cols) = method.cfg, method.backbone.patch_grid(16, 16)
    masks = [varying_patch_mask(4, rows, cols, cfg["mask_ratio"], 1.0, method.generator, "cpu", cfg["mask_shape"])
             for _ in views]
    with torch.no_grad():
        student = [method.head(method.backbone.tokens(v, mask=m, mask_token=method.mask_token))[:, 1:].numpy()
                   for v, m in zip(views, masks)]
        whole = [method.teacher_head(method.teacher_backbone.tokens(v))[:, 1:].numpy() for v in views]
    expected = ibot_patch_reference(student, whole, [m.numpy() for m in masks], np.zeros(32), 0.1, 0.04)
    assert all(m.any(1).all() for m in masks) and out["loss_patch"].item() == pytest.approx(expected, rel=1e-5)
    with torch.no_grad():  # from zero, each centre moves a tenth of the way to the mean teacher output of its tokens
        teacher = method.teacher_head(method.teacher_backbone.tokens(torch.cat(views)))
    assert torch.allclose(method.patch_center, 0.1 * teacher[:, 1:].mean((0, 1)), atol=1e-6)
    assert torch.allclose(method.center, 0.1 * teacher[:, 0].mean(0), atol=1e-6)

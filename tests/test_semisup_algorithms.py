"""The unlabelled terms of the semi-supervised algorithms on hand-made predictions: FlexMatch's,
FreeMatch's and SoftMatch's thresholds and weights, UDA's sharpening and annealing, MixMatch's
mixing, ReMixMatch's alignment and rotations, each against values worked out by hand; and
the steps of each method (which views, which targets, which terms)."""
import math

import pytest
import torch
import torch.nn.functional as F

from selfsup.losses.semisup import (align_distribution, class_counts, flexmatch_thresholds, freematch_fairness, freematch_thresholds,
                                    sharpen, softmatch_weights, tsa_threshold)
from selfsup.methods.semisup.remixmatch import rotate_quarters
from tests.support import tiny
from two_processes import run_two_processes


def test_sharpen_is_a_tempered_softmax():
    probs = torch.tensor([[0.5, 0.3, 0.2]])
    expected = torch.tensor([[0.25, 0.09, 0.04]]) / 0.38  # p^2 renormalised at T = 0.5
    assert torch.allclose(sharpen(probs, 0.5), expected)
    logits = torch.randn(4, 5)
    assert torch.allclose(sharpen(logits.softmax(1), 0.4), (logits / 0.4).softmax(1), atol=1e-6)


def test_flexmatch_thresholds_by_hand():
    counts = torch.tensor([30, 10, 0])
    # warm-up: the 60 uncounted images outnumber the best class → beta = 0.5, 1/6, 0
    t = flexmatch_thresholds(counts, 60, 0.95)
    assert torch.allclose(t, 0.95 * torch.tensor([0.5 / 1.5, (1 / 6) / (2 - 1 / 6), 0.0]))
    t = flexmatch_thresholds(counts, 60, 0.95, warmup=False)  # beta = 1, 1/3, 0
    assert torch.allclose(t, 0.95 * torch.tensor([1.0, (1 / 3) / (5 / 3), 0.0]))
    assert torch.allclose(flexmatch_thresholds(counts, 0, 0.9, "linear"), 0.9 * torch.tensor([1.0, 1 / 3, 0.0]))
    assert torch.allclose(flexmatch_thresholds(counts, 0, 1.0, "concave"), torch.log2(1 + torch.tensor([1.0, 1 / 3, 0.0])))
    assert torch.equal(flexmatch_thresholds(torch.zeros(3, dtype=torch.long), 100, 0.95), torch.zeros(3))


def test_freematch_thresholds_and_fairness_by_hand():
    t = freematch_thresholds(torch.tensor(0.8), torch.tensor([0.5, 0.25, 0.25]))
    assert torch.allclose(t, torch.tensor([0.8, 0.4, 0.4]))
    strong = torch.tensor([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1]], requires_grad=True)
    mean, hist = torch.tensor([0.5, 0.3, 0.2]), torch.tensor([0.5, 0.25, 0.25])
    a = torch.tensor([1.0, 1.2, 0.8]) / 3.0  # (p / h) normalised
    mean_s = torch.tensor([1.4, 1.3, 0.3]) / 3
    b = mean_s * torch.tensor([1.5, 3.0, 0.0])  # predicted classes 0, 0, 1: histogram 2/3, 1/3, 0 (unpredicted: 0)
    b = b / b.sum()
    loss = freematch_fairness(strong, mean, hist)
    assert math.isclose(float(loss.detach()), float((a * torch.log(b + 1e-12)).sum()), rel_tol=1e-5)
    loss.backward()
    assert strong.grad.abs().sum() > 0
    assert float(freematch_fairness(strong[:0], mean, hist)) == 0.0


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("num_classes", [1, 5])
def test_class_counts_match_bincount(weighted, num_classes):
    """class_counts against torch.bincount of the entries kept; a class of -1 (no label) with
    weight 0 is left out."""
    g = torch.Generator().manual_seed(num_classes)
    classes = torch.randint(-1, num_classes, (50,), generator=g)
    kept = (classes >= 0) & (torch.rand(50, generator=g) < 0.6 if weighted else True)
    expected = torch.bincount(classes[kept], minlength=num_classes).float()
    assert torch.equal(class_counts(classes, num_classes, kept), expected)
    assert torch.equal(class_counts(classes.clamp_min(0), num_classes), torch.bincount(classes.clamp_min(0),
                                                                                     minlength=num_classes).float())


def test_freematch_fairness_weights_select_rows():
    """The fairness term with row weights equals the term on the selected rows alone, in value and
    gradient; with no row selected it is 0 with finite (zero) gradients."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(12, 4, generator=g, requires_grad=True)
    mean, hist = torch.tensor([0.4, 0.3, 0.2, 0.1]), torch.tensor([0.25, 0.25, 0.3, 0.2])
    selected = torch.rand(12, generator=g) < 0.5
    weighted = freematch_fairness(logits.softmax(1), mean, hist, selected.float())
    (grad_weighted,) = torch.autograd.grad(weighted, logits)
    alone = freematch_fairness(logits.softmax(1)[selected], mean, hist)
    (grad_alone,) = torch.autograd.grad(alone, logits)
    assert torch.allclose(weighted, alone, atol=1e-6) and torch.allclose(grad_weighted, grad_alone, atol=1e-6)
    assert grad_alone[~selected].abs().sum() == 0 < grad_alone[selected].abs().sum()
    none = freematch_fairness(logits.softmax(1), mean, hist, torch.zeros(12))
    (grad_none,) = torch.autograd.grad(none, logits)
    assert float(none) == 0.0 and torch.equal(grad_none, torch.zeros_like(grad_none))


def test_softmatch_weights_by_hand():
    confidence = torch.tensor([0.9, 0.5, 0.3])
    w = softmatch_weights(confidence, torch.tensor(0.6), torch.tensor(0.04))
    # above the mean: 1; below: exp(-d^2 / (2 * 0.04 / 4))
    assert torch.allclose(w, torch.tensor([1.0, math.exp(-0.01 / 0.02), math.exp(-0.09 / 0.02)]))


def test_align_distribution_by_hand():
    probs = torch.tensor([[0.6, 0.4]])
    out = align_distribution(probs, torch.tensor([0.8, 0.2]), eps=0.0)  # uniform target: divide by the mean
    assert torch.allclose(out, torch.tensor([[0.75 / 2.75, 2.0 / 2.75]]))
    assert torch.allclose(align_distribution(probs, torch.tensor([0.5, 0.5]), torch.tensor([0.5, 0.5])), probs)


@pytest.mark.parametrize("schedule,progress,expected", [("none", 0.3, 1.0), ("linear", 0.5, 0.5 * 0.9 + 0.1),
                                                        ("exp", 0.5, math.exp(-2.5) * 0.9 + 0.1),
                                                        ("log", 0.5, (1 - math.exp(-2.5)) * 0.9 + 0.1),
                                                        ("linear", 0.0, 0.1)])
def test_tsa_threshold(schedule, progress, expected):
    assert math.isclose(tsa_threshold(progress, schedule, 10), expected)


def test_rotate_quarters_turns_each_image_by_its_own_angle():
    x = torch.arange(2 * 1 * 3 * 3, dtype=torch.float).view(2, 1, 3, 3)
    out = rotate_quarters(x, torch.tensor([0, 3]))
    assert torch.equal(out[0], x[0]) and torch.equal(out[1], torch.rot90(x[1], 3, dims=(1, 2)))


def _logits(rows):
    return torch.log(torch.tensor(rows))


def _rows(*tops):
    """Probabilities over 6 classes: row i puts tops[i] = (class, p) and spreads the rest evenly."""
    probs = torch.empty(len(tops), 6)
    for row, (c, p) in zip(probs, tops):
        row.fill_((1 - p) / 5)
        row[c] = p
    return probs


def test_flexmatch_learns_class_status_from_confident_predictions_only():
    method = tiny("flexmatch")
    pool = method.learnt_class.numel()
    probs = _rows((0, 0.97), (0, 0.9), (1, 0.98))
    weights = method.confidence_weights(probs, torch.tensor([0, 1, 2]))
    assert torch.equal(weights, torch.ones(3))  # nothing counted yet: every threshold is 0
    assert method.learnt_class[:3].tolist() == [0, -1, 1]  # 0.9 < tau: image 1 is not counted
    expected = flexmatch_thresholds(torch.tensor([1, 1, 0, 0, 0, 0]), pool - 2, 0.95)
    assert torch.allclose(method.class_thresholds(), expected) and expected[0] > 0 == expected[2]
    weights = method.confidence_weights(_rows((0, 0.001 + expected[0].item()), (2, 0.5)), torch.tensor([3, 4]))
    assert weights.tolist() == [1.0, 1.0]  # class 2 is not learnt yet: threshold 0
    method.learnt_class.fill_(1)  # every image learnt as class 1: its threshold is tau, the others' 0
    assert method.confidence_weights(_rows((1, 0.94), (0, 0.3)), torch.tensor([0, 1])).tolist() == [0.0, 1.0]


def test_freematch_updates_its_statistics_before_the_mask():
    method = tiny("freematch", ema_p=0.5)
    probs = _rows((0, 0.9), (0, 0.7))
    weights = method.confidence_weights(probs, torch.tensor([0, 1]))
    tau = 0.5 / 6 + 0.5 * 0.8
    class_mean = 0.5 / 6 + 0.5 * probs.mean(0)
    assert math.isclose(float(method.global_threshold), tau, rel_tol=1e-6)
    assert torch.allclose(method.class_mean, class_mean)
    assert torch.allclose(method.class_histogram, 0.5 / 6 + 0.5 * torch.tensor([1.0, 0, 0, 0, 0, 0]))
    assert torch.allclose(method.class_thresholds(), tau * class_mean / class_mean.max())
    assert torch.equal(weights, torch.tensor([1.0, 1.0]))  # both above tau = 0.48
    assert method.confidence_weights(_rows((0, 0.45)), torch.tensor([2])).tolist() == [0.0]


def test_softmatch_weights_follow_the_aligned_confidence():
    method = tiny("softmatch", ema_p=0.5)
    probs = _rows((0, 0.9), (1, 0.5))
    weights = method.confidence_weights(probs, torch.tensor([0, 1]))
    assert torch.allclose(method.prediction_mean, probs.mean(0))  # the first batch's mean
    aligned = align_distribution(probs, method.prediction_mean).max(1).values
    mean = 0.5 / 6 + 0.5 * aligned.mean()
    var = 0.5 * 1.0 + 0.5 * aligned.var()
    assert torch.allclose(weights, softmatch_weights(aligned, mean, var))
    assert 0 < weights.min() < weights.max() == 1.0


STATISTICS = {"flexmatch": {"threshold": 0.6}, "freematch": {"ema_p": 0.5}, "softmatch": {"ema_p": 0.5},
              "remixmatch": {"ema_p": 0.5}}  # the methods that keep statistics over the global batch


def _statistics_on_shard(rank, world, batches):
    """Each of ``STATISTICS``' methods on this rank's shard of each batch of logits: its per-row
    outputs (FixMatch family: the confidence weights; ReMixMatch: the aligned guesses) and its
    buffers after them."""
    results = {}
    for method, params in STATISTICS.items():
        model = tiny(method, **params)
        model.logits = lambda view: view  # ReMixMatch's guess reads the weak view's logits
        outputs = []
        for logits, indices in batches:
            part = slice(rank * len(logits) // world, (rank + 1) * len(logits) // world)
            if method == "remixmatch":
                outputs.append(model.guess({"views": [logits[part]]}))
            else:
                outputs.append(model.confidence_weights(logits[part].softmax(1), indices[part]))
        results[method] = outputs, dict(model.named_buffers())
    return results


@pytest.mark.ddp
def test_running_statistics_over_two_processes_equal_one_process_on_the_global_batch():
    """The statistics are over the global batch: two ranks with half a batch each keep the
    buffers one process keeps on the whole batch, and give each row the same output."""
    g = torch.Generator().manual_seed(0)
    batches = [(3 * torch.randn(8, 6, generator=g), torch.randperm(512, generator=g)[:8]) for _ in range(3)]
    ranks = run_two_processes(_statistics_on_shard, batches)
    for method, (outputs, buffers) in _statistics_on_shard(0, 1, batches).items():
        for b, whole in enumerate(outputs):
            assert torch.allclose(torch.cat([ranks[0][method][0][b], ranks[1][method][0][b]]), whole, atol=1e-6), method
        initial = dict(tiny(method, **STATISTICS[method]).named_buffers())
        assert any(not torch.equal(value, initial[name]) for name, value in buffers.items()), method  # reached them
        for rank in (0, 1):
            for name, value in buffers.items():
                assert torch.allclose(ranks[rank][method][1][name].float(), value.float(), atol=1e-6), (method, rank, name)


def test_uda_trains_the_strong_view_towards_the_sharpened_weak_one():
    method = tiny("uda")
    weak = torch.log(_rows((0, 0.6)))
    assert torch.allclose(method.consistency_targets(weak, torch.tensor([0])), sharpen(weak.softmax(1), 0.4))
    method.cfg["tsa"], method.total_steps = "linear", 100
    logits = torch.log(_rows((0, 0.9), (1, 0.7)))
    labels = torch.tensor([0, 0])
    # at step 0 the threshold is 1/6: the first image (p 0.9) is left out, the mean stays over both
    expected = F.cross_entropy(logits, labels, reduction="none")[1] / 2
    assert torch.allclose(method.supervised_loss(logits, labels, 0), expected)
    method.cfg["tsa"] = "none"
    assert torch.allclose(method.supervised_loss(logits, labels, 0), F.cross_entropy(logits, labels))


def test_soft_target_methods_refuse_class_balancing():
    from selfsup.errors import SelfSupError
    for name in ("mean-teacher", "mixmatch", "remixmatch"):
        with pytest.raises(SelfSupError, match="soft targets"):
            tiny(name, balance="data")


def test_mixmatch_mixes_rows_with_the_larger_weight_first():
    from scipy import stats

    method = tiny("mixmatch")
    method.generator = torch.Generator().manual_seed(0)
    inputs = torch.eye(4)
    mixed, mixed_targets = method.mixup(inputs, inputs.clone())
    assert torch.allclose(mixed.sum(1), torch.ones(4)) and torch.equal(mixed, mixed_targets)  # same weight, partner
    # each row is w of itself and 1 - w of its partner (a row drawn as its own partner stays whole)
    moved = mixed.diagonal() < 1
    weight = mixed.diagonal()[moved]
    assert moved.sum() >= 2 and (0.5 <= weight).all() and torch.allclose(weight, weight[0].expand_as(weight))
    partner = torch.where(moved, (mixed - torch.diag(mixed.diagonal())).argmax(1), torch.arange(4))
    assert sorted(partner.tolist()) == [0, 1, 2, 3]  # partners form a permutation of the batch
    # λ' = max(λ, 1 − λ) with λ ~ Beta(α, α): its mean against the distribution's, over many draws
    draws = [method.mixup(torch.eye(8), torch.eye(8))[0].diagonal().min().item() for _ in range(3000)]
    expected = stats.beta(0.75, 0.75).expect(lambda x: max(x, 1 - x))
    assert abs(sum(draws) / len(draws) - expected) < 0.01


def test_fixmatch_schedule_shape():
    from selfsup.optim import warmup_cosine
    assert warmup_cosine(0, 100, 0, shape="fixmatch") == 1.0
    assert math.isclose(warmup_cosine(50, 100, 0, shape="fixmatch"), math.cos(7 * math.pi / 32))
    assert math.isclose(warmup_cosine(100, 100, 0, shape="fixmatch"), math.cos(7 * math.pi / 16))  # 0.195
    assert math.isclose(warmup_cosine(100, 100, 0, final_ratio=0.1), 0.1)  # the default shape


def test_weak_shift_moves_each_image_by_whole_pixels():
    from selfsup.data.augment import ShiftConfig, random_shift
    x = torch.rand(16, 1, 8, 8)
    out = random_shift(x, ShiftConfig(translate=0.25, flip_p=0.0), 8, torch.Generator().manual_seed(0))
    shifts = set()
    for image, moved in zip(x[:, 0], out[:, 0]):
        found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                 if torch.allclose(moved[2:6, 2:6], image[2 + dy:6 + dy, 2 + dx:6 + dx], atol=1e-5)]
        assert len(found) == 1  # an exact shift of at most 2 pixels (a quarter of 8) each way
        shifts.add(found[0])
    assert len(shifts) > 3
    flipped = random_shift(x, ShiftConfig(translate=0.0, flip_p=1.0), 8, torch.Generator().manual_seed(0))
    assert torch.allclose(flipped, x.flip(-1), atol=1e-5)


def test_wide_resnet_28_2_has_the_papers_shape():
    from selfsup.models.backbones import build_backbone
    net = build_backbone({"name": "wrn-28-2", "width": 64, "small_stem": True}, 3, 32)
    # by hand: stem 448, groups 70,400 + 280,000 + 1,117,056 (3x3 convs with biases, 1x1 shortcuts where
    # the width changes, BatchNorm before each block but the first of groups 2 and 3), last BatchNorm 256
    assert sum(p.numel() for p in net.parameters()) == 1_468_160
    x = torch.randn(2, 3, 32, 32)
    assert net(x).shape == (2, 128) and net.feature_dim == 128
    assert [t.shape[1] for t in net.forward_stages(x)] == net.stage_dims == [16, 32, 64, 128]
    assert torch.allclose(net.forward_stages(x)[-1], net(x))
    bn = next(m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert bn.momentum == 0.001 and bn.eps == 0.001
    assert build_backbone({"name": "wrn-28-8", "width": 64, "small_stem": True}, 3, 32).feature_dim == 512

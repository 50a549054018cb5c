"""The series representation methods beside CPC: TS2Vec's encoder, crops and hierarchical
loss against an independent reference written with loops."""
import math

import pytest
import torch

from selfsup.losses.temporal import hierarchical_contrastive, instance_contrastive, temporal_contrastive
from selfsup.data.series import windows
from selfsup.models.dilated_conv import DilatedConvEncoder


def _reference_pairs(groups):
    """Mean cross-entropy of each member's partner among the others, group by group, by loops:
    groups is a list of lists of 2N vectors, member i paired with member i + N (and back)."""
    losses = []
    for members in groups:
        n = len(members) // 2
        for i, anchor in enumerate(members):
            partner = (i + n) % (2 * n)
            others = [j for j in range(2 * n) if j != i]
            scores = torch.stack([anchor @ members[j] for j in others])
            losses.append(-(scores[others.index(partner)] - torch.logsumexp(scores, 0)))
    return torch.stack(losses).mean()


def _reference_hierarchical(z1, z2, alpha, temporal_unit):
    """TS2Vec's loss by loops: at pooling level d = 0, 1, … (steps halved by a max over pairs,
    an odd last step dropped, until one step is left) α·instance (over the series, when there
    are several) + (1 − α)·temporal (over the steps, when there are several and d ≥
    temporal_unit), averaged over every level."""
    total, levels = 0.0, 0
    while True:
        b, t, _ = z1.shape
        if b > 1:
            total += alpha * _reference_pairs([[*z1[:, s], *z2[:, s]] for s in range(t)])
        if t > 1 and levels >= temporal_unit:
            total += (1 - alpha) * _reference_pairs([[*z1[i], *z2[i]] for i in range(b)])
        levels += 1
        if t == 1:
            return total / levels
        pool = lambda z: torch.stack([z[:, 2 * k:2 * k + 2].amax(1) for k in range(t // 2)], 1)
        z1, z2 = pool(z1), pool(z2)


@pytest.mark.parametrize("alpha,temporal_unit", [(0.5, 0), (0.3, 0), (0.5, 1), (0.3, 1)])
@pytest.mark.parametrize("batch,steps", [(3, 8), (2, 5), (4, 1), (1, 6)])
def test_hierarchical_contrastive_matches_a_loop_reference(batch, steps, alpha, temporal_unit):
    g = torch.Generator().manual_seed(batch * 10 + steps)
    z1, z2 = torch.randn(batch, steps, 4, generator=g), torch.randn(batch, steps, 4, generator=g)
    expected = _reference_hierarchical(z1, z2, alpha, temporal_unit)
    got = hierarchical_contrastive(z1, z2, alpha, temporal_unit) if (alpha, temporal_unit) != (0.5, 0) \
        else hierarchical_contrastive(z1, z2)  # the defaults: the paper's α 0.5 and temporal unit 0
    assert got.item() == pytest.approx(float(expected), rel=1e-5)


def test_instance_and_temporal_terms_by_hand():
    # two series, one step: each member sees its partner (score 1·1 or 0) and one other
    z1 = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
    z2 = z1.clone()
    # member 0 (z1 series 0): partner z2 series 0 (score 1), others z1 series 1 (0), z2 series 1 (0)
    expected = -(1 - math.log(math.e + 2))
    assert instance_contrastive(z1, z2).item() == pytest.approx(expected)
    assert temporal_contrastive(z1, z2).item() == 0.0  # one step: nothing to contrast over time


def test_crops_share_their_steps_and_the_encoder_keeps_the_length():
    x = torch.arange(2 * 3 * 10, dtype=torch.float).view(2, 3, 10)
    out = windows(x, torch.tensor([0, 4]), 5)
    assert torch.equal(out[0], x[0, :, :5]) and torch.equal(out[1], x[1, :, 4:9])
    encoder = DilatedConvEncoder(3, width=8, depth=3).eval()
    seq = encoder.forward_sequence(x)
    assert seq.shape == (2, 10, 40) and torch.allclose(encoder(x), seq.amax(1))
    masked = encoder.forward_sequence(x, torch.zeros(2, 10, dtype=torch.bool))
    assert torch.allclose(masked, encoder.forward_sequence(torch.zeros_like(x) + float("nan"),
                                                           torch.zeros(2, 10, dtype=torch.bool)).nan_to_num(), atol=1e-6) \
        or torch.allclose(masked[0], masked[1])  # every step masked: the series no longer matters


def test_ts2vec_step_contrasts_the_same_steps_of_both_crops(monkeypatch):
    import selfsup.methods.ts2vec as module
    from tests.support import tiny
    seen = {}
    monkeypatch.setattr(module, "hierarchical_contrastive",
                        lambda a, b, alpha, unit: seen.update(a=a, b=b, settings=(alpha, unit)) or a.sum())
    method = tiny("ts2vec", alpha=0.3, temporal_unit=1)
    method.masked_encoding = lambda x: x.transpose(1, 2)  # each step "encoded" as its own values
    x = torch.arange(4 * 1 * 32, dtype=torch.float).view(4, 1, 32)
    for step in range(20):
        out = method.training_step({"views": [x]}, step)
        assert torch.equal(seen["a"], seen["b"]) and 4 <= seen["a"].shape[1] <= 32 and seen["settings"] == (0.3, 1)
        assert out["loss"] == seen["a"].sum() and out["crop_length"] == seen["a"].shape[1]


def test_t_loss_by_hand():
    from selfsup.losses.temporal import t_loss
    anchor = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    positive = torch.tensor([[2.0, 0.0], [0.0, 1.0]])  # a·p = 2, 2
    negatives = torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[-1.0, 0.0], [0.0, -1.0]]])  # a·n: (1, 0), (-1, -2)
    sig = lambda v: 1 / (1 + math.exp(-v))
    attract = -math.log(sig(2))
    repel = (-math.log(sig(-1)) - math.log(sig(0))) / 2 + (-math.log(sig(1)) - math.log(sig(2))) / 2
    assert t_loss(anchor, positive, negatives).item() == pytest.approx(attract + repel / 2, rel=1e-6)
    assert t_loss(anchor, positive, negatives, 0.0).item() == pytest.approx(attract, rel=1e-6)


def test_causal_encoder_outputs_do_not_see_the_future():
    from selfsup.models.dilated_conv import CausalConvEncoder
    encoder = CausalConvEncoder(2, width=6, depth=4).eval()
    x = torch.randn(3, 2, 40, generator=torch.Generator().manual_seed(0))
    changed = x.clone()
    changed[..., 25:] += 5.0
    a, b = encoder.forward_sequence(x), encoder.forward_sequence(changed)
    assert torch.allclose(a[:, :25], b[:, :25], atol=1e-6) and not torch.allclose(a[:, 25:], b[:, 25:])
    assert encoder(x).shape == (3, 48) and [t.shape[1] for t in encoder.forward_stages(x)] == encoder.stage_dims


def test_t_loss_positive_lies_inside_its_anchor(monkeypatch):
    import selfsup.methods.t_loss as module
    from tests.support import tiny
    method = tiny("t-loss")
    x = torch.arange(4 * 32, dtype=torch.float).view(4, 1, 32)
    seen = {}

    class Recorder(torch.nn.Module):
        def forward(self, w):
            seen.setdefault("windows", []).append(w)
            return w.amax(2).expand(-1, 3)

    method.backbone = Recorder()
    monkeypatch.setattr(module, "t_loss", lambda a, p, n, penalty: seen.update(args=(a, p, n, penalty)) or a.sum())
    for step in range(20):
        seen.clear()
        out = method.training_step({"views": [x]}, step)
        anchor, positive, negatives = seen["windows"]
        assert positive.shape[-1] <= anchor.shape[-1] and negatives.shape == (10 * 4, 1, positive.shape[-1])
        # the loss sees the encodings of those windows, the negatives as [K, B, D] in drawn order
        a, p, n, penalty = seen["args"]
        assert torch.equal(a, anchor.amax(2).expand(-1, 3)) and torch.equal(p, positive.amax(2).expand(-1, 3))
        assert torch.equal(n, negatives.amax(2).expand(-1, 3).reshape(10, 4, 3))
        assert penalty == method.cfg["negative_penalty"] and out["loss"] == a.sum()
        for a, p in zip(anchor[:, 0], positive[:, 0]):  # each positive's steps are steps of its anchor
            assert set(p.tolist()) <= set(a.tolist())


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dilation,length", [(1, 9), (4, 9), (8, 9), (9, 9), (32, 9)])
def test_dilated_conv_shortcut_equals_the_padded_convolution(causal, dilation, length):
    from selfsup.models.dilated_conv import dilated_conv
    conv = torch.nn.Conv1d(2, 3, 3, dilation=dilation)
    x = torch.randn(2, 2, length, generator=torch.Generator().manual_seed(dilation))
    padded = torch.nn.functional.pad(x, (2 * dilation, 0) if causal else (dilation, dilation))
    assert torch.allclose(dilated_conv(conv, x, causal), conv(padded), atol=1e-6)


def test_ts_tcc_strong_view_permutes_whole_segments_of_every_channel():
    from selfsup.methods.ts_tcc import permute_segments
    x = torch.arange(3 * 2 * 20, dtype=torch.float).view(3, 2, 20)
    assert torch.equal(permute_segments(x, 2, torch.Generator().manual_seed(0)), x)  # one segment: as it was
    out = permute_segments(x, 8, torch.Generator().manual_seed(1))
    moved = False
    for before, after in zip(x, out):
        order = after[0] - before[0, 0]  # the step each position now holds
        assert sorted(order.tolist()) == list(range(20)) and torch.equal(after[1], before[1, order.long()])
        jumps = int((order.diff() != 1).sum())
        assert jumps <= 6  # at most 7 segments: at most 6 places where the steps do not follow on
        moved |= jumps > 0
    assert moved


def test_ts_tcc_temporal_contrast_scores_each_series_against_the_batch():
    from tests.support import tiny
    method = tiny("ts-tcc").eval()
    g = torch.Generator().manual_seed(0)
    source, target = torch.randn(4, 8, method.feature_dim, generator=g), torch.randn(4, 8, method.feature_dim, generator=g)
    loss, context = method.temporal_contrast(source, target, 1)
    expected = 0.0
    for k, predictor in enumerate(method.predictors, start=1):
        prediction = predictor(context)
        for i in range(4):
            scores = torch.stack([target[i, 1 + k] @ prediction[j] for j in range(4)])
            expected -= float(scores[i] - torch.logsumexp(scores, 0))
    assert loss.item() == pytest.approx(expected / (4 * len(method.predictors)), rel=1e-5)
    assert len(method.predictors) == method.timesteps <= 6


def test_ts_tcc_step_contrasts_each_views_context_with_the_other_views_future_and_the_two_contexts():
    # Eldele et al. 2021: weak view scaled, strong view permuted in segments and jittered; each
    # view's context predicts the other view's future steps (temporal contrasting, both ways),
    # and the two contexts' projections are contrasted (NT-Xent, weight λ)
    from selfsup import rng
    from selfsup.losses import nt_xent
    from selfsup.methods.ts_tcc import permute_segments
    from tests.support import replay, tiny

    method = tiny("ts-tcc", lambda_cc=0.7)
    x = torch.randn(6, 1, 32, generator=torch.Generator().manual_seed(0))
    g, cfg = method.generator, method.cfg
    torch.manual_seed(7)  # the transformer's dropout draws from the default generator (seeded by the engine)
    out = replay(method, lambda: method.training_step({"views": [x]}, 0))
    torch.manual_seed(7)
    weak = x * (2 + cfg["scale_sigma"] * rng.randn((6, 1, 32), g))
    strong = permute_segments(x, cfg["max_segments"], g) + cfg["jitter_sigma"] * rng.randn(x.shape, g)
    with torch.no_grad():
        z_weak, z_strong = method.encode(weak), method.encode(strong)
        t = int(rng.integers(0, z_weak.shape[1] - method.timesteps - 1, 1, g))
        weak_to_strong, c_weak = method.temporal_contrast(z_weak, z_strong, t)
        strong_to_weak, c_strong = method.temporal_contrast(z_strong, z_weak, t)
        contextual = nt_xent(method.projector(c_weak), method.projector(c_strong), cfg["temperature"])
    assert out["contextual"].item() == pytest.approx(contextual.item(), rel=1e-5)
    assert out["loss"].item() == pytest.approx((weak_to_strong + strong_to_weak + 0.7 * contextual).item(), rel=1e-5)


def test_ts_tcc_projection_is_sized_from_the_encoder_and_the_transformer_drops_out():
    # the code's projection head: Linear(hidden_dim, final_out_channels // 2), then // 4 (HAR:
    # 100 -> 64 -> 32); its Seq_Transformer's dropout is 0.1 (the paper's)
    from tests.support import tiny

    method = tiny("ts-tcc", backbone={"width": 32})
    assert method.feature_dim == 128 and method.cfg["tc_hidden"] == 100 and method.cfg["tc_dropout"] == 0.1
    linears = [m for m in method.projector if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(100, 64), (64, 32)]
    # as the code: dropout after the attention's output and in the feed-forward, none on the attention weights
    assert all((layer.self_attn.dropout, layer.dropout1.p, layer.dropout.p, layer.dropout2.p) == (0.0, 0.1, 0.1, 0.1)
               for layer in method.context.layers)
    z = torch.randn(4, 5, method.feature_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        method.train()
        assert not torch.allclose(method.summary(z), method.summary(z))  # dropout while training ...
        torch.manual_seed(3)
        first = method.summary(z)
        torch.manual_seed(3)
        assert torch.equal(first, method.summary(z))  # ... drawn from the default generator the engine seeds
        method.eval()
        assert torch.equal(method.summary(z), method.summary(z))  # none in evaluation
    still = tiny("ts-tcc", tc_dropout=0.0).train()
    with torch.no_grad():
        assert torch.equal(still.summary(z[..., :still.feature_dim]), still.summary(z[..., :still.feature_dim]))


def _series_cfg(method: str) -> dict:
    """A tiny run of an image method on the synthetic series, on a 3-block TS2Vec encoder."""
    from selfsup.config import resolve
    from tests.support import tiny_method_cfg

    cfg = tiny_method_cfg(method)
    return resolve(method, flags={**cfg, "dataset": "synthetic-series",
                                  "backbone": {"name": "dilated-conv", "width": 8, "depth": 3}})


@pytest.mark.parametrize("method", ["simclr", "byol", "vicreg"])
def test_image_methods_train_on_series_views_and_resume_exactly(method, tmp_path, monkeypatch):
    from tests.support import assert_same_state, crash_and_resume

    (metrics, _), (a, b) = crash_and_resume(method, tmp_path, monkeypatch, lambda: _series_cfg(method))
    assert metrics["dataset"] == "synthetic-series" and metrics["backbone"] == "dilated-conv"
    assert_same_state(a, b)


def test_a_series_run_makes_every_image_view_with_the_series_pipeline():
    from selfsup.build import build_method
    from selfsup.data.series import SeriesAugmentConfig
    from selfsup.data.views import Normalization, make_views

    cfg = _series_cfg("byol")  # with the facts a run fills in
    cfg["data"].update(channels=1, image_size=32, num_classes=3, mean=[0.0], std=[1.0], modality="series")
    cfg["run"] = {"train_size": 512, "world_size": 1, "batches_per_epoch": 8}
    cfg["params"]["series_augment"]["jitter_sigma"] = 0.5
    method = build_method(cfg)
    views = method.run_views()
    assert [type(v.augment) for v in method.views] != [SeriesAugmentConfig] * 2  # BYOL's two image pipelines ...
    assert [v.augment for v in views] == [SeriesAugmentConfig(crop_scale=[0.8, 1.0], jitter_sigma=0.5)] * 2  # ... become
    x = torch.sin(torch.linspace(0, 3, 32)).expand(4, 1, 32)  # smooth: mild crops and scaling barely move it
    made = method.prepare_batch({"series": x, "index": torch.arange(4)}, lambda s, specs: make_views(
        s, specs, Normalization((0.0,), (1.0,)), torch.Generator().manual_seed(1)))["views"]
    assert [v.shape for v in made] == [x.shape] * 2 and not torch.equal(made[0], made[1])
    assert 0.6 < (made[0] - made[1]).std() < 0.9  # two draws of jitter 0.5 apart: sqrt(2) x 0.5 = 0.71

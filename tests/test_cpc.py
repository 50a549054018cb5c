"""CPC: the patch grid, sampled_info_nce against a loop, causal contexts, the step's loss."""
import math

import pytest
import torch
import torch.nn.functional as F

from selfsup import rng
from selfsup.losses import sampled_info_nce
from selfsup.methods.cpc import GRUContext, MaskedConvContext, PatchGrid
from selfsup.models.backbones import Conv1dEncoder
from support import replay, tiny


def test_patch_grid_matches_slices_of_the_padded_image():
    grid = PatchGrid.for_image(28, None, None)
    assert (grid.size, grid.stride, grid.pad, grid.grid) == (8, 4, 2, 7)  # the paper's 7x7 grid, scaled
    x = torch.randn(2, 3, 28, 28)
    patches = grid.cut(x).reshape(2, 7, 7, 3, 8, 8)
    padded = F.pad(x, (2, 2, 2, 2))
    for b, r, c in [(0, 0, 0), (1, 3, 5), (0, 6, 6)]:
        assert torch.equal(patches[b, r, c], padded[b, :, 4 * r:4 * r + 8, 4 * c:4 * c + 8])


def sampled_reference(pred, target, negatives, t):
    total = 0.0
    for i in range(len(pred)):
        scores = [(pred[i] @ target[i]).item() / t] + [(pred[i] @ target[j]).item() / t for j in negatives if j != i]
        total += -scores[0] + math.log(sum(math.exp(s) for s in scores))
    return total / len(pred)


@pytest.mark.parametrize("n,m,d,t", [(4, 3, 2, 1.0), (10, 6, 5, 0.5), (7, 12, 3, 2.0)])
def test_sampled_info_nce_matches_reference(n, m, d, t):
    torch.manual_seed(n * m)
    pred, target = torch.randn(n, d, dtype=torch.float64), torch.randn(n, d, dtype=torch.float64)
    negatives = torch.randint(n, (m,))
    expected = sampled_reference(pred, target, negatives.tolist(), t)
    assert sampled_info_nce(pred, target, negatives, t).item() == pytest.approx(expected, rel=1e-9)


def test_sampled_info_nce_hand_computed_and_gradients():
    pred, target = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    # prediction 0: positive 2, negative target 1 scores 0; prediction 1: its own target is masked, only the positive
    expected = (-math.log(math.exp(2) / (math.exp(2) + 1)) + 0.0) / 2
    assert sampled_info_nce(pred, target, torch.tensor([1])).item() == pytest.approx(expected, rel=1e-6)
    pred = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    target = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda p, q: sampled_info_nce(p, q, torch.tensor([0, 2, 4, 4])), (pred, target))


@pytest.mark.parametrize("context", [GRUContext(4, 6), MaskedConvContext(4, 6)])
def test_contexts_see_only_the_current_and_earlier_rows(context):
    z = torch.randn(2, 5, 5, 4)
    changed = z.clone()
    changed[:, 3:] += 1.0  # rows 3 and 4 change
    a, b = context(z), context(changed)
    assert a.shape == (2, 5, 5, 6)
    assert torch.allclose(a[:, :3], b[:, :3]) and not torch.allclose(a[:, 3:], b[:, 3:])
    first = z.clone()
    first[:, 0, 2] += 1.0  # one patch of the first row: every later row's context sees it, in its column
    assert all(not torch.allclose(context(first)[:, t, 2], a[:, t, 2]) for t in range(5))


def test_cpc_features_are_mean_pooled_patch_encodings_and_the_loss_learns_every_part():
    method = tiny("cpc", prediction_steps=2, num_negatives=32)
    x = torch.randn(3, 3, 16, 16)
    method.eval()
    patches = method.patches.cut(x)
    expected = method.backbone(patches).reshape(3, -1, method.feature_dim).mean(1)
    assert torch.allclose(method.features(x), expected, atol=1e-6)
    assert [layer.shape[1] for layer in method.feature_layers(x)] == method.backbone.stage_dims
    method.train()
    out = method.training_step({"views": [x]}, 0)
    out["loss"].backward()
    assert set(out) == {"loss", "infonce_1", "infonce_2"}
    for part in (method.backbone.conv1, method.context.gru, method.predictors[1]):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())


def test_cpc_scores_each_context_against_the_encoding_k_rows_below_it():
    # Oord et al. 2018, eq. 4 on the patch grid: the context of row r, column j predicts the
    # encoding of row r + k, column j, against the step's sampled negatives (a loop reference)
    method = tiny("cpc", prediction_steps=2, num_negatives=16)
    x = torch.randn(2, 3, 16, 16)
    out = replay(method, lambda: method.training_step({"views": [x]}, 0))
    with torch.no_grad():
        z = method.encode(x)
        c = method.context(z)
        batch, rows, cols, _ = z.shape
        for k, predictor in enumerate(method.predictors, start=1):
            cells = [(b, r, j) for b in range(batch) for r in range(rows - k) for j in range(cols)]
            predictions = torch.stack([predictor(c[b, r, j]) for b, r, j in cells])
            targets = torch.stack([z[b, r + k, j] for b, r, j in cells])
            negatives = rng.randint(0, len(cells), 16, method.generator)
            expected = sampled_reference(predictions, targets, negatives.tolist(), 1.0)
            assert out[f"infonce_{k}"].item() == pytest.approx(expected, rel=1e-5)


def test_series_encodings_and_contexts_do_not_see_the_future():
    # the encoder's receptive field: encoding j covers steps 2j..2j+14; changing steps 60.. of
    # a 96-step series may change encodings 23.. and contexts 23.., never the earlier ones
    torch.manual_seed(0)
    encoder, context = Conv1dEncoder(in_channels=2, width=8), GRUContext(16, 12)
    x = torch.randn(3, 2, 96)
    future = x.clone()
    future[..., 60:] += torch.randn(3, 2, 36)
    with torch.no_grad():
        z, z_future = encoder.forward_sequence(x), encoder.forward_sequence(future)
        c, c_future = context(z.unsqueeze(2)), context(z_future.unsqueeze(2))
    assert z.shape == (3, Conv1dEncoder.output_length(96), 16) == (3, 41, 16)
    assert torch.equal(z[:, :23], z_future[:, :23]) and not torch.allclose(z[:, 23:], z_future[:, 23:])
    assert torch.equal(c[:, :23], c_future[:, :23]) and not torch.allclose(c[:, 23:], c_future[:, 23:])

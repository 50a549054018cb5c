"""Masked image modelling (MAE, SimMIM): the losses against a second formula, patches cut in the
backbone's order, masks of the asked size, the decoder's placement of visible tokens, and the
refusal of a backbone without tokens."""
import numpy as np
import pytest
import torch

from selfsup.errors import SelfSupError
from selfsup.losses import masked_l1, masked_mse
from selfsup.methods.masking import patchify, random_patch_mask
from support import perturb, tiny


def test_masked_mse_matches_reference():
    generator = torch.Generator().manual_seed(0)
    prediction = torch.randn(3, 5, 8, dtype=torch.float64, generator=generator)
    target = torch.randn(3, 5, 8, dtype=torch.float64, generator=generator) * 2 + 1
    mask = torch.rand(3, 5, generator=generator) < 0.6
    p, t, m = prediction.numpy(), target.numpy(), mask.numpy()
    raw = [((p[b, n] - t[b, n]) ** 2).mean() for b in range(3) for n in range(5) if m[b, n]]
    normalised = [((p[b, n] - (t[b, n] - t[b, n].mean()) / np.sqrt(t[b, n].var(ddof=1) + 1e-6)) ** 2).mean()
                  for b in range(3) for n in range(5) if m[b, n]]
    assert masked_mse(prediction, target, mask, normalize_target=False).item() == pytest.approx(np.mean(raw), rel=1e-9)
    assert masked_mse(prediction, target, mask).item() == pytest.approx(np.mean(normalised), rel=1e-9)


def test_masked_l1_is_the_mean_absolute_error_of_the_masked_pixels():
    prediction, target = torch.zeros(1, 3, 2), torch.tensor([[[1.0, 3.0], [5.0, 5.0], [-2.0, 0.0]]])
    mask = torch.tensor([[True, False, True]])
    assert masked_l1(prediction, target, mask).item() == pytest.approx((1 + 3 + 2 + 0) / 4)
    assert masked_l1(prediction, target, torch.zeros_like(mask)).item() == 0  # nothing hidden: no loss, no NaN


def test_patchify_cuts_row_major_patches_of_row_column_channel_values():
    images = torch.arange(2 * 2 * 6 * 6, dtype=torch.float32).reshape(2, 2, 6, 6)
    patches = patchify(images, 3)
    assert patches.shape == (2, 4, 18)
    for b in range(2):
        for n in range(4):
            r, c = divmod(n, 2)
            expected = images[b, :, 3 * r:3 * r + 3, 3 * c:3 * c + 3].permute(1, 2, 0).reshape(-1)
            assert torch.equal(patches[b, n], expected)
    assert patchify(torch.ones(1, 1, 5, 5), 3).shape == (1, 4, 9)  # padded to 6 px, as the ViT pads


def test_random_mask_hides_the_asked_share_and_keep_lists_the_rest():
    generator = torch.Generator().manual_seed(3)
    keep, mask = random_patch_mask(4, 49, 0.75, generator)
    assert keep.shape == (4, 12) and (mask.sum(1) == 37).all()
    for b in range(4):
        assert set(keep[b].tolist()) == set(torch.nonzero(~mask[b]).flatten().tolist())
        assert torch.equal(keep[b], keep[b].sort().values)
    again, _ = random_patch_mask(4, 49, 0.75, torch.Generator().manual_seed(3))
    assert torch.equal(keep, again)
    assert not torch.equal(keep[0], keep[1])  # each image its own mask


def test_decoder_puts_each_visible_token_at_its_patch():
    method = tiny("mae", decoder_depth=1)
    tokens = torch.randn(2, 1 + 5, method.feature_dim)
    keep = torch.tensor([[0, 3, 4, 9, 15], [1, 2, 6, 7, 8]])
    order = torch.tensor([4, 0, 2, 1, 3])
    shuffled = torch.cat([tokens[:, :1], tokens[:, 1:][:, order]], dim=1)
    assert torch.allclose(method.decoder(shuffled, keep[:, order]), method.decoder(tokens, keep), atol=1e-5)


@pytest.mark.parametrize("name", ["mae", "simmim"])
def test_hidden_pixels_do_not_reach_the_prediction_of_visible_patches_only_through_tokens(name):
    """The loss scores hidden patches; what the encoder sees of them is nothing (MAE) or the mask
    token (SimMIM): changing only hidden pixels changes the target, not the prediction."""
    method = tiny(name).eval()
    view = torch.randn(2, 3, 16, 16)
    keep, mask = random_patch_mask(2, 16, 0.5, torch.Generator().manual_seed(0))
    changed = view.clone()
    for b in range(2):
        for n in torch.nonzero(mask[b]).flatten().tolist():
            r, c = divmod(n, 4)
            changed[b, :, 4 * r:4 * r + 4, 4 * c:4 * c + 4] += 3.0
    seen = view.clone()  # the positive control: a visible patch changed does change the prediction
    r, c = divmod(int(torch.nonzero(~mask[0])[0]), 4)
    seen[0, :, 4 * r:4 * r + 4, 4 * c:4 * c + 4] += 3.0
    with torch.no_grad():
        assert torch.allclose(method.reconstruct(changed, keep, mask), method.reconstruct(view, keep, mask), atol=1e-5)
        assert not torch.allclose(method.reconstruct(seen, keep, mask), method.reconstruct(view, keep, mask), atol=1e-3)


def test_a_token_method_refuses_a_resnet():
    with pytest.raises(SelfSupError, match="vision transformer"):
        tiny("mae", backbone={"name": "resnet18", "width": 8})


def test_jepa_masks_are_blocks_and_the_context_leaves_the_targets_out():
    from selfsup.methods.ijepa import multi_block_masks

    context, target = multi_block_masks(6, 7, 7, torch.Generator().manual_seed(1))
    assert target.shape[:2] == (6, 4) and context.shape[0] == 6 and context.shape[1] >= 1
    count = target.shape[2]
    assert 0.15 * 49 * 0.5 <= count <= 0.2 * 49 * 1.6  # about 15-20% of the grid (rounded to whole rows and columns)
    for b in range(6):
        hidden = set(target[b].flatten().tolist())
        assert not hidden & set(context[b].tolist())
        for block in target[b].tolist():
            rows, cols = {i // 7 for i in block}, {i % 7 for i in block}
            assert len(rows) * len(cols) == count  # a full rectangle of patches
            assert max(rows) - min(rows) + 1 == len(rows) and max(cols) - min(cols) + 1 == len(cols)
    again = multi_block_masks(6, 7, 7, torch.Generator().manual_seed(1))
    assert torch.equal(again[0], context) and torch.equal(again[1], target)


def test_jepa_context_block_covers_its_scale_of_the_grid_and_never_all_of_it():
    from selfsup.methods.ijepa import multi_block_masks

    generator = torch.Generator().manual_seed(2)
    # a tiny target: the context is its 11 x 11 block (round(sqrt(0.5 * 256))) less at most the target's patches
    context, target = multi_block_masks(4, 16, 16, generator, targets=1, target_scale=(0.01, 0.01),
                                        context_scale=(0.5, 0.5))
    assert 121 - target.shape[2] <= context.shape[1] <= 121
    for size in (7, 8, 14):  # at the default scales (85-100%): a block one row and one column short of the grid
        context, _ = multi_block_masks(8, size, size, generator)
        for b in range(8):
            rows, cols = {i // size for i in context[b].tolist()}, {i % size for i in context[b].tolist()}
            assert len(rows) <= size - 1 and len(cols) <= size - 1


def test_jepa_targets_come_from_the_target_encoder_and_the_predictor_sees_positions():
    method = tiny("i-jepa", predictor_depth=1)
    view = torch.randn(4, 3, 16, 16)
    before = [p.clone() for p in method.target_backbone.parameters()]
    loss = method.training_step({"views": [view]}, 0)["loss"]
    loss.backward()
    moved = tiny("i-jepa", predictor_depth=1)
    perturb(moved.target_backbone)  # the same step from another target encoder: other targets, another loss
    assert not torch.allclose(moved.training_step({"views": [view]}, 0)["loss"], loss.detach())
    assert all(p.grad is None for p in method.target_backbone.parameters())
    assert method.backbone.vit.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    assert all(torch.equal(a, b) for a, b in zip(before, method.target_backbone.parameters()))
    context = torch.randn(2, 3, method.feature_dim)
    index = torch.tensor([[0, 1, 2], [0, 1, 2]])
    predictor = method.predictor
    assert not torch.allclose(predictor(context, index, torch.tensor([[5], [5]])),
                              predictor(context, index, torch.tensor([[9], [9]])))  # the target's place matters

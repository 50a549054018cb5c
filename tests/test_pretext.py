"""Pretext tasks: the targets they make from the images themselves."""
import itertools

import pytest
import torch
import torch.nn.functional as F

from support import replay, tiny
from selfsup.errors import SelfSupError


def test_rotation_puts_all_four_rotations_of_each_image_in_the_batch():
    method = tiny("rotation")
    seen = []
    method.backbone.forward = lambda x: seen.append(x) or torch.zeros(x.shape[0], method.feature_dim)
    view = torch.arange(2 * 3 * 4 * 4, dtype=torch.float).reshape(2, 3, 4, 4)
    method.training_step({"views": [view]}, 0)
    (rotated,) = seen
    assert rotated.shape == (8, 3, 4, 4)
    for quarter in range(4):  # block q holds every image turned by q quarter turns
        assert torch.equal(rotated[2 * quarter:2 * quarter + 2], torch.rot90(view, quarter, dims=(2, 3)))
    assert torch.equal(torch.rot90(rotated[2:4], -1, dims=(2, 3)), view)


def test_rotation_head_learns_the_rotation_of_real_images():
    method = tiny("rotation")
    optimizer = torch.optim.Adam(method.parameters(), lr=1e-2)
    from selfsup.data.datasets import load_split
    images = load_split("synthetic", "train", options={"synthetic_size": 64}).images.float() / 255
    for step in range(30):
        out = method.training_step({"views": [images]}, step)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
    assert out["accuracy"] > 0.6  # chance: 0.25


def test_tile_grid_cuts_jittered_tiles_at_their_grid_positions():
    from selfsup.data.tiles import TileGrid

    grid = TileGrid.for_image(28)
    assert (grid.tile, grid.gap, grid.jitter) == (7, 2, 1)
    x = torch.randn(3, 2, 28, 28)
    tiles = grid.cut(x, torch.Generator().manual_seed(0))
    assert tiles.shape == (3, 9, 2, 7, 7)
    for b in range(3):
        for k in range(9):  # each tile is the image at its grid position, shifted by at most the jitter
            r0, c0 = grid.margin + (k // 3) * 9, grid.margin + (k % 3) * 9
            matches = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)
                       if torch.equal(tiles[b, k], x[b, :, r0 + dr:r0 + dr + 7, c0 + dc:c0 + dc + 7])]
            assert len(matches) == 1
    with pytest.raises(ValueError, match="need 32 px, more than the 28-px images"):
        TileGrid.for_image(28, tile=8, gap=3, jitter=1)


def test_permutation_set_is_seeded_distinct_and_far_apart():
    from selfsup.methods.jigsaw import maximal_hamming_permutations

    perms = maximal_hamming_permutations(100, seed=0)
    assert perms.shape == (100, 9) and torch.equal(perms, maximal_hamming_permutations(100, seed=0))
    assert all(sorted(p.tolist()) == list(range(9)) for p in perms)
    distances = (perms[:, None, :] != perms[None, :, :]).sum(-1)
    assert (distances + 100 * torch.eye(100, dtype=torch.long)).min() >= 2  # distinct
    assert distances.sum() / (100 * 99) > 8.05  # the paper's Algorithm 1 maximises the average (8 at random)
    assert not torch.equal(perms, maximal_hamming_permutations(100, seed=1))
    assert distances[0, 1] == 9  # the second is as far as can be from the first
    totals = distances[:10, :10].sum(0)  # the 10th: no permutation is farther, summed, from the first 9
    everything = torch.tensor(list(itertools.permutations(range(9))))
    assert (everything[:, None, :] != perms[None, :9]).sum((1, 2)).max() == totals[9]


def recording_backbone(method):
    seen = []
    method.backbone.forward = lambda x: seen.append(x) or torch.zeros(x.shape[0], method.feature_dim)
    return seen


def test_jigsaw_encodes_the_tiles_in_the_order_of_the_drawn_permutation():
    method = tiny("jigsaw", permutations=10)
    seen = recording_backbone(method)
    view = torch.randn(4, 3, 16, 16)
    method.generator.manual_seed(5)
    out = method.training_step({"views": [view]}, 0)
    method.generator.manual_seed(5)  # the same draws again: permutations first, then the jitter
    target = torch.randint(10, (4,), generator=method.generator)
    tiles = method.tiles.cut(view, method.generator)
    encoded = seen[0].view(4, 9, 3, *tiles.shape[-2:])
    for b in range(4):
        assert torch.equal(encoded[b], tiles[b, method.permutation_set[target[b]]])
    with torch.no_grad():  # the classifier names the drawn permutation (the backbone outputs zeros here)
        logits = method.classifier(torch.zeros(4, 9 * method.feature_dim))
    assert out["loss"].item() == pytest.approx(F.cross_entropy(logits, target).item(), rel=1e-5)


def test_relative_patch_pairs_the_centre_with_the_neighbour_its_label_names():
    method = tiny("relative-patch")
    seen = recording_backbone(method)
    view = torch.randn(16, 3, 16, 16)
    method.generator.manual_seed(2)
    out = method.training_step({"views": [view]}, 0)
    method.generator.manual_seed(2)
    target = torch.randint(8, (16,), generator=method.generator)
    tiles = method.tiles.cut(view, method.generator)
    pairs = seen[0].view(16, 2, 3, *tiles.shape[-2:])
    positions = [0, 1, 2, 3, 5, 6, 7, 8]
    for b in range(16):
        assert torch.equal(pairs[b, 0], tiles[b, 4]) and torch.equal(pairs[b, 1], tiles[b, positions[target[b]]])
    with torch.no_grad():  # the classifier names the neighbour's position (the backbone outputs zeros here)
        logits = method.classifier(torch.zeros(16, 2 * method.feature_dim))
    assert out["loss"].item() == pytest.approx(F.cross_entropy(logits, target).item(), rel=1e-5)


def test_denoising_masks_pixels_with_the_method_generator_and_reconstructs_the_clean_image():
    method = tiny("denoising-ae", noise=0.25)
    seen = recording_backbone(method)
    clean = torch.randn(8, 3, 16, 16)
    method.decoder.forward = lambda f: torch.zeros(f.shape[0], 3, 16, 16)
    out = method.training_step({"views": [clean]}, 0)
    hidden = (seen[0] == 0).all(dim=1)  # a masked pixel is 0 in every channel
    assert abs(hidden.float().mean().item() - 0.25) < 0.05
    assert torch.equal(seen[0], clean * ~hidden.unsqueeze(1))
    assert out["loss"].item() == pytest.approx((clean ** 2).mean().item(), rel=1e-6)  # against the clean image


def test_context_encoder_hides_the_centre_and_scores_only_the_hidden_pixels():
    method = tiny("context-encoder")
    clean = torch.randn(2, 3, 16, 16)
    mask = method.mask(clean)
    assert mask.sum() == 2 * 8 * 8 and mask[:, :, 4:12, 4:12].all()
    method.reconstruct = lambda damaged: clean + 1 - mask  # wrong only where visible: no loss
    assert method.training_step({"views": [clean]}, 0)["loss"].item() == pytest.approx(0.0, abs=1e-6)
    method.reconstruct = lambda damaged: clean + 2 * mask  # off by 2 on every hidden pixel
    assert method.training_step({"views": [clean]}, 0)["loss"].item() == pytest.approx(4.0)
    blocks = tiny("context-encoder", region="random").mask(torch.randn(64, 3, 16, 16))
    assert 0.15 < blocks.mean().item() < 0.35


def test_context_encoder_discriminator_learns_only_from_its_own_loss():
    import torch.nn.functional as F

    import copy

    method = tiny("context-encoder", adversarial=0.5)
    reference = copy.deepcopy(method)
    clean = torch.randn(4, 3, 16, 16)
    out = method.training_step({"views": [clean]}, 0)
    out["loss"].backward()
    total = [p.grad.clone() for p in method.discriminator.parameters()]
    # the encoder and decoder learn from reconstruction and fooling alone (the judge's loss does not reach them)
    reference.discriminator.requires_grad_(False)
    mask = reference.mask(clean)
    filled = reference.reconstruct(clean * (1 - mask))
    reconstruction = ((filled - clean) ** 2 * mask).sum() / (mask.sum() * 3)
    fool = F.binary_cross_entropy_with_logits(reference.discriminator(filled * mask), torch.ones(4, 1))
    (0.5 * reconstruction + 0.5 * fool).backward()
    for (name, a), b in zip(method.named_parameters(), reference.parameters()):
        if not name.startswith("discriminator."):
            assert torch.allclose(a.grad, b.grad, atol=1e-6), name
    method.zero_grad()
    mask = method.mask(clean)
    filled = method.reconstruct(clean * (1 - mask))
    ones, zeros = torch.ones(4, 1), torch.zeros(4, 1)
    judge = (F.binary_cross_entropy_with_logits(method.discriminator(clean * mask), ones)
             + F.binary_cross_entropy_with_logits(method.discriminator((filled * mask).detach()), zeros)) / 2
    judge.backward()
    for a, b in zip(total, method.discriminator.parameters()):
        assert torch.allclose(a, b.grad, atol=1e-6)
    assert out["adversarial"] > 0 and method.decoder.project.weight.grad is None  # zeroed, judge does not reach it


def test_count_compares_the_downsampled_image_with_its_four_quadrants():
    import torch.nn.functional as F

    method = tiny("count", count_dim=3, margin=2.0)
    method.count = lambda x: x.mean(dim=(1, 2, 3)).unsqueeze(1).repeat(1, 3)  # a "count": mean intensity, thrice
    x = torch.rand(4, 3, 16, 16)
    out = method.training_step({"views": [x]}, 0)
    whole = F.interpolate(x, size=(8, 8), mode="bilinear", antialias=True, align_corners=False).mean(dim=(1, 2, 3))
    parts = sum(q.mean(dim=(1, 2, 3)) for q in (x[..., :8, :8], x[..., :8, 8:], x[..., 8:, :8], x[..., 8:, 8:]))
    additive = 3 * (whole - parts) ** 2
    contrastive = torch.relu(2.0 - 3 * (whole.roll(1) - parts) ** 2)
    assert torch.allclose(out["additive"], additive.mean(), rtol=1e-5)
    assert torch.allclose(out["loss"], (additive + contrastive).mean(), rtol=1e-5)


def test_exemplar_samples_only_its_seed_images_and_labels_them_by_seed():
    from selfsup.data.datasets import batch_loader, load_split

    method = tiny("exemplar")
    assert len(method.seeds) == 64 and (method.class_of >= 0).sum() == 64  # 512 images / 8
    assert sorted(method.class_of[method.seeds].tolist()) == list(range(64))  # one class per seed image
    data = load_split("synthetic", "train", options={"synthetic_size": 512})
    loader = batch_loader(*method.train_batches(data, 32, seed=0), num_workers=0)
    loader.batch_sampler.set_epoch(0)
    indices = torch.cat([batch["index"] for batch in loader])
    assert len(indices) == 512 and set(indices.tolist()) <= set(method.seeds.tolist())
    batch = next(iter(loader))
    view = batch["image"].float() / 255
    out = replay(method, lambda: method.training_step({"views": [view], "index": batch["index"]}, 0))
    # the same warps again: the loss classifies each warped image as its seed
    with torch.no_grad():
        logits = method.classifier(method.backbone(method.warp(view)))
    assert out["loss"].item() == pytest.approx(F.cross_entropy(logits, method.class_of[batch["index"]]).item(), rel=1e-5)


def test_exemplar_warp_turns_scales_and_shifts_each_image_by_its_own_draw():
    method = tiny("exemplar", translation=0.0, scale=[1.0, 1.0], rotation=90.0)
    x = torch.zeros(64, 1, 9, 9)
    x[:, :, 0, 4] = 1.0  # a dot at the top centre
    warped = method.warp(x)
    top = warped[:, 0, :3, 3:6].sum(dim=(1, 2))
    assert (top < 0.5).any() and (top > 0.5).any()  # some images turned the dot away, some kept it near the top
    still = tiny("exemplar", translation=0.0, scale=[1.0, 1.0], rotation=0.0).warp(x)
    assert torch.allclose(still, x, atol=1e-5)  # no transformation: the image itself


def test_multitask_shares_one_trunk_and_generator_and_weights_the_task_losses():
    method = tiny("multitask", tasks=["rotation", "denoising-ae"], weights=[0.5, 2.0],
                  task_params={"denoising-ae": {"noise": 0.5}})
    rotation, denoising = method.tasks["rotation"], method.tasks["denoising-ae"]
    assert rotation.backbone is method.backbone and denoising.backbone is method.backbone
    assert denoising.cfg["noise"] == 0.5 and rotation.cfg["augment"]["crop_scale"] == [0.5, 1.0]  # its own config
    assert len({id(p) for p in method.parameters()}) == len(list(method.parameters()))  # the trunk counted once
    method.generator = torch.Generator().manual_seed(3)
    assert rotation.generator is method.generator and denoising.generator is method.generator
    x = torch.randn(4, 3, 16, 16)
    batch = {"tasks": {"rotation": {"views": [x]}, "denoising-ae": {"views": [x]}}}
    method.generator.manual_seed(7)
    out = method.training_step(batch, 0)
    method.generator.manual_seed(7)
    alone = rotation.training_step({"views": [x]}, 0)["loss"], denoising.training_step({"views": [x]}, 0)["loss"]
    assert torch.allclose(out["loss"], 0.5 * alone[0] + 2.0 * alone[1], rtol=1e-5)


def test_multitask_trains_a_joint_embedding_method_beside_a_pretext_task():
    method = tiny("multitask", tasks=["simclr", "rotation"])
    simclr, rotation = method.tasks["simclr"], method.tasks["rotation"]
    assert simclr.backbone is method.backbone and simclr.cfg["temperature"] == 0.5  # SimCLR's own config
    x, y = torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)
    out = method.training_step({"tasks": {"simclr": {"views": [x, y]}, "rotation": {"views": [x]}}}, 0)
    alone = simclr.training_step({"views": [x, y]}, 0)["loss"] + rotation.training_step({"views": [x]}, 0)["loss"]
    assert torch.allclose(out["loss"], alone, rtol=1e-5)


def test_multitask_runs_a_hosted_methods_step_hooks():
    method = tiny("multitask", tasks=["byol", "rotation"])
    byol = method.tasks["byol"]
    with torch.no_grad():
        for p in byol.projector.parameters():
            p.add_(1.0)
    before = [p.clone() for p in byol.target_projector.parameters()]
    method.on_step_end(0, 100)  # BYOL's EMA of the online network
    assert all(not torch.equal(a, b) for a, b in zip(before, byol.target_projector.parameters()))


@pytest.mark.parametrize("task, hook", [("simsiam", "parameter groups"), ("exemplar", "train batches")])
def test_multitask_refuses_a_method_with_its_own_loader_or_parameter_groups(task, hook):
    with pytest.raises(SelfSupError, match=f"cannot train {task} beside its own objective: {task} needs its own {hook}"):
        tiny("multitask", tasks=[task, "rotation"])


def test_multitask_uncertainty_weighting_learns_one_log_variance_per_task():
    method = tiny("multitask", tasks=["rotation", "count"], uncertainty=True)
    x = torch.randn(4, 3, 16, 16)
    out = method.training_step({"tasks": {"rotation": {"views": [x]}, "count": {"views": [x]}}}, 0)
    out["loss"].backward()
    assert method.log_variances.shape == (2,) and (method.log_variances.grad != 0).all()
    # at s = 0 the weighted sum is the plain sum
    assert torch.allclose(out["loss"].detach(), out["rotation_loss"] + out["count_loss"], rtol=1e-5)


def test_lab_conversion_and_ab_bins():
    from selfsup.data.lab import ab_bin_of, ab_bins, rgb_to_lab

    colours = torch.tensor([[1.0, 1, 1], [1, 0, 0], [0, 0, 1], [0, 0, 0]]).T.reshape(1, 3, 4, 1)
    lab = rgb_to_lab(colours)[0, :, :, 0].T
    expected = torch.tensor([[100.0, 0, 0], [53.24, 80.09, 67.20], [32.30, 79.19, -107.86], [0, 0, 0]])  # CIE tables
    assert torch.allclose(lab, expected, atol=0.02)
    centres, _ = ab_bins()
    assert 200 < len(centres) < 400  # the in-gamut bins (313 in Zhang et al.)
    ab = torch.tensor([[0.4, -0.3], [79.0, 66.0]])
    assert torch.allclose(centres[ab_bin_of(ab)], torch.tensor([[0.0, 0.0], [80.0, 70.0]]))


def colour_method(**params):
    method = tiny("colorization", **params)
    method.run = method.run.__class__(**{**method.run.__dict__, "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)})
    return method


def test_colorization_sees_only_lightness_and_rebalances_rare_colours():
    method = colour_method()
    seen = recording_backbone(method)
    rgb = torch.rand(4, 3, 16, 16)
    view = (rgb - 0.5) / 0.25
    images = [(rgb[:2] - 0.5) / 0.25, (rgb[2:] - 0.5) / 0.25]
    method.on_epoch_start(0, lambda encode: (torch.cat([encode(x) for x in images]), None))
    from selfsup.data.lab import ab_bin_of, rgb_to_lab

    lab = rgb_to_lab(rgb)
    prior = torch.bincount(ab_bin_of(lab[:, 1:].permute(0, 2, 3, 1).reshape(-1, 2)), minlength=len(method.class_weights))
    common, rare = prior.argmax(), (prior == 0).nonzero()[0, 0]
    assert method.class_weights[rare] > method.class_weights[common]  # rare colours weigh more
    out = method.training_step({"views": [view]}, 0)
    assert seen[0].shape == (4, 1, 16, 16) and torch.allclose(seen[0], lab[:, :1] / 50 - 1, atol=1e-4)
    # Zhang et al. 2016, eq. 2: each pixel's cross-entropy against its ab bin, weighted by that bin's weight
    target = ab_bin_of(lab[:, 1:].permute(0, 2, 3, 1).reshape(-1, 2))
    with torch.no_grad():
        scores = method.decoder(torch.zeros(4, method.feature_dim)).permute(0, 2, 3, 1).reshape(-1, len(prior))
    per_pixel = -scores.log_softmax(1)[torch.arange(len(target)), target]
    assert out["loss"].item() == pytest.approx((method.class_weights[target] * per_pixel).mean().item(), rel=1e-5)
    assert out["loss"].item() != pytest.approx(per_pixel.mean().item(), rel=1e-3)  # the weights count
    assert colour_method(loss="regression").decoder(torch.zeros(1, method.feature_dim)).shape == (1, 2, 16, 16)


def test_split_brain_halves_see_their_own_channels_and_predict_the_others():
    from selfsup.data.lab import rgb_to_lab

    method = tiny("split-brain")
    method.run = method.run.__class__(**{**method.run.__dict__, "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)})
    seen = {}
    for half in ("lightness", "colour"):
        module = getattr(method.backbone, half)
        module.forward = (lambda name, dim: lambda x: seen.setdefault(name, x) is None or torch.zeros(x.shape[0], dim))(
            half, module.feature_dim)
    rgb = torch.rand(2, 3, 16, 16)
    out = method.training_step({"views": [(rgb - 0.5) / 0.25]}, 0)
    lab = rgb_to_lab(rgb)
    assert torch.allclose(seen["lightness"], lab[:, :1] / 50 - 1, atol=1e-4)
    assert torch.allclose(seen["colour"], lab[:, 1:] / 110, atol=1e-4)
    assert set(out) == {"loss", "l_to_ab", "ab_to_l"}
    # Zhang et al. 2017: the lightness half classifies each pixel's ab bin, the colour half its L
    # in 50 bins of 2 units; the backbones output zeros here, so each head scores its bias alone
    from selfsup.data.lab import ab_bin_of

    with torch.no_grad():
        to_colour = method.to_colour(torch.zeros(2, method.backbone.lightness.feature_dim))
        to_lightness = method.to_lightness(torch.zeros(2, method.backbone.colour.feature_dim))
    ab_target = ab_bin_of(lab[:, 1:].permute(0, 2, 3, 1).reshape(-1, 2)).view(2, 16, 16)
    l_target = torch.div(lab[:, 0], 2, rounding_mode="floor").long().clamp(0, 49)
    assert out["l_to_ab"].item() == pytest.approx(F.cross_entropy(to_colour, ab_target).item(), rel=1e-5)
    assert out["ab_to_l"].item() == pytest.approx(F.cross_entropy(to_lightness, l_target).item(), rel=1e-5)
    assert out["loss"].item() == pytest.approx((out["l_to_ab"] + out["ab_to_l"]).item(), rel=1e-6)
    full = tiny("split-brain")
    assert full.feature_dim == full.backbone.lightness.feature_dim * 2

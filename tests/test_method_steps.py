"""Methods' training steps against their losses written on outputs the test recomputes: which
views reach which network, with which targets, temperatures and weights.  The pure losses are
checked against independent references in tests/test_losses*.py; these tests check the
wiring around them, which those cannot see.  (Other methods' steps are checked in their own
files: MoCo, CPC, DINO, iBOT, DeepCluster-v2, BYOL, SimSiam, VICReg, TiCo, NNCLR, MoCo v3, DCL,
EMP-SSL, DARe, SuperInfo, the pretext tasks, FixMatch, MixMatch.)"""
import math

import pytest
import torch
import torch.nn.functional as F

from selfsup import rng
from selfsup.losses import barlow_twins, msn, nt_xent, sigreg, swav, triplet, w_mse
from selfsup.methods.ijepa import multi_block_masks
from selfsup.methods.masking import patchify, random_patch_mask
from support import perturb, replay, tiny

torch.manual_seed(0)
VIEWS = [torch.randn(8, 3, 16, 16), torch.randn(8, 3, 16, 16)]
LABELS = torch.tensor([0, 1, 2, 0, 1, 2, 3, 3])


def recompute(method, views):
    """The projector's outputs of ``views``, one backbone pass over all of them (as the steps make them)."""
    with torch.no_grad():
        return method.projector(method.backbone(torch.cat(views))).chunk(len(views))


def test_simclr_step_contrasts_the_two_views_projections_at_its_temperature():
    method = tiny("simclr", temperature=0.3)
    loss = method.training_step({"views": VIEWS}, 0)["loss"]
    assert loss.item() == pytest.approx(nt_xent(*recompute(method, VIEWS), 0.3).item(), rel=1e-5)


def test_barlow_twins_step_is_its_loss_on_the_two_views_projections():
    method = tiny("barlow-twins", lambd=0.01)
    loss = method.training_step({"views": VIEWS}, 0)["loss"]
    assert loss.item() == pytest.approx(barlow_twins(*recompute(method, VIEWS), 0.01).item(), rel=1e-5)


def test_w_mse_step_whitens_the_views_embeddings_with_the_methods_generator():
    method = tiny("w-mse", proj_dim=8, whiten_size=16)
    views = [torch.randn(32, 3, 16, 16), torch.randn(32, 3, 16, 16)]  # two sub-batches of 16 to whiten
    loss = replay(method, lambda: method.training_step({"views": views}, 0))["loss"]
    cfg = method.cfg
    expected = w_mse(list(recompute(method, views)), cfg["whiten_size"], method.generator, cfg["whiten_iterations"],
                     cfg["eps"])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_swav_step_scores_unit_prototypes_and_reads_the_queues_before_filling_them():
    # Caron et al. 2020: prototypes normalised before each step; codes of the 2 large crops over
    # the batch and the queued crops of earlier batches; the batch's crops then join the queues
    method = tiny("swav", queue_size=16, queue_start_epoch=0, small_crops=2, num_prototypes=10)
    method.on_epoch_start(0, None)
    with torch.no_grad():
        method.prototypes.weight.mul_(3.0)  # off the unit sphere, as an optimiser step leaves them
        for queue in method.queues:
            queue.push(F.normalize(torch.randn(16, method.cfg["proj_dim"]), dim=1), gather=False)
    queued = [queue.items().clone() for queue in method.queues]
    crops = VIEWS + [torch.randn(8, 3, 8, 8), torch.randn(8, 3, 8, 8)]
    loss = method.training_step({"views": crops}, 0)["loss"]
    prototypes = F.normalize(method.prototypes.weight, dim=1).detach()
    with torch.no_grad():
        features = torch.cat([method.backbone(torch.cat(crops[:2])), method.backbone(torch.cat(crops[2:]))])
        z = F.normalize(method.projector(features), dim=1)
    cfg = method.cfg
    expected = swav(list((z @ prototypes.T).chunk(4)), 2, cfg["temperature"], cfg["epsilon"],
                    cfg["sinkhorn_iterations"], [q @ prototypes.T for q in queued])
    assert torch.allclose(method.prototypes.weight.norm(dim=1), torch.ones(10), atol=1e-6)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    for queue, crop in zip(method.queues, z.chunk(4)[:2]):  # the newest 8 of each queue: its large crop
        assert torch.allclose(queue.queue[:8], crop, atol=1e-6)


def test_swav_leaves_a_partly_filled_queue_out_of_sinkhorn_and_lars_adapts_every_parameter():
    # the reference code uses its queue only once full, and wraps SGD over all parameters in LARC
    method = tiny("swav", queue_size=16, queue_start_epoch=0, small_crops=0, num_prototypes=10)
    method.on_epoch_start(0, None)
    with torch.no_grad():
        for queue in method.queues:
            queue.push(F.normalize(torch.randn(12, method.cfg["proj_dim"]), dim=1), gather=False)
    loss = method.training_step({"views": VIEWS}, 0)["loss"]
    prototypes = F.normalize(method.prototypes.weight, dim=1).detach()
    with torch.no_grad():
        z = F.normalize(method.projector(method.backbone(torch.cat(VIEWS))), dim=1)
    cfg = method.cfg
    expected = swav(list((z @ prototypes.T).chunk(2)), 2, cfg["temperature"], cfg["epsilon"], cfg["sinkhorn_iterations"])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert all(queue.full for queue in method.queues)  # 12 + 8: the next step reads them
    for name in ("swav", "deepcluster-v2"):
        groups = tiny(name).parameter_groups()
        assert len(groups) == 1 and not {"lars_exclude", "bias_and_norm", "weight_decay"} & set(groups[0])
        assert len(groups[0]["params"]) == sum(1 for p in tiny(name).parameters() if p.requires_grad)


def test_rotation_step_labels_each_copy_with_its_quarter_turn():
    method = tiny("rotation")
    view = VIEWS[0]
    loss = method.training_step({"views": [view]}, 0)["loss"]
    with torch.no_grad():
        logits = method.classifier(method.backbone(torch.cat([torch.rot90(view, q, (2, 3)) for q in range(4)])))
    target = torch.tensor([q for q in range(4) for _ in range(8)])
    assert loss.item() == pytest.approx(F.cross_entropy(logits, target).item(), rel=1e-5)


def test_supervised_step_is_cross_entropy_against_the_labels_with_its_smoothing():
    method = tiny("supervised", label_smoothing=0.1)
    loss = method.training_step({"views": VIEWS[:1], "label": LABELS}, 0)["loss"]
    with torch.no_grad():
        expected = F.cross_entropy(method.predict(VIEWS[0]), LABELS, label_smoothing=0.1)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def supcon_reference(views: list[torch.Tensor], labels: torch.Tensor, t: float, base_t: float) -> float:
    """Khosla et al. 2020, eq. 2, per anchor over all 2N views: −(τ/τ_base) · the mean log-probability
    of its positives (the other views of its class) among every other view."""
    z = F.normalize(torch.cat(views).double(), dim=1)
    label = labels.repeat(len(views))
    total = 0.0
    for i in range(len(z)):
        others = [a for a in range(len(z)) if a != i]
        log_norm = math.log(sum(math.exp((z[i] @ z[a]).item() / t) for a in others))
        positives = [p for p in others if label[p] == label[i]]
        total += -(t / base_t) * sum((z[i] @ z[p]).item() / t - log_norm for p in positives) / len(positives)
    return total / len(z)


def test_supcon_step_takes_every_view_of_the_class_as_a_positive():
    method = tiny("supcon", temperature=0.2, base_temperature=0.07)
    loss = method.training_step({"views": VIEWS, "label": LABELS}, 0)["loss"]
    assert loss.item() == pytest.approx(supcon_reference(list(recompute(method, VIEWS)), LABELS, 0.2, 0.07), rel=1e-5)


def test_triplet_step_mines_unit_embeddings_of_the_labelled_batch():
    method = tiny("triplet", margin=0.3, mining="all")
    loss = method.training_step({"views": VIEWS[:1], "label": LABELS}, 0)["loss"]
    (z,) = recompute(method, VIEWS[:1])
    assert loss.item() == pytest.approx(triplet(F.normalize(z, dim=1), LABELS, 0.3, "all").item(), rel=1e-5)


def test_deepcluster_step_classifies_each_image_into_its_cluster():
    method = tiny("deepcluster")
    index = torch.arange(100, 108)
    method.assignment[index] = torch.tensor([3, 0, 7, 7, 1, 2, 5, 4])
    loss = method.training_step({"views": VIEWS[:1], "index": index}, 0)["loss"]
    with torch.no_grad():
        logits = method.classifier(method.cluster_features(VIEWS[0]).relu())  # clustered before the ReLU, trained after
    expected = -logits.log_softmax(1)[torch.arange(8), method.assignment[index]].mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_deepcluster_clusters_before_the_final_relu_and_resets_a_small_classifier():
    # the reference code: the last ReLU is removed for the features k-means sees; its top layer
    # starts at N(0, 0.01) with a zero bias
    method = tiny("deepcluster", num_clusters=300, head_hidden_dim=256)
    method.eval()
    with torch.no_grad():
        assert (method.cluster_features(VIEWS[0]) < 0).any()
    method.reinitialize(method.classifier)
    weight, bias = method.classifier.weight, method.classifier.bias
    assert weight.std().item() == pytest.approx(0.01, rel=0.05) and not bias.any()


def test_instdisc_step_is_the_softmax_over_the_bank_before_its_update_plus_the_proximal_term():
    # Wu et al. 2018, eq. 2 (exact softmax over the bank) and eq. 7's proximal term λ‖f − v‖²
    method = tiny("instdisc", loss="softmax", proximal=0.5, temperature=0.1)
    index = torch.arange(10, 18)
    bank = method.memory.bank.clone()
    out = method.training_step({"views": VIEWS[:1], "index": index}, 0)
    with torch.no_grad():
        f = method.embed(VIEWS[0])
    scores = f.double() @ bank.double().T / 0.1
    softmax = -(scores[torch.arange(8), index] - scores.logsumexp(1)).mean()
    proximal = ((f - bank[index]) ** 2).sum(1).mean()
    assert out["softmax"].item() == pytest.approx(softmax.item(), rel=1e-5)
    assert out["loss"].item() == pytest.approx(softmax.item() + 0.5 * proximal.item(), rel=1e-5)
    assert torch.allclose(method.memory.bank[index], F.normalize(0.5 * bank[index] + 0.5 * f, dim=1), atol=1e-6)


def test_mae_step_scores_the_hidden_patches_against_their_normalised_pixels():
    # He et al. 2022: the encoder sees the visible patches, the decoder predicts every patch, the
    # loss is the MSE on hidden patches against each patch's pixels standardised by its own statistics
    method = tiny("mae", decoder_depth=1, mask_ratio=0.75)
    view = VIEWS[0]
    loss = replay(method, lambda: method.training_step({"views": [view]}, 0))["loss"]
    rows, cols = method.backbone.patch_grid(16, 16)
    keep, mask = random_patch_mask(8, rows * cols, 0.75, method.generator)
    assert (mask.sum(1) == round(0.75 * rows * cols)).all()
    with torch.no_grad():
        prediction = method.reconstruct(view, keep, mask).double()
    size = method.backbone.patch_size
    errors = []
    for b in range(8):
        for n in mask[b].nonzero().flatten().tolist():
            r, c = divmod(n, cols)
            pixels = view[b, :, r * size:(r + 1) * size, c * size:(c + 1) * size].permute(1, 2, 0).flatten().double()
            target = (pixels - pixels.mean()) / (pixels.var() + 1e-6).sqrt()
            errors.append((prediction[b, n] - target).square().mean().item())
    assert loss.item() == pytest.approx(sum(errors) / len(errors), rel=1e-5)


def test_simmim_step_is_the_l1_error_on_the_pixels_of_the_hidden_patches():
    method = tiny("simmim")
    view = VIEWS[0]
    loss = replay(method, lambda: method.training_step({"views": [view]}, 0))["loss"]
    rows, cols = method.backbone.patch_grid(16, 16)
    keep, mask = random_patch_mask(8, rows * cols, method.cfg["mask_ratio"], method.generator)
    with torch.no_grad():
        prediction = method.reconstruct(view, keep, mask)
    target = patchify(view, method.backbone.patch_size)
    expected = (prediction - target).abs().mean(-1)[mask].mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_ijepa_step_predicts_each_target_block_of_each_image_from_its_own_context():
    # Assran et al. 2023: the EMA encoder's layer-normed tokens of each target block are predicted
    # from the context encoder's tokens of the same image (one block at a time here, a loop)
    method = tiny("i-jepa", predictor_depth=1, targets=3)
    perturb(method.target_backbone)
    view = VIEWS[0]
    loss = replay(method, lambda: method.training_step({"views": [view]}, 0))["loss"]
    cfg = method.cfg
    context, targets = multi_block_masks(8, method.rows, method.rows, method.generator, 3, cfg["target_scale"],
                                         cfg["target_aspect"], cfg["context_scale"])
    errors = []
    with torch.no_grad():
        tokens = method.target_backbone.tokens(view)[:, 1:]
        for b in range(8):
            seen = method.backbone.tokens(view[b:b + 1], keep=context[b:b + 1])[:, 1:]
            for t in range(3):
                predicted = method.predictor(seen, context[b:b + 1], targets[b:b + 1, t])
                wanted = F.layer_norm(tokens[b, targets[b, t]], tokens.shape[-1:])
                errors.append((predicted[0] - wanted).square().mean().item())
    assert loss.item() == pytest.approx(sum(errors) / len(errors), rel=1e-4)


def test_msn_step_matches_masked_anchors_to_the_target_networks_view_over_unit_prototypes():
    method = tiny("msn", prototypes=16, proj_hidden_dim=16, proj_dim=8, focal_views=2, mask_ratio=0.5)
    perturb(method.target_backbone, method.target_head)
    views = VIEWS + [torch.randn(8, 3, 8, 8), torch.randn(8, 3, 8, 8)]
    loss = replay(method, lambda: method.training_step({"views": views}, 0))["loss"]
    prototypes = F.normalize(method.prototypes, dim=1).detach()
    with torch.no_grad():  # the anchor view with half its patches dropped, then the whole focal views
        anchors = torch.cat([method.anchors(views[1:2]), method.backbone(torch.cat(views[2:]))])
        anchor = (F.normalize(method.head(anchors), dim=1) @ prototypes.T).view(3, 8, -1)
        target = F.normalize(method.target_head(method.target_backbone(views[0])), dim=1) @ prototypes.T
    cfg = method.cfg
    expected = msn(anchor, target, cfg["temperature"], cfg["sharpen"], cfg["sinkhorn_iterations"], cfg["me_max_weight"])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_lejepa_step_weighs_prediction_and_sigreg_over_the_steps_directions():
    method = tiny("lejepa", proj_hidden_dim=16, proj_dim=8, directions=4, local_views=2, sigreg_weight=0.2)
    crops = VIEWS + [torch.randn(8, 3, 8, 8), torch.randn(8, 3, 8, 8)]
    loss = method.training_step({"views": crops}, 7)["loss"]
    with torch.no_grad():
        features = torch.cat([method.backbone(torch.cat(crops[:2])), method.backbone(torch.cat(crops[2:]))])
        embeddings = method.projector(features).view(4, 8, -1)  # one projector pass: BatchNorm sees every crop
    directions = rng.randn((8, 4), rng.seeded_generator("cpu", method.run.seed, 7, "sigreg"))
    directions = directions / directions.norm(dim=0)
    cfg = method.cfg
    prediction = (embeddings[:2].mean(0) - embeddings).square().mean()
    regulariser = torch.stack([sigreg(v, directions, cfg["knots"], cfg["t_max"]) for v in embeddings]).mean()
    assert loss.item() == pytest.approx((0.8 * prediction + 0.2 * regulariser).item(), rel=1e-5)

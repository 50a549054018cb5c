"""BYOL, SimSiam and Barlow Twins beyond the per-method engine test: the target's EMA
schedule, SimSiam's stop-gradient and fixed-rate predictor, Barlow Twins' bias rate."""
import pytest
import torch
import torch.nn.functional as F

from selfsup.methods.helpers import cosine_momentum
from support import perturb, tiny


def test_byol_target_follows_the_cosine_ema_schedule():
    method = tiny("byol", base_momentum=0.996)  # the paper's (the short recipe's is 0.99)
    target = [p.clone() for p in method.target_backbone.parameters()]
    with torch.no_grad():
        for p in method.backbone.parameters():
            p.add_(1.0)
    method.on_step_end(step=0, total_steps=100)
    for before, after in zip(target, method.target_backbone.parameters()):
        assert torch.allclose(after, before + (1 - 0.996), atol=1e-6)  # momentum 0.996 at the first step
    assert cosine_momentum(50, 100, 0.996) == pytest.approx(0.998)
    # the target backbone is now 0.996 away from the online one: at momentum 1 it must not move
    frozen = [p.clone() for p in method.target_backbone.parameters()]
    method.on_step_end(step=100, total_steps=100)
    assert all(torch.equal(a, b) for a, b in zip(frozen, method.target_backbone.parameters()))
    assert not any(p.requires_grad for p in method.target_backbone.parameters())


def test_byol_loss_is_the_papers_normalised_mse_in_both_directions():
    method = tiny("byol")
    perturb(method.target_backbone, method.target_projector)  # a target unlike the online network, as after any step
    views = list(torch.randn(2, 8, 3, 16, 16))
    loss = method.training_step({"views": views}, 0)["loss"]
    with torch.no_grad():  # BYOL eq. (2): ||p/|p| - z/|z|||^2 = 2 - 2 cos, each direction, summed
        both = torch.cat(views)
        p = F.normalize(method.predictor(method.projector(method.backbone(both))), dim=1).chunk(2)
        z = F.normalize(method.target_projector(method.target_backbone(both)), dim=1).chunk(2)
        expected = ((p[0] - z[1]).pow(2).sum(1).mean() + (p[1] - z[0]).pow(2).sum(1).mean()).item()
    assert loss.item() == pytest.approx(expected, rel=1e-4) and 0 <= loss.item() <= 8
    loss.backward()
    assert all(p.grad is not None for p in method.predictor.parameters())
    assert all(p.grad is None for p in method.target_projector.parameters())


@pytest.mark.parametrize("stop_gradient", [True, False])
def test_simsiam_stop_gradient_changes_gradients_not_the_loss(stop_gradient):
    reference = tiny("simsiam")
    method = tiny("simsiam", stop_gradient=stop_gradient)
    method.load_state_dict(reference.state_dict())
    views = list(torch.randn(2, 8, 3, 16, 16))
    a = reference.training_step({"views": views}, 0)["loss"]
    b = method.training_step({"views": views}, 0)["loss"]
    assert torch.allclose(a, b)
    a.backward(), b.backward()
    last = lambda m: m.projector[-2].weight.grad  # noqa: E731 (the projector's last linear layer)
    assert torch.allclose(last(reference), last(method)) == stop_gradient


def test_simsiam_gradients_are_those_of_its_loss_with_the_projections_detached():
    import copy

    method = tiny("simsiam")
    reference = copy.deepcopy(method)
    views = list(torch.randn(2, 8, 3, 16, 16))
    loss = method.training_step({"views": views}, 0)["loss"]
    loss.backward()
    z1, z2 = reference.projector(reference.backbone(torch.cat(views))).chunk(2)  # SimSiam's Algorithm 1
    p1, p2 = reference.predictor(z1), reference.predictor(z2)
    expected = -(F.cosine_similarity(p1, z2.detach()).mean() + F.cosine_similarity(p2, z1.detach()).mean()) / 2
    expected.backward()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    for (name, a), b in zip(method.named_parameters(), reference.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-6), name
    assert method.predictor[0].weight.grad.abs().sum() > 0  # the predictor learns (the argument order is right)


def test_simsiam_predictor_at_fixed_rate_and_widths_scale():
    method = tiny("simsiam")
    predictor = {id(p) for p in method.predictor.parameters()}
    for group in method.parameter_groups():
        assert bool(group.get("fixed_lr")) == all(id(p) in predictor for p in group["params"])
    assert method.projector[-2].out_features == 4 * method.feature_dim  # width 8 ResNet-18: 64 features
    assert method.predictor[0].out_features == method.feature_dim


def test_barlow_twins_bias_and_norm_parameters_at_their_own_rate():
    method = tiny("barlow-twins")
    weights, others = method.parameter_groups()
    assert "lr_scale" not in weights and others["lr_scale"] == pytest.approx(0.024)
    assert all(p.ndim == 1 for p in others["params"]) and all(p.ndim > 1 for p in weights["params"])
    assert method.projector[-1].out_features == 4 * method.feature_dim


def test_deepcluster_v2_prototypes_are_normalised_centroids_of_its_embeddings():
    method = tiny("deepcluster-v2").eval()
    images = torch.randn(512, 3, 16, 16)
    with torch.no_grad():
        embeddings = method.cluster_features(images)

    def embed(encode):
        with torch.no_grad():
            return encode(images), torch.arange(512) % 6

    stats = method.on_epoch_start(0, embed)
    assert stats["clusters_used"] > 50 and method.prototypes.shape == (60, 128)  # 10 x 6 classes
    assert torch.allclose(method.prototypes.norm(dim=1), torch.ones(60), atol=1e-5)
    nearest = (embeddings @ method.prototypes.T).argmax(dim=1)
    assert (nearest == method.assignment).float().mean() > 0.99  # spherical k-means: the prototypes' own rule
    method.train()
    index = torch.arange(20, 28)
    views = [images[index], images[index].flip(-1)]
    loss = method.training_step({"views": views, "index": index}, 0)["loss"]
    loss.backward()
    assert method.projector[0].weight.grad is not None
    # each view's cosine scores against the prototypes at τ 0.1, labelled with its image's cluster
    with torch.no_grad():
        z = [F.normalize(method.projector(method.backbone(torch.cat(views))), dim=1)[i * 8:(i + 1) * 8] for i in (0, 1)]
    terms = [-F.log_softmax(z[v][i] @ method.prototypes.T / 0.1, dim=0)[method.assignment[index[i]]]
             for v in (0, 1) for i in range(8)]
    assert loss.item() == pytest.approx(torch.stack(terms).mean().item(), rel=1e-5)
    assert "prototypes" in dict(method.named_buffers())  # fixed between epochs, saved in checkpoints


def test_triplet_trains_on_p_by_k_class_batches():
    from selfsup.data.datasets import batch_loader, load_split
    method = tiny("triplet")
    data = load_split("synthetic", "train", options={"synthetic_size": 512})
    loader = batch_loader(*method.train_batches(data, 64, seed=0), num_workers=0)
    loader.batch_sampler.set_epoch(0)
    batch = next(iter(loader))
    counts = batch["label"].bincount()
    assert sorted(counts[counts > 0].tolist()) == [16] * 4  # P = 4 (largest divisor of 64 up to 6 classes), K = 16
    loss = method.training_step({"views": [batch["image"].float() / 255], "label": batch["label"]}, 0)["loss"]
    assert loss.item() > 0

"""MoCo v3, NNCLR, DCL/DCLW and VICReg beyond the per-method engine test: each step computes
its paper's objective from its networks (written out here with plain torch), NNCLR's support
set and nearest neighbours, MoCo v3's momentum schedule."""
import pytest
import torch
import torch.nn.functional as F

from selfsup.losses import dcl
from selfsup.methods.helpers import FeatureQueue
from support import perturb, tiny


def test_moco_v3_step_is_the_official_symmetric_contrastive_loss():
    method = tiny("moco-v3", temperature=0.2)
    perturb(method.target_backbone, method.target_projector)  # keys must come from the momentum encoder
    views = list(torch.randn(2, 8, 3, 16, 16))
    loss = method.training_step({"views": views}, 0)["loss"]
    with torch.no_grad():  # ctr(q1, k2) + ctr(q2, k1), ctr(q, k) = CE(q·kᵀ/T, diagonal)·2T
        both = torch.cat(views)
        q = F.normalize(method.predictor(method.projector(method.backbone(both))), dim=1).chunk(2)
        k = F.normalize(method.target_projector(method.target_backbone(both)), dim=1).chunk(2)
        labels = torch.arange(8)
        expected = sum(F.cross_entropy(a @ b.T / 0.2, labels) * 2 * 0.2 for a, b in ((q[0], k[1]), (q[1], k[0])))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    assert all(p.grad is not None for p in method.predictor.parameters())
    assert all(p.grad is None for p in method.target_backbone.parameters())
    # the projection ends in an affine-free BatchNorm (the official projector), the prediction does not
    assert isinstance(method.projector[-1], torch.nn.BatchNorm1d) and not method.projector[-1].affine
    assert isinstance(method.predictor[-1], torch.nn.Linear)
    # momentum 0.99 at the first step
    target = [p.clone() for p in method.target_backbone.parameters()]
    with torch.no_grad():
        for p in method.backbone.parameters():
            p.add_(1.0)
    method.on_step_end(step=0, total_steps=100)
    assert all(torch.allclose(after, 0.99 * before + 0.01 * online, atol=1e-6)
               for before, after, online in zip(target, method.target_backbone.parameters(), method.backbone.parameters()))


def test_feature_queue_nearest_skips_the_images_own_entries():
    queue = FeatureQueue(4, 2)
    x = torch.tensor([[1.0, 0.1], [0.0, 1.0]])
    assert torch.equal(queue.nearest(x, torch.tensor([0, 1])), x)  # nothing queued: each row is its own anchor
    queue.push(torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, -1.0]]), torch.tensor([0, 5, 6]), gather=False)
    nearest = queue.nearest(x, torch.tensor([0, 1]))
    # row 0 is closest to [1, 0], but that is its own image's entry: the next closest is [0.6, 0.8]
    assert torch.equal(nearest, torch.tensor([[0.6, 0.8], [0.6, 0.8]]))
    assert torch.equal(queue.nearest(x, torch.tensor([7, 1])), torch.tensor([[1.0, 0.0], [0.6, 0.8]]))
    only_own = FeatureQueue(2, 2)
    only_own.push(torch.tensor([[1.0, 0.0]]), torch.tensor([3]), gather=False)
    assert torch.equal(only_own.nearest(x[:1], torch.tensor([3])), x[:1])


def test_nnclr_anchors_are_neighbours_and_the_support_set_keeps_first_views():
    method = tiny("nnclr", support_size=64, temperature=0.1)
    views, index = list(torch.randn(2, 8, 3, 16, 16)), torch.arange(8)

    def expected_loss():
        with torch.no_grad():
            z = method.projector(method.backbone(torch.cat(views)))
            p = F.normalize(method.predictor(z), dim=1).chunk(2)
            z1, z2 = z.chunk(2)
            a1, a2 = (F.normalize(method.support.nearest(v, index), dim=1) for v in (z1, z2))
            labels = torch.arange(8)
            return ((F.cross_entropy(a1 @ p[1].T / 0.1, labels) + F.cross_entropy(a2 @ p[0].T / 0.1, labels)) / 2).item()

    first = expected_loss()  # an empty support set: every view is its own anchor
    state = {k: v.clone() for k, v in method.state_dict().items()}
    loss = method.training_step({"views": views, "index": index}, 0)["loss"]
    assert loss.item() == pytest.approx(first, rel=1e-4)
    assert int(method.support.filled) == 8 and torch.equal(method.support.indices(), index)
    with torch.no_grad():  # the first view's projections, normalised (Dwibedi et al. 2021: the support set holds z)
        z1 = method.projector(method.backbone(torch.cat(views))).chunk(2)[0]
    assert torch.allclose(method.support.items(), F.normalize(z1, dim=1), atol=1e-5)
    # the next batch (other images) takes its anchors from the support set
    index = torch.arange(8, 16)
    method.load_state_dict({**state, **{k: v for k, v in method.state_dict().items() if k.startswith("support")}})
    second = expected_loss()
    assert method.training_step({"views": views, "index": index}, 1)["loss"].item() == pytest.approx(second, rel=1e-4)
    assert second != pytest.approx(first, rel=1e-3)


@pytest.mark.parametrize("name,sigma", [("dcl", None), ("dclw", 0.5)])
def test_dcl_methods_train_simclr_networks_on_the_decoupled_loss(name, sigma):
    method = tiny(name)
    assert method.cfg["temperature"] == 0.1 and method.cfg["weight_sigma"] == sigma
    views = list(torch.randn(2, 8, 3, 16, 16))
    loss = method.training_step({"views": views}, 0)["loss"]
    with torch.no_grad():
        z1, z2 = method.projector(method.backbone(torch.cat(views))).chunk(2)
    assert loss.item() == pytest.approx(dcl(z1, z2, 0.1, sigma).item(), rel=1e-5)


def test_vicreg_step_weights_and_logs_its_three_terms():
    from selfsup.losses import vicreg_terms

    method = tiny("vicreg", variance_weight=0.0)
    views = list(torch.randn(2, 8, 3, 16, 16))
    out = method.training_step({"views": views}, 0)
    with torch.no_grad():  # the terms of the two views' expanded embeddings, written out
        z1, z2 = method.expander(method.backbone(torch.cat(views))).chunk(2)
        terms = vicreg_terms(z1, z2)
    assert [out[name].item() for name in ("invariance", "variance", "covariance")] == pytest.approx(
        [term.item() for term in terms], rel=1e-5)
    assert out["loss"].item() == pytest.approx(25 * out["invariance"].item() + out["covariance"].item(), rel=1e-5)
    assert out["variance"].item() > 0  # measured even when it is not trained (the collapse ablation)
    assert method.expander[0].out_features == 4 * method.feature_dim


def test_tico_step_is_both_directions_against_the_momentum_targets_and_keeps_c():
    from selfsup.losses import tico

    method = tiny("tico")
    perturb(method.target_backbone, method.target_projector)  # targets must come from the momentum network
    assert isinstance(method.predictor, torch.nn.Identity)
    views = list(torch.randn(2, 8, 3, 16, 16))
    before = method.covariance.clone()
    loss = method.training_step({"views": views}, 0)["loss"]
    with torch.no_grad():
        both = torch.cat(views)
        online = method.projector(method.backbone(both)).chunk(2)
        target = method.target_projector(method.target_backbone(both)).chunk(2)
        expected, covariance = tico(torch.cat(online), torch.cat([target[1], target[0]]), before, 0.9, 8.0)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.allclose(method.covariance, covariance, atol=1e-6) and method.covariance.abs().sum() > 0


def test_emp_ssl_trains_on_patches_and_evaluates_on_a_fixed_grid_of_them():
    from selfsup.losses import emp_ssl

    method = tiny("emp-ssl", patches=3).eval()
    assert len(method.views) == 1 and method.views[0].count == 3
    views = list(torch.randn(3, 4, 3, 16, 16))
    loss = method.train().training_step({"views": views}, 0)["loss"]
    with torch.no_grad():
        z = method.projector(method.backbone(torch.cat(views))).view(3, 4, -1)
    assert loss.item() == pytest.approx(emp_ssl(z, 200.0, 0.2).item(), rel=1e-5)
    method.eval()
    images = torch.randn(5, 3, 16, 16)
    patches = method.eval_patches(images)
    # 4 x 4 crops of half the side (a quarter of the area), corner to corner, resized to 16 px
    assert len(patches) == 16 and all(p.shape == images.shape for p in patches)
    corner = F.interpolate(images[..., :8, :8], size=(16, 16), mode="bilinear", align_corners=False)
    assert torch.allclose(patches[0], corner) and torch.allclose(
        patches[-1], F.interpolate(images[..., 8:, 8:], size=(16, 16), mode="bilinear", align_corners=False))
    with torch.no_grad():
        features = method.features(images)
        expected = torch.stack([method.backbone(p) for p in patches]).mean(0)
        # one image's features do not depend on the batch it comes in
        assert torch.allclose(features, expected, atol=1e-6)
        assert torch.allclose(method.features(images[2:3]), features[2:3], atol=1e-5)
        layers = method.feature_layers(images)
    assert len(layers) == 5 and torch.allclose(layers[-1], features, atol=1e-5)
    whole = tiny("emp-ssl", eval_grid=0)
    assert whole.eval_patches(images)[0] is images

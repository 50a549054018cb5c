"""supcon and triplet against hand-computed values and loop-by-loop references; supcon on
two processes against one."""
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from selfsup.losses import nt_xent, supcon, triplet
from two_processes import run_two_processes


def supcon_reference(features, labels, temperature, base_temperature):
    """Khosla et al. eq. (2), anchor by anchor."""
    n, v, _ = features.shape
    z = [F.normalize(features[i, j], dim=0) for j in range(v) for i in range(n)]
    y = [labels[i].item() for _ in range(v) for i in range(n)]
    losses = []
    for a in range(len(z)):
        others = [b for b in range(len(z)) if b != a]
        denominator = sum(math.exp((z[a] @ z[b]).item() / temperature) for b in others)
        positives = [p for p in others if y[p] == y[a]]
        if positives:
            terms = [math.log(math.exp((z[a] @ z[p]).item() / temperature) / denominator) for p in positives]
            losses.append(-(temperature / base_temperature) * sum(terms) / len(positives))
    return sum(losses) / len(losses)


def test_supcon_hand_computed():
    # two images of different classes, two identical views each, orthogonal directions
    features = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [0.0, 1.0]]])
    t = 0.5
    # each anchor: positive similarity 1, other candidates 0 and 0
    expected = -(t / 0.07) * math.log(math.exp(1 / t) / (math.exp(1 / t) + 2))
    assert supcon(features, torch.tensor([0, 1]), temperature=t).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("n,v,d,classes,t", [(4, 2, 3, 2, 0.1), (6, 3, 5, 3, 0.5), (5, 2, 4, 5, 0.2)])
def test_supcon_matches_reference(n, v, d, classes, t):
    features = torch.randn(n, v, d, dtype=torch.float64)
    labels = torch.randint(classes, (n,))
    assert supcon(features, labels, t, 0.07).item() == pytest.approx(supcon_reference(features, labels, t, 0.07), rel=1e-6)


def test_supcon_with_unique_labels_is_scaled_nt_xent():
    z1, z2 = torch.randn(6, 4, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64)
    loss = supcon(torch.stack([z1, z2], dim=1), torch.arange(6), temperature=0.3, base_temperature=0.3)
    assert loss.item() == pytest.approx(nt_xent(z1, z2, temperature=0.3).item(), rel=1e-6)


def test_supcon_rejects_bad_input():
    with pytest.raises(ValueError, match="supcon expects"):
        supcon(torch.randn(4, 8), torch.zeros(4))
    with pytest.raises(ValueError, match="no anchor has a positive"):
        supcon(torch.randn(3, 1, 4), torch.arange(3))


def _supcon_worker(rank, world, features, labels):
    n = features.shape[0] // world
    local = features[rank * n:(rank + 1) * n].clone().requires_grad_(True)
    loss = supcon(local, labels[rank * n:(rank + 1) * n], 0.2, 0.07, gather=True)
    loss.backward()
    return loss.detach(), local.grad


def test_supcon_two_processes_equal_one():
    features, labels = torch.randn(8, 2, 4, dtype=torch.float64), torch.tensor([0, 1, 0, 2, 1, 1, 2, 0])
    results = run_two_processes(_supcon_worker, features, labels)
    full_input = features.clone().requires_grad_(True)
    full = supcon(full_input, labels, 0.2, 0.07)
    full.backward()
    assert torch.allclose(sum(results[r][0] for r in range(2)) / 2, full.detach())
    assert torch.allclose(torch.cat([results[r][1] for r in range(2)]) / 2, full_input.grad)


def triplet_reference(e, labels, margin, mining):
    """FaceNet triplets enumerated with Python loops."""
    n = len(labels)
    d = [[((e[i] - e[j]) ** 2).sum().item() for j in range(n)] for i in range(n)]
    pairs = [(a, p) for a, p in itertools.permutations(range(n), 2) if labels[a] == labels[p]]
    negatives = {a: [x for x in range(n) if labels[x] != labels[a]] for a in range(n)}
    terms = []
    if mining == "hard":
        for a in range(n):
            ps = [p for (b, p) in pairs if b == a]
            if ps and negatives[a]:
                terms.append(max(0.0, max(d[a][p] for p in ps) - min(d[a][x] for x in negatives[a]) + margin))
    for a, p in pairs if mining != "hard" else []:
        if not negatives[a]:
            continue
        if mining == "all":
            terms += [max(0.0, d[a][p] - d[a][x] + margin) for x in negatives[a]]
        else:
            farther = [d[a][x] for x in negatives[a] if d[a][x] > d[a][p]]
            chosen = min(farther) if farther else max(d[a][x] for x in negatives[a])
            terms.append(max(0.0, d[a][p] - chosen + margin))
    return sum(terms) / len(terms)


def test_triplet_hand_computed():
    e = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [0.0, 0.5]])
    labels = torch.tensor([0, 0, 1, 1])
    # squared distances: d01 = 1, d02 = 4, d03 = 0.25, d12 = 5, d13 = 1.25, d23 = 2.25
    # hard: each anchor's farthest positive against its closest negative
    assert triplet(e, labels, 0.2, "hard").item() == pytest.approx(
        (max(0, 1 - 0.25 + 0.2) + max(0, 1 - 1.25 + 0.2) + max(0, 2.25 - 4 + 0.2) + max(0, 2.25 - 0.25 + 0.2)) / 4)
    # semi-hard, per anchor-positive pair: the closest negative farther than the positive (0→1 picks 4, 1→0 picks
    # 1.25, 2→3 picks 4), or the farthest negative where none is farther (3→2: 1.25)
    assert triplet(e, labels, 0.2, "semi-hard").item() == pytest.approx(
        (max(0, 1 - 4 + 0.2) + max(0, 1 - 1.25 + 0.2) + max(0, 2.25 - 4 + 0.2) + max(0, 2.25 - 1.25 + 0.2)) / 4)


@pytest.mark.parametrize("mining", ["semi-hard", "hard", "all"])
@pytest.mark.parametrize("n,classes,margin", [(6, 2, 0.2), (9, 3, 1.0), (8, 4, 0.5)])
def test_triplet_matches_reference(mining, n, classes, margin):
    torch.manual_seed(n + classes)
    e = F.normalize(torch.randn(n, 3, dtype=torch.float64), dim=1)
    labels = torch.arange(n) % classes
    assert triplet(e, labels, margin, mining).item() == pytest.approx(triplet_reference(e, labels, margin, mining), rel=1e-6)


def test_triplet_gradient_and_bad_input():
    e = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    torch.autograd.gradcheck(lambda x: triplet(x, labels, 5.0, "all"), (e,))
    assert triplet(e, torch.arange(6), 0.2).item() == 0.0  # no positives: nothing to learn
    with pytest.raises(ValueError, match="mining must be one of semi-hard, hard, all"):
        triplet(e, labels, mining="easy")

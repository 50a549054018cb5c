"""MoCo's InfoNCE and SwAV's Sinkhorn codes and swapped-prediction loss, checked against
independent numpy / loop references, plus two-process CPU (gloo) checks of the gathered
Sinkhorn and of the no-grad collectives."""
import math

import numpy as np
import pytest
import torch

from selfsup.distributed import all_reduce_sum, gather_no_grad
from selfsup.losses import info_nce, sinkhorn, swav
from two_processes import run_two_processes


# ---------------------------------------------------------------- references

def info_nce_reference(q: np.ndarray, k: np.ndarray, queue: np.ndarray, temperature: float) -> float:
    """MoCo eq. (1) written out query by query."""
    unit = lambda v: v / np.linalg.norm(v)  # noqa: E731
    total = 0.0
    for i in range(len(q)):
        qi = unit(q[i])
        positive = math.exp(qi @ unit(k[i]) / temperature)
        negatives = sum(math.exp(qi @ unit(n) / temperature) for n in queue)
        total += -math.log(positive / (positive + negatives))
    return total / len(q)


def sinkhorn_reference(scores: np.ndarray, epsilon: float, iterations: int) -> np.ndarray:
    """Sinkhorn-Knopp as in the SwAV paper's pseudo-code, looping over rows and columns."""
    q = np.exp(scores / epsilon).T.copy()  # [K, B]
    k, b = q.shape
    q /= q.sum()
    for _ in range(iterations):
        for row in range(k):
            q[row] /= q[row].sum() * k
        for col in range(b):
            q[:, col] /= q[:, col].sum() * b
    return (q * b).T


def swav_reference(scores, num_assign, temperature, epsilon, iterations, queue_scores=None) -> float:
    """Swapped prediction with an explicit cross-entropy per (assigned crop, other crop, sample)."""
    crops = len(scores)
    batch = scores[0].shape[0]
    total = 0.0
    for i in range(num_assign):
        s = scores[i] if queue_scores is None else np.concatenate([queue_scores[i], scores[i]])
        codes = sinkhorn_reference(s, epsilon, iterations)[-batch:]
        for v in range(crops):
            if v == i:
                continue
            for n in range(batch):
                x = scores[v][n] / temperature
                log_softmax = x - x.max() - math.log(np.exp(x - x.max()).sum())
                total += -(codes[n] * log_softmax).sum() / batch / (crops - 1) / num_assign
    return total


def cosine_scores(batch: int, prototypes: int, dim: int = 6, dtype=torch.float64) -> torch.Tensor:
    """Scores as SwAV makes them: unit features against unit prototypes, in [-1, 1]."""
    z = torch.nn.functional.normalize(torch.randn(batch, dim, dtype=dtype), dim=1)
    c = torch.nn.functional.normalize(torch.randn(prototypes, dim, dtype=dtype), dim=1)
    return z @ c.T


# ---------------------------------------------------------------- info_nce

def test_info_nce_hand_computed():
    # Unit queries e1, e2 with keys equal to themselves and one queued negative e2: query 0
    # scores 1 against its key and 0 against the negative, query 1 scores 1 against both.
    t = 0.5
    query = torch.tensor([[3.0, 0.0], [0.0, 2.0]])
    key = torch.tensor([[1.0, 0.0], [0.0, 5.0]])
    queue = torch.tensor([[0.0, 1.0]])
    expected = (math.log(1 + math.exp(-1 / t)) + math.log(2)) / 2
    assert info_nce(query, key, queue, temperature=t).item() == pytest.approx(expected, rel=1e-6)


def test_info_nce_leaves_a_querys_own_image_out_of_its_negatives():
    # each query's loss equals info_nce against the queue without the rows of its own image
    g = torch.Generator().manual_seed(0)
    query, key, queue = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g), torch.randn(10, 6, generator=g)
    index, queue_index = torch.tensor([3, 5, 7, 9]), torch.tensor([3, 1, 5, 3, -1, 2, 9, 0, 4, 8])
    masked = info_nce(query, key, queue, 0.2, index=index, queue_index=queue_index)
    expected = sum(info_nce(query[i:i + 1], key[i:i + 1], queue[queue_index != index[i]], 0.2) for i in range(4)) / 4
    assert masked.item() == pytest.approx(expected.item(), rel=1e-6)
    assert masked.item() < info_nce(query, key, queue, 0.2).item()


@pytest.mark.parametrize("n,d,k", [(1, 3, 1), (4, 8, 16), (7, 5, 3), (3, 16, 64)])
@pytest.mark.parametrize("temperature", [0.07, 0.2, 1.0])
def test_info_nce_matches_reference(n, d, k, temperature):
    q, key, queue = (torch.randn(m, d, dtype=torch.float64) for m in (n, n, k))
    ours = info_nce(q, key, queue, temperature).item()
    expected = info_nce_reference(q.numpy(), key.numpy(), queue.numpy(), temperature)
    assert ours == pytest.approx(expected, rel=1e-9)


def test_info_nce_gradcheck_on_query():
    key, queue = torch.randn(4, 5, dtype=torch.float64), torch.randn(6, 5, dtype=torch.float64)
    query = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda q: info_nce(q, key, queue, 0.2), (query,))


def test_info_nce_key_and_queue_get_no_gradient():
    query = torch.randn(4, 5, requires_grad=True)
    key = torch.randn(4, 5, requires_grad=True)
    queue = torch.randn(6, 5, requires_grad=True)
    info_nce(query, key, queue).backward()
    assert query.grad is not None and query.grad.abs().sum() > 0
    assert key.grad is None and queue.grad is None


def test_info_nce_with_an_empty_queue_is_zero_with_zero_gradient():
    query = torch.randn(4, 5, requires_grad=True)
    loss = info_nce(query, torch.randn(4, 5), torch.empty(0, 5))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.all(query.grad == 0)


@pytest.mark.parametrize("query,key,queue", [
    ((4, 5), (3, 5), (6, 5)),
    ((4, 5), (4, 6), (6, 5)),
    ((4, 5), (4, 5), (6, 4)),
    ((4, 5), (4, 5), (6,)),
    ((5,), (5,), (6, 5)),
])
def test_info_nce_rejects_bad_shapes(query, key, queue):
    with pytest.raises(ValueError, match="info_nce"):
        info_nce(torch.randn(query), torch.randn(key), torch.randn(queue))


# ---------------------------------------------------------------- sinkhorn

@pytest.mark.parametrize("b,k", [(1, 3), (8, 5), (16, 30), (33, 7)])
@pytest.mark.parametrize("epsilon", [0.05, 0.1, 0.5])
@pytest.mark.parametrize("iterations", [0, 1, 3, 10])
def test_sinkhorn_matches_reference(b, k, epsilon, iterations):
    scores = cosine_scores(b, k)
    ours = sinkhorn(scores, epsilon, iterations)
    assert ours.shape == (b, k)
    np.testing.assert_allclose(ours.numpy(), sinkhorn_reference(scores.numpy(), epsilon, iterations),
                               rtol=1e-9, atol=1e-12)


def test_sinkhorn_float32_matches_reference():
    scores = cosine_scores(16, 10)
    ours = sinkhorn(scores.float())
    assert ours.dtype == torch.float32
    np.testing.assert_allclose(ours.numpy(), sinkhorn_reference(scores.numpy(), 0.05, 3), atol=1e-5)


@pytest.mark.parametrize("iterations", [1, 3, 7])
def test_sinkhorn_codes_sum_to_one(iterations):
    codes = sinkhorn(cosine_scores(12, 9), iterations=iterations)
    assert torch.all(codes >= 0)
    assert torch.allclose(codes.sum(dim=1), torch.ones(12, dtype=codes.dtype), atol=1e-12)


@pytest.mark.parametrize("epsilon,iterations", [(0.1, 50), (0.05, 200)])  # smaller ε converges slower
def test_sinkhorn_equipartition_after_many_iterations(epsilon, iterations):
    b, k = 32, 8
    codes = sinkhorn(cosine_scores(b, k), epsilon=epsilon, iterations=iterations)
    assert torch.allclose(codes.sum(dim=0), torch.full((k,), b / k, dtype=codes.dtype), atol=1e-3)


def test_sinkhorn_without_iterations_is_a_global_softmax():
    scores = cosine_scores(5, 4)
    expected = torch.softmax((scores / 0.1).flatten(), dim=0).view(5, 4) * 5
    assert torch.allclose(sinkhorn(scores, epsilon=0.1, iterations=0), expected, atol=1e-12)


def test_sinkhorn_shift_invariant_and_stable_for_large_scores():
    scores = cosine_scores(8, 6)
    codes = sinkhorn(scores)
    shifted = sinkhorn(scores + 100.0)  # exp(2000) overflows even float64 without the max shift
    assert torch.isfinite(shifted).all()
    assert torch.allclose(codes, shifted, atol=1e-9)


def test_sinkhorn_no_grad_and_float32_under_autocast():
    scores = cosine_scores(8, 6).float().requires_grad_(True)
    codes = sinkhorn(scores)
    assert not codes.requires_grad and codes.grad_fn is None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half = sinkhorn(scores.detach().bfloat16())
    assert half.dtype == torch.float32
    assert torch.allclose(half, codes, atol=0.05)


# ---------------------------------------------------------------- swav

@pytest.mark.parametrize("crops,num_assign", [(2, 1), (2, 2), (4, 2), (6, 2), (3, 3)])
@pytest.mark.parametrize("temperature,epsilon,iterations", [(0.1, 0.05, 3), (0.5, 0.1, 1)])
def test_swav_matches_reference(crops, num_assign, temperature, epsilon, iterations):
    scores = [cosine_scores(6, 5) for _ in range(crops)]
    ours = swav(scores, num_assign, temperature, epsilon, iterations).item()
    expected = swav_reference([s.numpy() for s in scores], num_assign, temperature, epsilon, iterations)
    assert ours == pytest.approx(expected, rel=1e-9)


def test_swav_with_queue_matches_reference_and_changes_codes():
    batch, queued = 4, 10
    scores = [cosine_scores(batch, 5) for _ in range(3)]
    queue_scores = [cosine_scores(queued, 5) for _ in range(2)]
    with_queue = swav(scores, 2, queue_scores=queue_scores).item()
    without = swav(scores, 2).item()
    expected = swav_reference([s.numpy() for s in scores], 2, 0.1, 0.05, 3, [q.numpy() for q in queue_scores])
    assert with_queue == pytest.approx(expected, rel=1e-9)
    assert with_queue != pytest.approx(without, rel=1e-6)
    # The batch's codes are the last rows of Sinkhorn on [queue; batch] and differ from the
    # codes of the batch alone.
    full = sinkhorn_reference(np.concatenate([queue_scores[0].numpy(), scores[0].numpy()]), 0.05, 3)
    alone = sinkhorn_reference(scores[0].numpy(), 0.05, 3)
    assert not np.allclose(full[-batch:], alone, atol=1e-6)


def test_swav_gradients_reach_every_crop_but_not_through_codes():
    batch, t = 5, 0.1
    raw = [cosine_scores(batch, 4) for _ in range(3)]
    scores = [r.clone().requires_grad_(True) for r in raw]
    swav(scores, num_assign=2, temperature=t).backward()
    codes = [sinkhorn(raw[i]) for i in range(2)]
    # With constant codes whose rows sum to 1, d/dx of -sum_k q_k log softmax(x / t)_k is
    # (softmax(x / t) - q) / t; each pair is weighted 1 / (batch * (crops - 1) * num_assign).
    weight = 1 / (batch * 2 * 2)
    for v in range(3):
        p = torch.softmax(raw[v] / t, dim=1)
        expected = sum((p - codes[i]) / t * weight for i in range(2) if i != v)
        assert scores[v].grad.abs().sum() > 0
        assert torch.allclose(scores[v].grad, expected, atol=1e-10)


def test_swav_rejects_bad_inputs():
    with pytest.raises(ValueError, match="swav"):
        swav([torch.randn(4, 3)])
    with pytest.raises(ValueError, match="swav"):
        swav([torch.randn(4, 3), torch.randn(5, 3)])
    with pytest.raises(ValueError, match="swav"):
        swav([torch.randn(4, 3), torch.randn(4, 3)], num_assign=3)
    with pytest.raises(ValueError, match="swav"):
        swav([torch.randn(4, 3), torch.randn(4, 3)], queue_scores=[torch.randn(2, 3)])


# ---------------------------------------------------------------- two processes (gloo)

def _sinkhorn_worker(rank, world, scores, splits, crops):
    results = {}
    for split in splits:
        rows = scores[:split] if rank == 0 else scores[split:]
        results[split] = sinkhorn(rows, gather=True)
    half = crops[0].shape[0] // world
    local = [c[rank * half:(rank + 1) * half] for c in crops]
    results["swav"] = swav(local, num_assign=2, gather=True)
    return results


def test_gathered_sinkhorn_equals_single_process():
    world, splits = 2, [4, 3]  # equal halves, and unequal batches of 3 and 5
    scores = cosine_scores(8, 5, dtype=torch.float32)
    crops = [cosine_scores(8, 5, dtype=torch.float32) for _ in range(3)]
    results = run_two_processes(_sinkhorn_worker, scores, splits, crops)

    full = sinkhorn(scores)
    for split in splits:
        assert torch.allclose(results[0][split], full[:split], atol=1e-6)
        assert torch.allclose(results[1][split], full[split:], atol=1e-6)
    # Each rank averages over its own half of the global batch, so DDP's mean is the full loss.
    mean_loss = sum(results[r]["swav"] for r in range(world)) / world
    assert torch.allclose(mean_loss, swav(crops, num_assign=2), atol=1e-6)


def _collectives_worker(rank, world):
    x = torch.full((2, 3), float(rank)).requires_grad_(True)
    gathered = gather_no_grad(x)
    total = all_reduce_sum(x)
    return gathered, gathered.requires_grad, total, total.requires_grad, x.detach()


def test_gather_no_grad_and_all_reduce_sum_two_processes():
    world = 2
    results = run_two_processes(_collectives_worker)
    expected = torch.cat([torch.zeros(2, 3), torch.ones(2, 3)])  # rank order
    for r in range(world):
        gathered, gathered_grad, total, total_grad, x = results[r]
        assert torch.equal(gathered, expected) and not gathered_grad
        assert torch.equal(total, torch.ones(2, 3)) and not total_grad
        assert torch.equal(x, torch.full((2, 3), float(r)))  # reduced a copy, not in place


def test_collectives_are_identity_on_one_process():
    x = torch.randn(3, 2, requires_grad=True)
    gathered = gather_no_grad(x)
    assert torch.equal(gathered, x.detach()) and not gathered.requires_grad
    total = all_reduce_sum(x)
    assert torch.equal(total, x.detach()) and not total.requires_grad and total is not x

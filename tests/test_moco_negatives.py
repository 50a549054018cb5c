"""MoCo's dictionary options (queue | batch | bank) and batch_info_nce, the end-to-end loss."""
import math

import pytest
import torch
import torch.nn.functional as F

from selfsup.losses import batch_info_nce
from support import perturb, replay, tiny
from two_processes import run_two_processes


def batch_info_nce_reference(q, k, t):
    q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
    terms = [-math.log(math.exp((q[i] @ k[i]).item() / t) / sum(math.exp((q[i] @ k[j]).item() / t)
                                                                for j in range(len(k)))) for i in range(len(q))]
    return sum(terms) / len(terms)


@pytest.mark.parametrize("n,d,t", [(2, 3, 1.0), (5, 4, 0.2), (8, 16, 0.07)])
def test_batch_info_nce_matches_reference(n, d, t):
    q, k = torch.randn(n, d, dtype=torch.float64), torch.randn(n, d, dtype=torch.float64)
    assert batch_info_nce(q, k, t).item() == pytest.approx(batch_info_nce_reference(q, k, t), rel=1e-9)


def test_batch_info_nce_hand_computed_and_gradients():
    q, k = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert batch_info_nce(q, k, 0.5).item() == pytest.approx(-math.log(math.e ** 2 / (math.e ** 2 + 1)), rel=1e-6)
    q = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    k = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda a, b: batch_info_nce(a, b, 0.3), (q, k))  # keys keep their gradient


def _worker(rank, world, q, k):
    n = q.shape[0] // world
    local_q, local_k = (x[rank * n:(rank + 1) * n].clone().requires_grad_(True) for x in (q, k))
    loss = batch_info_nce(local_q, local_k, 0.2, gather=True)
    loss.backward()
    return loss.detach(), local_q.grad, local_k.grad


def test_batch_info_nce_two_processes_equal_one():
    q, k = torch.randn(6, 4, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64)
    results = run_two_processes(_worker, q, k)
    full_q, full_k = q.clone().requires_grad_(True), k.clone().requires_grad_(True)
    full = batch_info_nce(full_q, full_k, 0.2)
    full.backward()
    assert torch.allclose(sum(results[r][0] for r in range(2)) / 2, full.detach())
    assert torch.allclose(torch.cat([results[r][1] for r in range(2)]) / 2, full_q.grad)
    assert torch.allclose(torch.cat([results[r][2] for r in range(2)]) / 2, full_k.grad)


def moco_batch(method, n=16):
    images = torch.Generator().manual_seed(0)
    return {"views": [torch.rand(n, 3, 16, 16, generator=images) for _ in range(2)], "index": torch.arange(3, 3 + n)}


def end_to_end_reference(method, batch, detach_keys=False):
    """The end-to-end loss written out: queries of the first view; keys of the second through the
    same network on the batch reversed (split BN sees other groups), put back in order."""
    x_query, x_key = batch["views"]
    query = method.projector(method.backbone(x_query))
    key = method.projector(method.backbone(x_key.flip(0))).flip(0)
    return batch_info_nce(query, key.detach() if detach_keys else key, method.cfg["temperature"])


def test_end_to_end_keys_are_computed_on_a_shuffled_batch_and_train(monkeypatch):
    import copy

    import selfsup.methods.moco as moco

    seen = []
    monkeypatch.setattr(moco, "shuffle_across_ranks", lambda x, seed: seen.append(seed) or (x.flip(0), torch.arange(
        x.shape[0] - 1, -1, -1)))
    method = tiny("moco-v2", negatives="batch")
    assert not hasattr(method, "key_backbone") and not hasattr(method, "queue")
    references = [copy.deepcopy(method), copy.deepcopy(method)]
    batch = moco_batch(method)
    loss = method.training_step(batch, 0)["loss"]
    loss.backward()
    assert len(seen) == 1
    expected = end_to_end_reference(references[0], batch)
    expected.backward()
    assert torch.allclose(loss, expected)  # keys unshuffled back to their queries
    gradient = lambda m: m.backbone.conv1.weight.grad  # noqa: E731
    assert torch.allclose(gradient(method), gradient(references[0]), atol=1e-6)
    end_to_end_reference(references[1], batch, detach_keys=True).backward()
    assert not torch.allclose(gradient(method), gradient(references[1]), atol=1e-6)  # the keys' gradient counts


def test_queue_keeps_image_indices_and_is_not_clamped_to_the_dataset():
    method = tiny("moco-v2", queue_size=4096)
    assert method.queue.size == 4096 > method.run.train_size
    batch = moco_batch(method)
    method.training_step(batch, 0)
    assert method.queue.index[: len(batch["index"])].tolist() == batch["index"].tolist()


def moco_loss_reference(query, key, negatives, negatives_index, index, t):
    """InfoNCE written out per query: its key, then every negative of another image."""
    q, k, n = (F.normalize(x.double(), dim=1) for x in (query, key, negatives))
    terms = []
    for i in range(len(q)):
        scores = [(q[i] @ k[i]).item() / t] + [(q[i] @ n[j]).item() / t for j in range(len(n))
                                               if negatives_index[j] != index[i]]
        terms.append(-scores[0] + math.log(sum(math.exp(s) for s in scores)))
    return sum(terms) / len(terms)


def test_a_moco_step_scores_queries_against_momentum_keys_and_then_queues_those_keys():
    # He et al. 2020, Algorithm 1: q = f_q(x_q), k = f_k(x_k) (the momentum encoder), logits
    # against k and the queue (our choice: none of the query's own image), then enqueue k
    method = tiny("moco-v2", backbone={"batchnorm": "local"}, queue_size=64)  # keys independent of the shuffle
    perturb(method.key_backbone, method.key_projector)
    batch = moco_batch(method, n=8)
    method.queue.push(F.normalize(torch.randn(8, 128), dim=1), torch.arange(7, 15))  # images 7..10 are the batch's
    negatives, negatives_index = method.queue.items().clone(), method.queue.indices().clone()
    loss = method.training_step(batch, 0)["loss"]
    with torch.no_grad():
        query = method.projector(method.backbone(batch["views"][0]))
        key = method.key_projector(method.key_backbone(batch["views"][1]))
    expected = moco_loss_reference(query, key, negatives, negatives_index.tolist(), batch["index"].tolist(), 0.2)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert torch.allclose(method.queue.queue[8:16], F.normalize(key, dim=1), atol=1e-6)
    assert method.queue.index[8:16].tolist() == batch["index"].tolist() and int(method.queue.pointer) == 16


def test_memory_bank_dictionary_updates_the_batch_entries_only():
    # Wu et al. 2018's bank as MoCo's Fig. 3 uses it: the query against its image's entry and
    # drawn entries of other images, all read before the step writes the batch's entries
    method = tiny("moco-v2", negatives="bank", queue_size=100)
    before = method.memory.bank.clone()
    batch = moco_batch(method)
    loss = replay(method, lambda: method.training_step(batch, 0))["loss"]
    assert not hasattr(method, "key_backbone")
    changed = (method.memory.bank != before).any(dim=1)
    assert changed[batch["index"]].all() and changed.sum() == len(batch["index"])
    sampled = method.memory.sample(100, method.generator)
    with torch.no_grad():
        query = method.projector(method.backbone(batch["views"][0]))
    index = batch["index"]
    expected = moco_loss_reference(query, before[index], before[sampled], sampled.tolist(), index.tolist(), 0.2)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    mixed = 0.5 * before[index] + 0.5 * F.normalize(query, dim=1)
    assert torch.allclose(method.memory.bank[index], F.normalize(mixed, dim=1), atol=1e-6)

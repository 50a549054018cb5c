"""Rank-aware samplers (ranks emulated) and the shared method helpers."""
import math

import pytest
import torch
from torch import nn

import selfsup.data.samplers as samplers
from selfsup.data.samplers import ClassBatchSampler, ShuffleBatchSampler, UniformLabelBatchSampler
from selfsup.methods.helpers import (FeatureQueue, cosine_momentum, ema_update, frozen_copy, shuffle_across_ranks,
                                     unshuffle_across_ranks)


def per_rank(sampler, world, monkeypatch):
    batches = {}
    for rank in range(world):
        monkeypatch.setattr(samplers, "world_info", lambda rank=rank: (rank, world))
        batches[rank] = list(sampler)
    return batches


@pytest.mark.parametrize("world", [1, 2, 3])
def test_shuffle_sampler_shards_disjointly_and_reshuffles_each_epoch(world, monkeypatch):
    sampler = ShuffleBatchSampler(96, 8, seed=3)
    epochs = []
    for epoch in range(2):
        sampler.set_epoch(epoch)
        batches = per_rank(sampler, world, monkeypatch)
        assert len({len(b) for b in batches.values()}) == 1  # every rank steps equally often
        flat = [i for rank in batches.values() for batch in rank for i in batch]
        assert len(flat) == len(set(flat)) == 96 // (8 * world) * 8 * world  # disjoint, each index at most once
        epochs.append(flat)
    assert epochs[0] != epochs[1]
    sampler.set_epoch(1)
    assert per_rank(sampler, world, monkeypatch) == per_rank(sampler, world, monkeypatch)  # a function of the epoch


def test_class_sampler_draws_p_classes_times_k_images():
    labels = torch.arange(200) % 10
    sampler = ClassBatchSampler(labels, classes_per_batch=4, per_class=5, seed=0)
    batches = list(sampler)
    assert len(batches) == 10
    for batch in batches:
        counts = torch.bincount(labels[batch], minlength=10)
        assert sorted(counts[counts > 0].tolist()) == [5, 5, 5, 5] and len(set(batch)) == 20


def test_uniform_label_sampler_balances_clusters_and_reads_the_latest_labels():
    labels = torch.zeros(1000, dtype=torch.long)
    labels[:50] = 1  # one large cluster, one small
    sampler = UniformLabelBatchSampler(lambda: labels, 1000, 100, seed=0)
    drawn = torch.tensor([i for batch in sampler for i in batch])
    counts = torch.bincount(labels[drawn])
    assert len(drawn) == 1000 and abs(counts[0] - counts[1]) <= 2
    labels[:] = torch.arange(1000) % 4  # re-clustered after the sampler was made
    drawn = torch.tensor([i for batch in sampler for i in batch])
    assert all(abs(c - 250) <= 1 for c in torch.bincount(labels[drawn]).tolist())


def test_ema_update_and_cosine_momentum():
    online, target = nn.Linear(3, 2), nn.Linear(3, 2)
    expected = [0.9 * t.detach() + 0.1 * o.detach() for t, o in zip(target.parameters(), online.parameters())]
    ema_update(target, online, 0.9)
    for t, e in zip(target.parameters(), expected):
        assert torch.allclose(t, e)
    assert cosine_momentum(0, 100, 0.996) == pytest.approx(0.996)
    assert cosine_momentum(100, 100, 0.996) == pytest.approx(1.0)
    assert cosine_momentum(50, 100, 0.996) == pytest.approx(1 - 0.004 * (math.cos(math.pi / 2) + 1) / 2)
    frozen = frozen_copy(online)
    assert not any(p.requires_grad for p in frozen.parameters())
    assert all(torch.equal(a, b) for a, b in zip(frozen.parameters(), online.parameters()))


def test_feature_queue_is_first_in_first_out_with_wraparound():
    queue = FeatureQueue(5, 2)
    assert queue.items().shape == (0, 2)
    queue.push(torch.arange(6.0).view(3, 2))
    assert queue.items().tolist() == [[0, 1], [2, 3], [4, 5]]
    queue.push(torch.arange(6.0, 12.0).view(3, 2))  # wraps: the oldest row is overwritten
    assert int(queue.filled) == 5 and int(queue.pointer) == 1
    assert queue.items().tolist() == [[10, 11], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert queue.indices().tolist() == [-1] * 5  # pushed without image indices
    queue.push(torch.zeros(2, 2), index=torch.tensor([7, 8]))
    assert queue.indices().tolist() == [-1, 7, 8, -1, -1]
    state = queue.state_dict()
    assert set(state) == {"queue", "index", "pointer", "filled"}
    restored = FeatureQueue(5, 2)  # a resumed run: the count of queued rows comes back with the state
    restored.load_state_dict(state)
    assert torch.equal(restored.items(), queue.items()) and torch.equal(restored.indices(), queue.indices())
    partly = FeatureQueue(5, 2)
    partly.push(torch.ones(2, 2))
    restored.load_state_dict(partly.state_dict())
    assert restored.items().tolist() == [[1, 1], [1, 1]]
    random = FeatureQueue(4, 3, random_init=True)
    assert torch.allclose(random.items().norm(dim=1), torch.ones(4))


def test_shuffle_on_one_device_permutes_and_restores():
    x = torch.arange(8.0).view(8, 1)
    shuffled, restore = shuffle_across_ranks(x, seed=5)
    assert not torch.equal(shuffled, x) and sorted(shuffled.flatten().tolist()) == x.flatten().tolist()
    assert torch.equal(unshuffle_across_ranks(shuffled * 10, restore), x * 10)
    again, _ = shuffle_across_ranks(x, seed=5)
    assert torch.equal(again, shuffled)


def test_unshuffle_keeps_the_gradient_of_end_to_end_keys():
    x = torch.arange(8.0).view(8, 1)
    weight = torch.ones(1, requires_grad=True)
    shuffled, restore = shuffle_across_ranks(x, seed=5)
    restored = unshuffle_across_ranks(shuffled * weight, restore)
    (restored.flatten() * torch.arange(8.0)).sum().backward()
    assert torch.equal(restored.detach(), x) and weight.grad.item() == sum(i * i for i in range(8))

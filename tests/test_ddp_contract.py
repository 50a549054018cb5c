"""Two CPU processes (gloo): the indices each rank trains on through the engine, and the
MoCo queue and shuffle across ranks against the single-process result."""
import json
from pathlib import Path

import pytest
import torch

from support import TINY
from selfsup.methods.helpers import FeatureQueue, shuffle_across_ranks, shuffled_order, unshuffle_across_ranks
from two_processes import run_two_processes, two_process_command

SCRIPT = Path(__file__).with_name("ddp_record.py")


pytestmark = pytest.mark.ddp


def _ddp_run(out, record_dir, extra=(), crash_epoch=None):
    args = [a for a in TINY if a not in ("--batch-size", "64")]
    return two_process_command(["pretrain", "--method", "toy-recorder", "--epochs", "3", "--batch-size", "32",
                                "--out", out, "--set", "knn.every_n_epochs=0", *extra] + args, script=SCRIPT,
                               RECORD_DIR=str(record_dir),
                               CRASH_AT_EPOCH=str(crash_epoch if crash_epoch is not None else -1))


def _records(record_dir):
    return {rank: {r["epoch"]: r["indices"] for r in map(json.loads, (record_dir / f"rank{rank}.jsonl").open())}
            for rank in (0, 1)}


def test_ranks_see_disjoint_indices_every_index_once_new_order_each_epoch_same_after_resume(tmp_path):
    straight_dir, resumed_dir = tmp_path / "rec1", tmp_path / "rec2"
    straight_dir.mkdir(), resumed_dir.mkdir()
    proc = _ddp_run(tmp_path / "straight", straight_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = _records(straight_dir)
    for epoch in range(3):
        a, b = seen[0][epoch], seen[1][epoch]
        assert not set(a) & set(b)  # disjoint across ranks
        assert sorted(a + b) == list(range(512))  # 512 images, 2 ranks x 8 batches x 32: each once
    assert seen[0][0] != seen[0][1] != seen[0][2]  # a new order each epoch

    crashed = _ddp_run(tmp_path / "resumed", resumed_dir, crash_epoch=2)
    assert crashed.returncode != 0
    proc = _ddp_run(tmp_path / "resumed", resumed_dir, extra=["--resume"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = _records(resumed_dir)
    for rank in (0, 1):
        assert again[rank] == seen[rank]  # epochs 0-1 before the crash, epoch 2 after the resume
        trained = [json.loads(line)["epoch"] for line in (resumed_dir / f"rank{rank}.jsonl").open()]
        assert trained == [0, 1, 2]  # the resumed run trained epoch 2 alone, not 0 and 1 again
    a = torch.load(tmp_path / "straight" / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=True)
    for key, value in a["state_dict"].items():
        assert torch.allclose(value.float(), b["state_dict"][key].float(), atol=1e-5), key


def _worker(rank, world, keys, batch):
    n = keys.shape[1] // world
    queue = FeatureQueue(10, keys.shape[2])
    for step in range(2):  # two pushes: the second wraps around
        queue.push(keys[step, rank * n:(rank + 1) * n])
    m = batch.shape[0] // world
    local = batch[rank * m:(rank + 1) * m]
    shuffled, restore = shuffle_across_ranks(local, seed=11)
    restored = unshuffle_across_ranks(shuffled * 2, restore)
    return queue.state_dict(), shuffled, restored


def test_two_process_queue_and_shuffle_equal_single_process():
    world = 2
    keys, batch = torch.randn(2, 6, 4), torch.arange(8.0).view(8, 1)
    results = run_two_processes(_worker, keys, batch)

    single = FeatureQueue(10, 4)
    for step in range(2):
        single.push(keys[step])
    for rank in range(world):
        state, shuffled, restored = results[rank]
        for name, value in single.state_dict().items():
            assert torch.equal(state[name], value), name
        assert torch.equal(restored, 2 * batch[rank * 4:(rank + 1) * 4])  # each rank gets its own rows back
    everything = torch.cat([results[r][1] for r in range(world)])
    # the global batch in the single process's permutation of it: rows cross between the ranks
    assert torch.equal(everything, batch[shuffled_order(8, 11, "cpu")])
    assert (results[0][1] >= 4).any() and (results[1][1] < 4).any()

"""Time to target (``knn.target_knn``, ``knn.target_linear``, ``knn.every_n_steps``): the
monitor checks every N steps, stops training at the first check that reaches the targets and
keeps that check with the training time up to it; bad settings are refused before any work."""

import pytest
import torch

from support import TINY
from selfsup.config import resolve
from selfsup.engine.train import pretrain
from selfsup.errors import SelfSupError

STEPS_PER_EPOCH = 8  # the synthetic set's 512 images in batches of 64


def target_cfg(epochs: int = 2, **knn):
    assignments = [TINY[i + 1] for i, arg in enumerate(TINY) if arg == "--set"]
    return resolve("simclr", flags={"dataset": "synthetic", "epochs": epochs, "batch_size": 64, "backbone": {"width": 8}},
                   assignments=assignments + [f"knn.{key}={value}" for key, value in knn.items()])


def test_the_monitor_checks_every_n_steps_and_after_the_last(tmp_path):
    metrics = pretrain(target_cfg(every_n_steps=5), tmp_path / "run")
    history = metrics["knn_history"]
    assert [h["step"] for h in history] == [5, 10, 15, 16]
    assert [h["epoch"] for h in history] == [5 / 8, 10 / 8, 15 / 8, 2.0]
    assert "target" not in metrics and "linear_top1" not in history[0]
    seconds = [h["train_seconds"] for h in history]
    assert seconds == sorted(seconds) and 0 < seconds[-1] <= metrics["train_seconds"]


def test_reaching_the_kNN_target_stops_training_at_that_check(tmp_path):
    metrics = pretrain(target_cfg(every_n_steps=3, target_knn=0.0), tmp_path / "run")
    reached = metrics["target"]["reached"]
    assert reached["step"] == 3 and [h["step"] for h in metrics["knn_history"]] == [3]
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 3
    # the check's own time is not training time
    assert 0 < reached["train_seconds"] < metrics["train_seconds"]


@pytest.mark.parametrize("linear, stops", [(0.0, True), (1.01, False)])
def test_the_linear_target_is_checked_only_once_the_kNN_target_is_reached(tmp_path, linear, stops):
    metrics = pretrain(target_cfg(every_n_steps=4, target_knn=0.0, target_linear=linear, target_probe_epochs=2),
                       tmp_path / "run")
    history = metrics["knn_history"]
    assert all(0 <= h["linear_top1"] <= 1 for h in history)
    if stops:
        assert metrics["target"]["reached"] == history[0] and len(history) == 1
    else:  # never reached: every check, the whole run
        assert metrics["target"] == {"knn_top1": 0.0, "linear_top1": 1.01, "reached": None}
        assert [h["step"] for h in history] == [4, 8, 12, 16]


def test_an_unreachable_kNN_target_trains_a_probe_only_at_the_last_check(tmp_path):
    metrics = pretrain(target_cfg(epochs=1, every_n_steps=3, target_knn=1.01, target_linear=0.0,
                                  target_probe_epochs=2), tmp_path / "run")
    assert metrics["target"]["reached"] is None  # a probe above its target does not make up for the kNN
    assert [h["step"] for h in metrics["knn_history"]] == [3, 6, 8]
    assert ["linear_top1" in h for h in metrics["knn_history"]] == [False, False, True]


@pytest.mark.parametrize("knn, message", [
    ({"target_linear": 0.5}, "needs knn.target_knn too"),
    ({"target_knn": 0.5, "every_n_epochs": 0}, "needs the monitor"),
])
def test_target_settings_that_cannot_work_are_refused(tmp_path, knn, message):
    with pytest.raises(SelfSupError, match=message):
        pretrain(target_cfg(**knn), tmp_path / "run")
    assert not (tmp_path / "run").exists()

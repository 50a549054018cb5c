"""Experiment trackers (``--logger``, Lightning's loggers): each writes its files under RUN/logs
with the run's config and its final metrics; unknown or missing trackers are clear errors."""
import csv
import importlib.util

import pytest

from selfsup.cli import main
from selfsup.config import resolve
from selfsup.errors import SelfSupError


def test_every_tracker_writes_the_config_and_final_metrics(tmp_path, tiny_args, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = tmp_path / "run"
    assert main(["pretrain", "--method", "simclr", "--epochs", "1", "--out", str(out), *tiny_args,
                 "--logger", "csv", "--logger", "tensorboard", "--logger", "wandb", "--logger", "mlflow"]) == 0
    logs = out / "logs"
    rows = list(csv.DictReader((logs / "csv" / "version_0" / "metrics.csv").open()))
    assert any(row.get("final/knn_top1") for row in rows)
    assert "method: simclr" in (logs / "csv" / "version_0" / "hparams.yaml").read_text()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(logs / "tensorboard" / "version_0"))
    events.Reload()
    assert {"final/knn_top1", "loss_epoch"} <= set(events.Tags()["scalars"])
    (wandb_run,) = list((logs / "wandb").glob("offline-run-*/run-*.wandb"))  # offline: nothing left the machine
    assert b"final/knn_top1" in wandb_run.read_bytes() and b'"method":"simclr"' in wandb_run.read_bytes()  # finished
    other = tmp_path / "other"  # the next run of this process is a W&B run of its own
    assert main(["pretrain", "--method", "simclr", "--epochs", "1", "--out", str(other), *tiny_args,
                 "--logger", "wandb"]) == 0
    (own,) = list((other / "logs" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert b"final/knn_top1" in own.read_bytes()
    mlflow_runs = [p for p in (logs / "mlruns").glob("*/*") if (p / "metrics").is_dir()]
    assert len(mlflow_runs) == 1
    assert (mlflow_runs[0] / "metrics" / "final" / "knn_top1").is_file()
    assert (mlflow_runs[0] / "params" / "cfg" / "method").read_text().strip() == "simclr"


def test_default_trackers_are_csv_and_tensorboard():
    assert resolve("simclr")["trainer"]["loggers"] == ["csv", "tensorboard"]


def test_unknown_or_missing_trackers_say_so(monkeypatch):
    with pytest.raises(SelfSupError, match="unknown logger 'neptune'"):
        resolve("simclr", assignments=["trainer.loggers=[csv, neptune]"])
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(SelfSupError, match=r"needs the 'wandb' package: pip install 'selfsup\[trackers\]'"):
        resolve("simclr", assignments=["trainer.loggers=[wandb]"])

"""The run directory shared by every command and suite: when two runs are the same, what
starting or resuming refuses, and that every committed run is still recognised as its suite's."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from selfsup.errors import SelfSupError
from selfsup.rundir import ResumeMismatch, RunDirectory, dump, precision_record

ROOT = Path(__file__).resolve().parents[1]


def _run_with(tmp_path, saved: dict) -> RunDirectory:
    run = RunDirectory(tmp_path / "run")
    run.write_config(saved)
    return run


def test_differences_name_the_changed_settings_only(tmp_path):
    saved = {"epochs": 5, "optimizer": {"lr": 0.1, "momentum": 0.9}, "trainer": {"progress_bar": True}}
    run = _run_with(tmp_path, saved)
    assert run.differences(saved) == []
    assert run.differences({**saved, "trainer": {"progress_bar": False}}) == []  # a progress bar never counts
    precise = _run_with(tmp_path / "precise", {**saved, "trainer": {"precision": "bf16-mixed"}})
    assert precise.differences({**saved, "trainer": {"precision": "32-true"}}) == []  # nor does precision
    changed = {**saved, "epochs": 6, "optimizer": {"lr": 0.2, "momentum": 0.9}}
    assert run.differences(changed) == ["epochs", "optimizer.lr"]
    assert run.differences(changed, scope=("optimizer",)) == ["optimizer.lr"]
    assert run.differences(changed, scope=("optimizer.momentum", "seed")) == []
    assert RunDirectory(tmp_path / "not-begun").differences(changed) == []  # nothing saved: nothing differs


def test_options_added_since_the_run_and_auto_values_do_not_make_it_another_run(tmp_path):
    run = _run_with(tmp_path, {"backbone": {"name": "resnet18", "width": 16}, "params": {"t": 0.2}})
    newer = {"backbone": {"name": "auto", "width": 16}, "params": {"t": 0.2, "added_option": 3}, "new_section": {}}
    assert run.differences(newer) == []
    assert run.differences({**newer, "backbone": {"name": "auto", "width": 32}}) == ["backbone.width"]
    # an option the run had and the configuration lost is a difference; a resolved name is compared
    assert run.differences({"backbone": {"name": "conv1d", "width": 16}, "params": {}}) == ["backbone.name", "params.t"]


@pytest.mark.parametrize("precisions, record", [
    (["32-true"] * 3, "32-true"),
    (["bf16-mixed", "32-true", "32-true"], "bf16-mixed (epoch 1), 32-true (epochs 2-3)"),
    (["32-true", "bf16-mixed", "bf16-mixed", "32-true"], "32-true (epoch 1), bf16-mixed (epochs 2-3), 32-true (epoch 4)"),
    (["32-true", None], None),  # an epoch whose precision is unknown: no record (config.yaml's is read)
    ([], None),
])
def test_precision_record_names_each_segment_with_its_epochs(precisions, record):
    assert precision_record([{"epoch": e, "precision": p} for e, p in enumerate(precisions)]) == record


def test_start_refuses_what_would_damage_a_run(tmp_path):
    cfg = {"epochs": 2, "seed": 0}
    fresh = RunDirectory(tmp_path / "fresh")
    assert fresh.start(cfg, resume=False) is None and not fresh.path.exists()  # nothing written yet
    (tmp_path / "file").write_text("x")
    with pytest.raises(SelfSupError, match="is a file"):
        RunDirectory(tmp_path / "file").start(cfg, resume=True)
    stray = tmp_path / "stray"
    (stray / "notes").mkdir(parents=True)
    with pytest.raises(SelfSupError, match="is not empty and holds no run"):
        RunDirectory(stray).start(cfg, resume=False)
    with pytest.raises(SelfSupError, match="holds no run"):
        RunDirectory(stray).start(cfg, resume=True)
    run = _run_with(tmp_path, cfg)
    assert run.start(cfg, resume=True) is None  # begun, no checkpoint yet: from the start
    with pytest.raises(SelfSupError, match="already holds a run; pass --resume"):
        run.start(cfg, resume=False)
    with pytest.raises(ResumeMismatch, match="epochs"):
        run.start({**cfg, "epochs": 3}, resume=True)
    run.checkpoint.parent.mkdir()
    run.checkpoint.write_bytes(b"not a checkpoint")
    with pytest.raises(SelfSupError, match="corrupt|not a selfsup checkpoint"):
        run.start(cfg, resume=True)
    run.finish({"knn_top1": 0.5})
    with pytest.raises(SelfSupError, match="already holds a finished run"):
        run.start(cfg, resume=False)
    for same_or_fewer in (cfg, {**cfg, "epochs": 1}):
        with pytest.raises(SelfSupError, match="finished run of 2 epochs; to extend it"):
            run.start(same_or_fewer, resume=True)
    with pytest.raises(SelfSupError, match="finished run of 2 epochs"):
        run.start({**cfg, "epochs": 3, "seed": 1}, resume=True)  # more epochs, and another seed
    assert run.metrics() == {"knn_top1": 0.5} and yaml.safe_load(run.config_file.read_text()) == cfg


def test_dump_writes_settings_in_their_order():
    assert dump({"b": 1, "a": {"c": 2}}) == "b: 1\na:\n  c: 2\n"


def _suite_configs():
    """(run directory, the configuration its suite builds for it today) of every committed
    fmnist-quick and ablations run."""
    from selfsup.bench.definitions import ABLATION_BUDGET, FMNIST_QUICK, ablation_runs, fmnist_quick_runs
    from selfsup.bench.suites import run_slug, suite_config

    for name, runs, overrides in (("fmnist-quick", fmnist_quick_runs(), FMNIST_QUICK),
                                  ("ablations", ablation_runs(), ABLATION_BUDGET)):
        for label, method, settings in runs:
            run_dir = ROOT / "benchmarks" / name / "runs" / run_slug(label)
            if (run_dir / "metrics.json").is_file():
                yield run_dir, suite_config(overrides, settings, method)


def test_every_committed_suite_run_is_still_its_suites_run():
    """An option added to a method or the defaults since a run was made must not turn the
    committed run into another one (its row would vanish from the table, or be trained again).
    A run made before a declared fix of its method (``Method.revision``), which may have changed
    its defaults, is marked in the table until it is made again: it is not held to today's settings."""
    from selfsup.bench.suites import SUITE_SCOPE, made_before_a_fix

    checked = 0
    for run_dir, cfg in _suite_configs():
        if not made_before_a_fix(RunDirectory(run_dir).metrics(), cfg["method"]):
            assert RunDirectory(run_dir).differences(cfg, SUITE_SCOPE) == [], run_dir
            checked += 1
    assert checked >= 40


def test_every_committed_run_rebuilds_its_model_from_its_config_yaml():
    """Old runs still load: the method of every committed image or series run is built from its
    config.yaml alone (a FROST run's starting checkpoint, not committed, left out)."""
    from selfsup.build import build_method

    built = 0
    for path in sorted((ROOT / "benchmarks").glob("*/runs/*/config.yaml")):
        cfg = yaml.safe_load(path.read_text())
        if "network" in cfg:  # forecasting runs are no Method
            continue
        cfg["backbone"]["init"] = None
        torch.manual_seed(0)
        assert build_method(cfg) is not None, path
        built += 1
    assert built > 100

"""End-to-end runs of the engine on the synthetic dataset: learning, checkpoints, resume."""
import json
from pathlib import Path

import pytest
import torch
import yaml

from support import TINY
from selfsup.cli import main
from selfsup.config import resolve
from selfsup.build import load_pretrained
from selfsup import precision
from selfsup.engine.train import pretrain
from selfsup.rundir import RunDirectory, run_of_checkpoint
from selfsup.methods.simclr import SimCLR
from support import SimulatedCrash, assert_same_state


def tiny_cfg(**overrides):
    """The resolved configuration of conftest's TINY command-line options."""
    assignments = [TINY[i + 1] for i, arg in enumerate(TINY) if arg == "--set"]
    cfg = resolve("simclr", flags={"dataset": "synthetic", "epochs": 2, "batch_size": 64, "backbone": {"width": 8}},
                  assignments=assignments)
    cfg.update(overrides)
    return cfg


def test_tiny_run_learns_and_writes_the_contract(tmp_path, tiny_args, capsys):
    out = tmp_path / "run"
    assert main(["pretrain", "--method", "simclr", "--epochs", "6", "--out", str(out), "--baselines", "--linear-probe"]
                + tiny_args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ["method", "dataset", "epochs", "final_loss", "knn_top1", "train_seconds", "samples_per_second"]:
        assert key in metrics
    assert metrics["method"] == "simclr" and metrics["epochs"] == 6
    assert 0 <= metrics["knn_top1"] <= 1 and metrics["samples_per_second"] > 0
    # 6 balanced classes: chance is 1/6; the pretrained features must beat chance and, by a
    # wide margin, the random-init backbone they started from (measured: 0.75 vs 0.39).
    assert metrics["knn_top1"] > 0.5
    assert metrics["knn_top1"] > metrics["baselines"]["random_init_knn_top1"] + 0.15
    assert metrics["final_loss"] < torch.log(torch.tensor(127.0)).item()  # below the uniform-guess loss
    assert metrics["linear_top1"] > 1 / 6 + 0.2
    summary = capsys.readouterr().out
    for name in ("standardized_pixels", "random_init"):
        value = metrics["baselines"][f"{name}_linear_top1"]
        assert 0 <= value <= 1 and f"{100 * value:.2f}%" in summary
    assert f"linear probe top-1 (100 epochs, backbone features): {100 * metrics['linear_top1']:.2f}%" in summary
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["data"]["channels"] == 3 and cfg["backbone"]["small_stem"] is True


def test_loaded_checkpoint_holds_exactly_the_saved_weights(tmp_path):
    cfg = tiny_cfg(epochs=1)
    pretrain(cfg, tmp_path / "run")
    module = load_pretrained(tmp_path / "run" / "checkpoints" / "last.ckpt")
    raw = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    for name, value in module.method.state_dict().items():
        assert torch.equal(value, raw["state_dict"]["method." + name]), name
    assert len(module.method.state_dict()) == len(raw["state_dict"])  # every saved weight is the method's
    assert module.cfg == cfg


def test_resume_continues_to_the_same_result(tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    straight_metrics = pretrain(tiny_cfg(epochs=3), straight)
    assert [h["epoch"] for h in straight_metrics["knn_history"]] == [1, 2, 3]

    interrupted = tmp_path / "interrupted"
    original = SimCLR.on_epoch_start

    def crash_in_third_epoch(self, epoch, loader):
        if epoch == 2:
            raise SimulatedCrash
        original(self, epoch, loader)

    monkeypatch.setattr(SimCLR, "on_epoch_start", crash_in_third_epoch)
    with pytest.raises(SimulatedCrash):
        pretrain(tiny_cfg(epochs=3), interrupted)
    assert not (interrupted / "metrics.json").exists()
    monkeypatch.setattr(SimCLR, "on_epoch_start", original)
    saved = torch.load(interrupted / "checkpoints" / "last.ckpt", weights_only=True)["callbacks"]
    first_segment = next(state for key, state in saved.items() if "Throughput" in key)
    metrics = pretrain(tiny_cfg(epochs=3), interrupted, resume=True)
    assert metrics["resumed_from"].endswith("last.ckpt")
    # the metrics cover the whole run, not only the resumed segment
    assert metrics["train_seconds"] > first_segment["wall_seconds"] > 0
    assert [h["epoch"] for h in metrics["knn_history"]] == [h["epoch"] for h in straight_metrics["knn_history"]]
    assert metrics["knn_history"][:2] == next(s for k, s in saved.items() if "KNNMonitor" in k)["history"]
    # the interrupted attempt's logs are kept beside the resumed one's
    assert len(list((interrupted / "logs" / "csv").glob("version_*/metrics.csv"))) == 2

    assert_same_state(*(torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
                        for run in (straight, interrupted)))


def test_a_finished_run_extends_to_more_epochs_and_keeps_its_earlier_result(tmp_path):
    run = tmp_path / "run"
    first = pretrain(tiny_cfg(epochs=2), run)
    extended = pretrain(tiny_cfg(epochs=3), run, resume=True)
    assert json.loads((run / "metrics-2-epochs.json").read_text()) == first
    assert extended["epochs"] == 3 and [h["epoch"] for h in extended["knn_history"]] == [1, 2, 3]
    assert extended["knn_history"][:2] == first["knn_history"]
    assert yaml.safe_load((run / "config.yaml").read_text())["epochs"] == 3
    steps = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert steps == 3 * 512 // 64  # the third epoch trained on top of the first two


def test_nan_loss_stops_with_message_and_keeps_checkpoint(tmp_path, monkeypatch, capsys, tiny_args):
    out = tmp_path / "run"
    original = SimCLR.training_step

    def nan_in_second_epoch(self, batch, step):
        result = original(self, batch, step)
        if step >= 8:  # 512 images / 64 per batch: the second epoch starts at step 8
            result["loss"] = result["loss"] * float("nan")
        return result

    monkeypatch.setattr(SimCLR, "training_step", nan_in_second_epoch)
    code = main(["pretrain", "--method", "simclr", "--epochs", "3", "--out", str(out)] + tiny_args)
    err = capsys.readouterr().err
    assert code == 2
    assert "loss became nan" in err and "Traceback" not in err
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["epoch"] == 0 and not (out / "metrics.json").exists()


def test_gradient_accumulation_and_bf16_mixed_precision(tmp_path, monkeypatch):
    from selfsup.methods.simclr import SimCLR

    seen = []
    original = SimCLR.training_step

    def recording(self, batch, step):  # is the step under bf16 autocast, and does the backbone compute in it?
        seen.append((torch.is_autocast_enabled("cpu"), self.backbone(batch["views"][0][:2]).dtype))
        return original(self, batch, step)

    monkeypatch.setattr(SimCLR, "training_step", recording)
    cfg = tiny_cfg(epochs=2)
    cfg["trainer"].update(accumulate_grad_batches=2, precision="bf16-mixed")
    metrics = pretrain(cfg, tmp_path / "run")
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 8  # 2 epochs of 8 batches of 64, one optimiser step per 2 batches
    assert len(seen) == 16 and set(seen) == {(True, torch.bfloat16)}
    assert metrics["loss_history"][0]["precision"] == "bf16-mixed"
    frozen = pretrain({**cfg, "optimizer": {**cfg["optimizer"], "lr": 0.0}}, tmp_path / "frozen")
    assert metrics["final_loss"] < 0.99 * frozen["final_loss"]  # the same batches and views, with the steps taken


def test_checkpoints_live_under_the_checkpoint_root_where_one_is_set(tmp_path, monkeypatch):
    root, run = tmp_path / "scratch", tmp_path / "work" / "run"
    monkeypatch.setenv("SELFSUP_CHECKPOINT_ROOT", str(root))
    pretrain(tiny_cfg(epochs=1), run)
    held = root / run.resolve().relative_to(run.resolve().anchor) / "checkpoints" / "last.ckpt"
    assert held.is_file() and not (run / "checkpoints").exists() and (run / "metrics.json").is_file()
    assert RunDirectory(run).checkpoint == held and run_of_checkpoint(held) == run.resolve()
    assert Path(pretrain(tiny_cfg(epochs=2), run, resume=True)["resumed_from"]) == held  # extended from there
    (root / "other").mkdir()
    RunDirectory(run).remove()
    assert not held.exists() and not run.exists()
    assert sorted(p.name for p in root.iterdir()) == ["other"]  # the folders left empty above it went too


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_is_bf16_only_where_the_device_computes_it_natively(native, monkeypatch, capsys):
    monkeypatch.setattr(precision, "native_bf16", lambda gpu: native)
    assert precision.training_precision("auto", "cpu") == ("bf16-mixed" if native else "32-true")
    assert precision.training_precision("32-true", "cpu") == "32-true"
    assert precision.training_precision("bf16-mixed", "cpu") == "bf16-mixed"  # asked for: kept, with a note
    precision.note_emulated_bf16("bf16-mixed", "cpu")
    precision.note_emulated_bf16("32-true", "cpu")
    err = capsys.readouterr().err
    assert ("bf16-mixed precision on this CPU is emulated" in err) is not native
    assert err.count("note:") == (0 if native else 1)


@pytest.mark.parametrize("amx, avx512_bf16", [(True, False), (False, True), (False, False), (None, None)])
def test_a_cpu_computes_bf16_natively_with_amx_or_avx512_bf16(amx, avx512_bf16, monkeypatch):
    for probe, value in (("_is_amx_tile_supported", amx), ("_is_avx512_bf16_supported", avx512_bf16)):
        if value is None:  # a PyTorch without the private probe
            monkeypatch.delattr(torch.cpu, probe, raising=False)
        else:
            monkeypatch.setattr(torch.cpu, probe, lambda value=value: value, raising=False)
    assert precision.native_bf16(False) is bool(amx or avx512_bf16)


@pytest.mark.parametrize("native", [True, False])
def test_a_cpu_is_described_by_its_model_and_whether_it_computes_bf16_natively(native, monkeypatch):
    monkeypatch.setattr(precision, "native_bf16", lambda gpu: native)
    described = precision.device_description(False)
    model = described.rsplit(", ", 1)[0]
    assert described == f"{model}, {'native' if native else 'emulated'} bfloat16" and model


def test_the_cpu_model_is_read_from_the_model_name_line_of_cpuinfo(tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n"
                       "model\t\t: 17\nmodel name\t: AMD EPYC 9654 96-Core Processor\nflags\t\t: fpu avx2\n")
    monkeypatch.setattr(precision, "Path", lambda path: cpuinfo if path == "/proc/cpuinfo" else Path(path))
    monkeypatch.setattr(precision, "native_bf16", lambda gpu: False)
    assert precision.device_description(False) == "AMD EPYC 9654 96-Core Processor, emulated bfloat16"


def test_a_run_records_the_precision_auto_chose_and_resumes_with_auto_again(tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "native_bf16", lambda gpu: False)
    cfg = tiny_cfg(epochs=1)
    cfg["trainer"]["precision"] = "auto"
    pretrain(cfg, tmp_path / "run")
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["trainer"]["precision"] == "32-true"
    extended = tiny_cfg(epochs=2)
    extended["trainer"]["precision"] = "auto"
    assert pretrain(extended, tmp_path / "run", resume=True)["epochs"] == 2  # auto matches the recorded 32-true


def test_a_resume_may_train_in_another_precision_and_the_run_names_each_segments(tmp_path, capsys):
    run = tmp_path / "run"
    pretrain({**tiny_cfg(epochs=1), "trainer": {**tiny_cfg()["trainer"], "precision": "bf16-mixed"}}, run)
    checkpoint_file = run / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(checkpoint_file, weights_only=True)
    assert [e["precision"] for e in checkpoint["loss_history"]] == ["bf16-mixed"]
    for entry in checkpoint["loss_history"]:  # as if written before entries named their precision
        del entry["precision"]
    torch.save(checkpoint, checkpoint_file)
    capsys.readouterr()
    metrics = pretrain({**tiny_cfg(epochs=3), "trainer": {**tiny_cfg()["trainer"], "precision": "32-true"}}, run,
                       resume=True)
    assert "trained in bf16-mixed so far; its remaining epochs train in 32-true" in capsys.readouterr().err
    assert [e["precision"] for e in metrics["loss_history"]] == ["bf16-mixed", "32-true", "32-true"]
    assert metrics["precision"] == "bf16-mixed (epoch 1), 32-true (epochs 2-3)" == RunDirectory(run).precision()
    assert yaml.safe_load((run / "config.yaml").read_text())["trainer"]["precision"] == "32-true"


def test_step_end_hook_runs_once_per_optimiser_step(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(SimCLR, "on_step_end", lambda self, step, total: calls.append((step, total)))
    cfg = tiny_cfg(epochs=2)
    cfg["trainer"]["accumulate_grad_batches"] = 2
    pretrain(cfg, tmp_path / "run")
    assert calls == [(step, 8) for step in range(1, 9)]  # 2 epochs x 8 batches / 2


def test_checkpoint_from_before_a_new_method_option_loads_with_its_default(tmp_path):
    cfg = tiny_cfg(epochs=1)
    pretrain(cfg, tmp_path / "run")
    path = tmp_path / "run" / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(path, weights_only=True)
    del checkpoint["hyper_parameters"]["cfg"]["params"]["proj_dim"]  # as if written before the option existed
    torch.save(checkpoint, tmp_path / "old.ckpt")
    module = load_pretrained(tmp_path / "old.ckpt")
    assert module.cfg["params"]["proj_dim"] == SimCLR.defaults["proj_dim"]


def test_final_evaluation_embeds_each_split_once_when_the_last_stage_is_the_features(tmp_path, monkeypatch):
    """kNN, the linear probe and the per-stage probes share one pass over the bank and one over
    the test split (the same numbers as separate passes: tests/test_benchmark.py's suites)."""
    import selfsup.engine.train as train
    import selfsup.eval.final as final

    passes = []
    real = final.method_features

    def counting(method, dataset, norm, **options):
        if len(dataset) > 8:  # the few images of the bit-for-bit check do not count
            passes.append(options.get("layers", False))
        return real(method, dataset, norm, **options)

    monkeypatch.setattr(final, "method_features", counting)
    from support import tiny_method_cfg

    cfg = tiny_method_cfg("simclr", epochs=1)
    metrics = train.pretrain(cfg, tmp_path / "run", baselines=True, probe_epochs=2, probe_layers=True)
    assert passes == [True, True, True, True]  # bank and test, trained then random-init network
    assert metrics["linear_top1"] == metrics["linear_layers"]["conv5"]

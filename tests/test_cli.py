"""Bad input: one clear line, exit code 2, no traceback, nothing earlier damaged."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from selfsup.cli import main
from selfsup.eval.run import PROTOCOL_OPTIONS
from selfsup.rundir import RunDirectory


def run_cli(capsys, *argv) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.err


def assert_clean_error(code: int, err: str, *needles: str):
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("selfsup: error:"), err
    for needle in needles:
        assert needle in err, err


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_simclr_run):
    """A copy of the session's tiny SimCLR run, shared by this module's tests."""
    return shutil.copytree(tiny_simclr_run, tmp_path_factory.mktemp("runs") / "done")


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_unknown_method_is_a_clear_error_that_lists_methods(capsys):
    assert_clean_error(*run_cli(capsys, "pretrain", "--method", "nope"), "unknown method 'nope'", "simclr")


def test_unknown_dataset_is_a_clear_error(capsys, tmp_path):
    assert_clean_error(*run_cli(capsys, "pretrain", "--method", "simclr", "--dataset", "imagenet9",
                                "--out", str(tmp_path / "r")), "unknown dataset 'imagenet9'")


def test_missing_data_directory_is_a_clear_error_and_writes_nothing(capsys, tmp_path):
    assert_clean_error(*run_cli(capsys, "pretrain", "--method", "simclr", "--dataset", "cifar10",
                                "--data-dir", str(tmp_path / "absent"), "--out", str(tmp_path / "r")),
                       "does not exist")
    assert not (tmp_path / "r").exists()


def test_malformed_data_directory(capsys, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "data_batch_1").write_bytes(b"garbage")
    assert_clean_error(*run_cli(capsys, "pretrain", "--method", "simclr", "--dataset", "cifar10",
                                "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "r")),
                       "data_batch_1")


def test_batch_larger_than_dataset(capsys, tmp_path, tiny_args):
    assert_clean_error(*run_cli(capsys, "pretrain", "--method", "simclr", *tiny_args, "--batch-size", "1000",
                                "--out", str(tmp_path / "r")), "batch size 1000", "--batch-size")


def test_unknown_config_key_and_bad_value(capsys, tmp_path):
    assert_clean_error(*run_cli(capsys, "pretrain", "--method", "simclr", "--set", "optimizer.lrr=1"),
                       "unknown config key 'optimizer.lrr'")
    assert_clean_error(*run_cli(capsys, "pretrain", "--method", "simclr", "--epochs", "0"), "epochs")


def test_unwritable_output_directory(capsys, tmp_path, tiny_args):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert_clean_error(*run_cli(capsys, "pretrain", "--method", "simclr", *tiny_args, "--out", str(blocker / "run")),
                       "not writable")


def test_existing_run_is_not_overwritten(capsys, finished_run, tiny_args):
    before = {p.name: digest(p) for p in [finished_run / "metrics.json", finished_run / "checkpoints" / "last.ckpt"]}
    assert_clean_error(*run_cli(capsys, "pretrain", "--method", "simclr", *tiny_args, "--out", str(finished_run)),
                       "already holds")
    assert_clean_error(*run_cli(capsys, "pretrain", "--method", "simclr", *tiny_args, "--epochs", "2", "--resume",
                                "--out", str(finished_run)), "already holds a finished run of 2 epochs; to extend")
    after = {p.name: digest(p) for p in [finished_run / "metrics.json", finished_run / "checkpoints" / "last.ckpt"]}
    assert before == after


def test_resume_with_changed_settings_is_refused(capsys, simclr_run, tiny_args):
    out = simclr_run  # 2 epochs
    (out / "metrics.json").unlink()  # pretend the run was killed before it finished
    kept = [out / "config.yaml", out / "checkpoints" / "last.ckpt"]
    before = [digest(p) for p in kept]
    code, err = run_cli(capsys, "pretrain", "--method", "simclr", *tiny_args, "--epochs", "3", "--resume", "--out", str(out))
    assert_clean_error(code, err, "--resume must repeat the run's settings")
    assert "epochs" in err.split("--resume must repeat the run's settings", 1)[1]  # the setting that differs, named
    assert [digest(p) for p in kept] == before  # the run is left as it was: resumable with its own settings


def test_corrupt_or_missing_checkpoint_is_a_clear_error(capsys, tmp_path):
    bad = tmp_path / "last.ckpt"
    bad.write_bytes(b"\x00" * 100)
    assert_clean_error(*run_cli(capsys, "evaluate", "knn", "--checkpoint", str(bad)), "corrupt")
    assert_clean_error(*run_cli(capsys, "evaluate", "knn", "--checkpoint", str(tmp_path / "none.ckpt")),
                       "does not exist")


def test_checkpoint_that_is_not_selfsup(capsys, tmp_path):
    import torch
    path = tmp_path / "other.ckpt"
    torch.save({"weights": torch.zeros(2)}, path)
    assert_clean_error(*run_cli(capsys, "evaluate", "linear", "--checkpoint", str(path)), "not a selfsup checkpoint")


def test_evaluating_on_other_channels_names_the_conversion_flag(capsys, finished_run):
    # the run was pretrained on 3-channel images; digits are grey
    assert_clean_error(*run_cli(capsys, "evaluate", "knn", "--checkpoint", str(finished_run / "checkpoints" / "last.ckpt"),
                                "--dataset", "digits", "--output", str(finished_run / "x.json")),
                       "3-channel", "--channels 3")


def test_evaluate_knn_and_linear_write_json(capsys, finished_run):
    ckpt = str(finished_run / "checkpoints" / "last.ckpt")
    assert main(["evaluate", "knn", "--checkpoint", ckpt, "--k", "20"]) == 0
    knn = json.loads((finished_run / "eval_knn.json").read_text())
    # the run's own final kNN (k 20, T 0.1, the whole training split against the test split), read again
    assert knn["k"] == 20 and knn["top1"] == json.loads((finished_run / "metrics.json").read_text())["knn_top1"]
    assert main(["evaluate", "linear", "--checkpoint", ckpt, "--epochs", "30", "--layers", "all",
                 "--dataset", "digits", "--channels", "3", "--output", str(finished_run / "lin.json")]) == 0
    linear = json.loads((finished_run / "lin.json").read_text())
    assert list(linear["layers"]) == ["conv1", "conv2", "conv3", "conv4", "conv5"]
    assert linear["top1"] > 0.3  # 10 digit classes: chance is 0.1


def test_console_script_exit_code_and_debug(tmp_path):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    quiet = subprocess.run([sys.executable, "-m", "selfsup.cli", "pretrain", "--method", "nope"],
                           capture_output=True, text=True, env=env)
    assert quiet.returncode == 2 and "Traceback" not in quiet.stderr
    loud = subprocess.run([sys.executable, "-m", "selfsup.cli", "pretrain", "--method", "nope", "--debug"],
                          capture_output=True, text=True, env=env)
    assert loud.returncode != 0 and "Traceback" in loud.stderr


def test_list_names_everything(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ["simclr", "fashion-mnist", "cifar10", "cifar100", "stl10", "imagefolder", "digits", "resnet50",
                 "smoke", "fmnist-quick", "throughput"]:
        assert name in out
    kinds = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert kinds["simclr"].endswith("[image and series]") and kinds["ts2vec"].endswith("[series]")
    assert "[" not in kinds["moco-v2"] and kinds["supervised"].endswith("[supervised]")


def test_resume_from_a_corrupt_checkpoint_is_refused(capsys, simclr_run, tiny_args):
    out = simclr_run  # 2 epochs
    (out / "metrics.json").unlink()  # pretend the run was killed before it finished
    (out / "checkpoints" / "last.ckpt").write_bytes(b"truncated")
    assert_clean_error(*run_cli(capsys, "pretrain", "--method", "simclr", *tiny_args, "--epochs", "2", "--resume",
                                "--out", str(out)), "corrupt")
    assert (out / "checkpoints" / "last.ckpt").read_bytes() == b"truncated"


def test_print_config_shows_resolved_values_and_writes_nothing(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["pretrain", "--method", "simclr", "--print-config", "--set", "params.temperature=0.3",
                 "--width", "32"]) == 0
    import yaml
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["params"]["temperature"] == 0.3 and cfg["backbone"]["width"] == 32
    assert cfg["optimizer"]["lr_scaling"] == "sqrt"  # from configs/simclr.yaml over defaults.yaml
    assert list(tmp_path.iterdir()) == []


def test_a_runs_config_file_repeats_the_run(capsys, finished_run):
    import yaml

    from selfsup.rundir import setting_differences
    saved = yaml.safe_load((finished_run / "config.yaml").read_text())  # with the data facts its run filled in
    assert main(["pretrain", "--method", "simclr", "--config", str(finished_run / "config.yaml"), "--print-config"]) == 0
    again = yaml.safe_load(capsys.readouterr().out)
    facts = {f"data.{k}" for k in ("mean", "std", "num_classes", "modality")}  # found again by the run
    assert facts & set(setting_differences(saved, again))
    assert {d for d in setting_differences(saved, again) if d.split(".")[0] != "run"} <= facts
    # a hand-written file may not set them: only a run's own config is read this way
    handwritten = finished_run.parent / "mine.yaml"
    handwritten.write_text("data:\n  mean: [0.5]\n")
    assert_clean_error(*run_cli(capsys, "pretrain", "--method", "simclr", "--config", str(handwritten),
                                "--print-config"), "unknown config key 'data.mean'")


def test_checkpoint_that_does_not_match_its_configuration(capsys, finished_run, tmp_path):
    import torch
    checkpoint = torch.load(finished_run / "checkpoints" / "last.ckpt", weights_only=True)
    checkpoint["hyper_parameters"]["cfg"]["backbone"]["width"] = 16  # the weights are width 8
    path = tmp_path / "mismatch.ckpt"
    torch.save(checkpoint, path)
    assert_clean_error(*run_cli(capsys, "evaluate", "knn", "--checkpoint", str(path)), "does not match")


def test_batchnorm_policy_errors(capsys, tmp_path, tiny_args):
    args = [a for a in tiny_args if a not in ("--batch-size", "64")]
    assert_clean_error(*run_cli(capsys, "pretrain", "--method", "moco-v2", *args, "--batch-size", "60",
                                "--out", str(tmp_path / "a")), "bn_splits=8", "batch size 60")
    assert_clean_error(*run_cli(capsys, "pretrain", "--method", "simclr", *tiny_args, "--set", "backbone.batchnorm=off",
                                "--out", str(tmp_path / "b")), "backbone.batchnorm must be one of sync, local, split")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.parametrize("method,setting,needle", [
    ("byol", "params.base_momentum=1.5", "params.base_momentum of byol must be a number in [0, 1], got 1.5"),
    ("moco-v2", "params.key_momentum=-0.1", "params.key_momentum of moco-v2 must be a number in [0, 1]"),
    ("simsiam", "params.proj_dim=0", "params.proj_dim of simsiam must be a number in [1, inf], got 0"),
    ("barlow-twins", "params.proj_dim=-4", "params.proj_dim of barlow-twins must be a number in [1, inf]"),
    ("swav", "params.num_prototypes=zero", "params.num_prototypes of swav must be a number"),
    ("deepcluster", "params.num_clusters=100000", "num_clusters=100000 is more clusters than the 512 training images"),
    ("dare", "params.lambd=-0.5", "params.lambd of dare must be a number in [0, inf], got -0.5"),
    ("superinfo", "params.lambda_b=-1", "params.lambda_b of superinfo must be a number in [0, inf], got -1"),
    ("supcon", "params.temperature=-0.1", "params.temperature of supcon must be a number in [0.0001, inf]"),
    ("moco-v2", "params.negatives=all", "params.negatives of moco-v2 must be one of queue, batch, bank, got 'all'"),
    ("moco-v1", "params.queue_size=32", "params.queue_size=32 must be at least the batch size 64"),
    ("instdisc", "params.bank_momentum=2", "params.bank_momentum of instdisc must be a number in [0, 1], got 2"),
    ("cpc", "params.patch_size=20", "params.patch_size=20 is larger than the 16-px images"),
    ("cpc", "params.prediction_steps=7", "params.prediction_steps=7 must be smaller than the 7 rows of the patch grid"),
    ("cpc", "params.context=lstm", "params.context of cpc must be one of gru, masked-conv, got 'lstm'"),
    ("jigsaw", "params.tile_size=6", "jigsaw: 3x3 tiles of 6 px with 1-px gaps and 1-px jitter need 22 px, more than"),
    ("relative-patch", "params.gap=-1", "params.gap of relative-patch must be a number in [0, inf], got -1"),
    ("denoising-ae", "params.noise=1.5", "params.noise is the fraction of masked pixels and must be in [0, 1], got 1.5"),
    ("context-encoder", "params.region=left", "params.region of context-encoder must be one of center, random"),
    ("exemplar", "params.surrogate_classes=600", "params.surrogate_classes=600 is more seed images than the 512"),
    ("exemplar", "params.scale=[1.4,0.7]", "params.scale of exemplar must be [low, high] with 0 < low <= high"),
    ("multitask", "params.tasks=[rotation,fixmatch]", "params.tasks of multitask: unknown task 'fixmatch'; choose from"),
    ("multitask", "params.weights=[1]", "params.weights must give one non-negative weight per task (2)"),
    ("colorization", "data.channels=1", "colorization needs colour images, but this dataset has 1 channel(s)"),
    ("multitask", "params.task_params={jigsaw: {permutations: 1}}", "params.permutations of jigsaw must be a number in [2, 1000]"),
    ("w-mse", "params.proj_dim=16", "the batch size (64) must be a multiple of it"),
    ("nnclr", "params.support_size=32", "params.support_size=32 must be at least the batch size 64"),
    ("dclw", "params.weight_sigma=0", "params.weight_sigma of dclw must be a number in [0.0001, inf], got 0"),
    ("vicreg", "params.variance_weight=-1", "params.variance_weight of vicreg must be a number in [0, inf], got -1"),
    ("emp-ssl", "params.patches=1", "params.patches of emp-ssl must be a number in [2, inf], got 1"),
])
def test_bad_method_params_exit_cleanly_and_write_nothing(capsys, tmp_path, tiny_args, method, setting, needle):
    out = tmp_path / "run"
    assert_clean_error(*run_cli(capsys, "pretrain", "--method", method, *tiny_args, "--set", setting,
                                "--out", str(out)), needle)
    assert not out.exists()


@pytest.mark.parametrize("setting,needle", [
    ("params.classes_per_batch=7", "more classes than the dataset's 6"),
    ("params.classes_per_batch=5", "batch size 64 must be a multiple of params.classes_per_batch=5"),
    ("params.mining=easy", "params.mining of triplet must be one of semi-hard, hard, all"),
    ("params.classes_per_batch=2", "K = 32 images of each class, but the smallest class has 20"),
    ("params.margin=-1", "params.margin of triplet must be a number in [0, inf]"),
])
def test_bad_triplet_settings_exit_cleanly(capsys, tmp_path, tiny_args, setting, needle):
    out = tmp_path / "run"
    assert_clean_error(*run_cli(capsys, "pretrain", "--method", "triplet", *tiny_args, "--set", setting,
                                "--set", "data.synthetic_size=120", "--out", str(out)), needle)
    assert not out.exists()


@pytest.mark.parametrize("protocol", list(PROTOCOL_OPTIONS))  # every protocol, those added later too
def test_evaluate_flags_and_their_defaults_are_the_eval_requests(protocol):
    """The CLI builds an ``EvalRequest``; the flags' defaults are the table's, so that a suite or
    a program that builds the request directly evaluates exactly as the command does."""
    from selfsup.cli import _build_parser
    from selfsup.eval.run import protocol_options

    argv = ["evaluate", protocol, "--checkpoint", "x.ckpt"] + (["--dataset", "digits"] if protocol == "transfer" else [])
    args = vars(_build_parser().parse_args(argv))
    expected = {**protocol_options(protocol), **({"dataset": "digits"} if protocol == "transfer" else {})}
    assert {name: args[name] for name in expected} == expected


def test_an_eval_request_refuses_what_its_protocol_lacks():
    from selfsup.errors import SelfSupError
    from selfsup.eval.run import EvalRequest

    request = EvalRequest.make("knn", "run/checkpoints/last.ckpt", k=10)
    assert (request.k, request.temperature, request.baselines) == (10, 0.1, True)
    with pytest.raises(SelfSupError, match="the knn protocol has no option 'layers'"):
        EvalRequest.make("knn", "x.ckpt", layers="all")
    with pytest.raises(SelfSupError, match="unknown evaluation protocol 'nope'"):
        EvalRequest.make("nope", "x.ckpt")


def test_status_says_where_each_run_stands(capsys, simclr_run, tmp_path):
    runs = tmp_path / "suite" / "runs"
    finished = shutil.copytree(simclr_run, runs / "finished")
    for name in ("stopped", "claimed"):
        shutil.copytree(simclr_run, runs / name)
        (runs / name / "metrics.json").unlink()  # as if killed after its last checkpoint
    (runs / ".claimed.claim").write_text(str(os.getpid()))  # a live suite process holds it
    (runs / ".stopped.claim").write_text("999999999")  # a dead one held it
    (runs / "begun").mkdir()
    shutil.copy(simclr_run / "config.yaml", runs / "begun")
    shutil.copytree(runs / "stopped", runs / "damaged")
    (runs / "damaged" / "checkpoints" / "last.ckpt").write_bytes(b"\x00" * 100)
    stopped_config = runs / "stopped" / "config.yaml"  # asked for 4 epochs: 2 of them left
    stopped_config.write_text(stopped_config.read_text().replace("epochs: 2\n", "epochs: 4\n"))
    metrics = json.loads((finished / "metrics.json").read_text())
    assert main(["status", str(tmp_path / "suite")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["run", "state", "epochs", "monitor", "kNN", "kNN", "precision", "hours", "hours", "left"]
    by_run = {Path(line.split()[0]).name: line.split("  ") for line in lines[1:]}
    cells = {name: [c.strip() for c in cols if c.strip()] for name, cols in by_run.items()}
    assert list(cells) == ["begun", "claimed", "damaged", "finished", "stopped"]
    assert cells["damaged"][1:] == ["stopped, checkpoint unreadable", "?/2"]
    assert cells["begun"][1:] == ["begun, no checkpoint yet", "0/2"]
    last_monitor = f"{metrics['knn_history'][-1]['knn_top1']:.4f}"
    assert cells["claimed"][1:5] == [f"training (process {os.getpid()})", "2/2", last_monitor, "32-true"]
    assert cells["stopped"][1:5] == ["stopped, resumable", "2/4", last_monitor, "32-true"]
    epoch_seconds = [entry["seconds"] for entry in metrics["loss_history"]]  # the checkpoint's entries, too
    assert len(epoch_seconds) == 2 and all(s > 0 for s in epoch_seconds)
    assert RunDirectory(runs / "stopped").progress()["hours_left"] == pytest.approx(sum(epoch_seconds) / 3600)
    assert RunDirectory(runs / "claimed").progress()["hours_left"] == 0  # all its epochs are done
    assert RunDirectory(finished).progress()["hours_left"] is None
    assert cells["finished"][1:6] == ["finished", "2", last_monitor, f"{metrics['knn_top1']:.4f}", "32-true"]
    assert main(["status", str(finished)]) == 0 and len(capsys.readouterr().out.splitlines()) == 2  # one run
    for name, result in (("finetune-1pct", {"protocol": "finetune"}), ("knn", {"protocol": "knn"}),
                         ("finetune-10pct", {"protocol": "finetune", "revision": 2})):
        (finished / f"eval_{name}.json").write_text(json.dumps(result))
    assert main(["status", str(tmp_path / "suite")]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"{tmp_path / 'suite'}: results made before a fix of their protocol (a suite makes them again when their "
        "row or method is run): finished (finetune-1pct)")
    assert_clean_error(*run_cli(capsys, "status", str(tmp_path / "empty")), "no run directory")


def test_status_of_a_suite_of_fixed_rows_names_the_rows_not_begun(capsys, simclr_run, tmp_path):
    from selfsup.bench.definitions import fmnist_long_runs

    out = tmp_path / "fmnist-long"
    shutil.copytree(simclr_run, out / "runs" / "simclr")
    shutil.copytree(simclr_run, out / "runs" / "byol-frozen-target-tau-1")  # a row named by its folder's slug
    assert main(["status", str(out)]) == 0
    assert not capsys.readouterr().out.splitlines()[-1].startswith("fmnist-long")  # no table: not known as the suite
    (out / "fmnist-long.md").write_text("# the suite's table\n")
    assert main(["status", str(out)]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    labels = [label for label, _, _ in fmnist_long_runs()]
    waiting = [label for label in labels if label not in ("simclr", "byol, frozen target (tau 1)")]
    assert last == f"fmnist-long: {len(waiting)} of its {len(labels)} rows not begun: {'; '.join(waiting)}"

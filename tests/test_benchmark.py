import csv
import json

import pytest

from selfsup import precision
from selfsup.cli import main
from selfsup.errors import SelfSupError


def test_smoke_suite_writes_table_csv_and_plots(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["benchmark", "--suite", "smoke", "--out", str(out)]) == 0
    table = (out / "smoke.md").read_text()
    assert "| simclr |" in table and "baseline: raw pixels" in table and "Command:" in table
    rows = list(csv.DictReader((out / "smoke.csv").open()))
    simclr = next(r for r in rows if r["method"] == "simclr")
    random_init = next(r for r in rows if r["method"].startswith("baseline: random-init"))
    assert float(simclr["knn_top1"]) > float(random_init["knn_top1"]) + 0.15  # the network learned (0.39 at init)
    assert float(simclr["linear_top1"]) > 2 / 6  # six texture classes: chance is 1/6
    for plot in ["smoke_knn.png", "smoke_knn_curve.png"]:
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_suite_is_a_clear_error(tmp_path, capsys):
    assert main(["benchmark", "--suite", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown benchmark suite 'nope'" in capsys.readouterr().err


def test_unknown_method_in_a_suite_is_refused_before_any_work(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["benchmark", "--suite", "smoke", "--method", "nope", "--out", str(out)]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err
    assert not out.exists()


def test_unknown_row_or_a_row_flag_on_a_suite_without_rows_is_refused_before_any_training(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["benchmark", "--suite", "ablations", "--row", "nope", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "the ablations suite has no row 'nope'" in err and "moco-v2-10-ep-queue-1024" in err
    assert not (out / "runs").exists()
    assert main(["benchmark", "--suite", "semisup", "--row", "simclr", "--out", str(out)]) == 2
    assert "--row is not an option of the semisup suite" in capsys.readouterr().err
    # a registered method the suite has no row of (colour images only; fmnist-quick is grey)
    assert main(["benchmark", "--suite", "fmnist-quick", "--method", "colorization", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "the fmnist-quick suite has no row of colorization" in err and "rotation" in err
    assert not (out / "runs").exists()


def test_a_row_flag_trains_only_that_row_named_by_label_or_directory(tmp_path):
    from selfsup.bench.suites import accuracy_suite

    overrides = {"dataset": "synthetic", "epochs": 1, "batch_size": 64, "backbone": {"width": 8},
                 "optimizer": {"name": "adam", "lr": 0.008, "lr_scaling": "none"}, "schedule": {"warmup_epochs": 0},
                 "trainer": {"progress_bar": False}, "knn": {"k": 20, "every_n_epochs": 0}}
    runs = [("simclr", "simclr", {}), ("simclr, T 0.5", "simclr", {"params": {"temperature": 0.5}})]
    for row in ("simclr, T 0.5", "simclr-t-0.5"):
        out = tmp_path / row
        rows = accuracy_suite(out, "t", "t", runs, overrides, probe_epochs=2, selected_rows=[row])
        assert [r["method"] for r in rows if not r["method"].startswith("baseline")] == ["simclr, T 0.5"]
        assert not (out / "runs" / "simclr").exists()


def test_a_suite_with_resnet_and_vit_rows_shows_each_networks_random_init(tmp_path):
    from selfsup.bench.definitions import fmnist_quick_runs
    from selfsup.bench.suites import accuracy_suite

    overrides = {"dataset": "synthetic", "epochs": 1, "batch_size": 64, "backbone": {"name": "resnet18", "width": 8},
                 "optimizer": {"name": "adam", "lr": 0.008, "lr_scaling": "none"}, "schedule": {"warmup_epochs": 0},
                 "trainer": {"progress_bar": False}, "knn": {"k": 20, "every_n_epochs": 0}}
    vit = {"backbone": {"name": "vit", "width": 16, "depth": 1, "heads": 1}}
    rows = accuracy_suite(tmp_path, "t", "t", [("simclr", "simclr", {}), ("simclr, vit", "simclr", vit)], overrides,
                          probe_epochs=2)
    baselines = [r["method"] for r in rows if r["method"].startswith("baseline")]
    assert baselines[2:] == ["baseline: random-init backbone (simclr's network)",
                             "baseline: random-init vit (simclr, vit's network)"]
    assert all(r["knn_top1"] is not None for r in rows)
    # fmnist-quick: token methods on the ViT, DINO and the supervised baseline on both networks
    networks = {label: settings.get("backbone", {}).get("name", "resnet18") for label, _, settings in fmnist_quick_runs()}
    assert networks["mae"] == networks["simmim"] == networks["dino, vit"] == networks["supervised, vit"] == "vit"
    assert networks["dino"] == networks["supervised"] == "resnet18"


@pytest.mark.parametrize("suite, budget, tuned", [("ABLATIONS", "ABLATION_BUDGET", True),
                                                   ("MULTITASK", "MULTITASK_BUDGET", False)])
def test_every_ablation_row_changes_a_real_setting_of_its_method(suite, budget, tuned):
    from selfsup.bench import definitions as bench
    from selfsup.bench.definitions import ABLATION_BASES, FMNIST_QUICK_TUNED
    from selfsup.config import merge, resolve

    rows = getattr(bench, suite)
    labels = [label for label, _, _ in rows]
    assert len(set(labels)) == len(labels)
    for label, method, change in rows:  # fmnist-quick's tuned settings, or those the group was made with
        base = ABLATION_BASES.get(method, FMNIST_QUICK_TUNED.get(method, {})) if tuned else {}
        reference = merge(merge(resolve(method), getattr(bench, budget)), base)
        ablated = merge(reference, change)  # strict: a misspelt key is an error
        assert (ablated != reference) == bool(change), label


def test_an_ablation_group_keeps_the_settings_it_was_made_with():
    """MoCo v2's short recipe changed after its groups were made: their rows keep the old settings."""
    from selfsup.bench.definitions import FMNIST_QUICK_TUNED, ablation_runs

    moco = {label: settings for label, method, settings in ablation_runs() if method == "moco-v2"}
    assert len(moco) == 18
    assert all(s["params"]["queue_size"] in (32768, 4096, 1024) and s["params"]["symmetric"] is False
               and s["optimizer"]["lr"] == 0.3 for s in moco.values())
    assert moco["moco-v2, T 0.07"]["params"]["queue_size"] == 32768
    assert FMNIST_QUICK_TUNED["moco-v2"]["params"]["symmetric"] is True  # fmnist-quick's own row moved on


def test_ablation_notes_set_each_group_beside_its_paper():
    from selfsup.bench.definitions import ABLATIONS, PAPER_FINDINGS, ablation_findings

    assert {method for _, method, _ in ABLATIONS} <= set(PAPER_FINDINGS)
    done = [("simclr, T 0.2", "simclr", {"knn_top1": 0.75, "epochs": 3}),
            ("simclr, T 0.5", "simclr", {"knn_top1": 0.70, "epochs": 3}),
            ("byol", "byol", {"knn_top1": 0.6, "epochs": 10}),
            ("simclr 10 ep, T 0.2", "simclr", {"knn_top1": 0.8, "epochs": 10}),
            ("simclr 10 ep, T 0.5", "simclr", {"knn_top1": 0.82, "epochs": 10})]
    simclr, byol, longer = ablation_findings(done)  # a method's rows at another budget: a group of their own
    assert simclr.startswith(PAPER_FINDINGS["simclr"])
    assert simclr.endswith("Here (kNN): simclr, T 0.2 0.750; simclr, T 0.5 0.700 (-0.050).")
    assert byol.endswith("Here (kNN): byol 0.600.")
    assert longer.endswith("Here (kNN): simclr 10 ep, T 0.2 0.800; simclr 10 ep, T 0.5 0.820 (+0.020).")
    # a row in another precision than the reference is set against the group's first row of its precision
    mixed = [("simclr", "simclr", {"knn_top1": 0.767, "epochs": 3, "precision": "32-true"}),
             ("simclr, bf16", "simclr", {"knn_top1": 0.763, "epochs": 3, "precision": "bf16-mixed"}),
             ("simclr, batch 64", "simclr", {"knn_top1": 0.768, "epochs": 3, "precision": "bf16-mixed"}),
             ("simclr, T 0.5", "simclr", {"knn_top1": 0.757, "epochs": 3, "precision": "32-true"})]
    assert ablation_findings(mixed)[0].endswith(
        "Here (kNN): simclr 0.767; simclr, bf16 0.763 (-0.004); simclr, batch 64 0.768 (+0.005 against simclr, bf16); "
        "simclr, T 0.5 0.757 (-0.010).")


def test_a_suite_run_one_method_at_a_time_builds_one_table(tmp_path, capsys, monkeypatch):
    from selfsup.bench.suites import accuracy_suite

    overrides = {"dataset": "synthetic", "epochs": 1, "batch_size": 64, "backbone": {"width": 8},
                 "optimizer": {"name": "adam", "lr": 0.008, "lr_scaling": "none"}, "schedule": {"warmup_epochs": 0},
                 "trainer": {"progress_bar": False}, "knn": {"k": 20, "every_n_epochs": 0}}
    runs = [("simclr", "simclr", {}), ("simsiam", "simsiam", {})]
    out = tmp_path / "bench"
    first = accuracy_suite(out, "t", "t", runs, overrides, probe_epochs=2, selected=["simsiam"])
    assert [r["method"] for r in first if not r["method"].startswith("baseline")] == ["simsiam"]
    finished = (out / "runs" / "simsiam" / "metrics.json").stat().st_mtime_ns
    second = accuracy_suite(out, "t", "t", runs, overrides, probe_epochs=2, selected=["simclr"])
    assert [r["method"] for r in second if not r["method"].startswith("baseline")] == ["simclr", "simsiam"]
    assert (out / "runs" / "simsiam" / "metrics.json").stat().st_mtime_ns == finished  # not re-run
    table = (out / "t.md").read_text()
    assert "| simclr |" in table and "| simsiam |" in table
    # SimCLR's network at its initialisation is SimSiam's: the baselines were computed once, and
    # the kept result is what computing them again gives
    import json

    import yaml

    from selfsup.engine.train import load_datasets
    from selfsup.eval.final import run_baselines

    assert len(list((out / "baselines").glob("*.json"))) == 1
    saved = [json.loads((out / "runs" / m / "metrics.json").read_text())["baselines"] for m in ("simclr", "simsiam")]
    assert saved[0] == saved[1]
    cfg = yaml.safe_load((out / "runs" / "simclr" / "config.yaml").read_text())
    _, bank, test = load_datasets(cfg)
    assert run_baselines(cfg, bank, test, probe_epochs=2) == saved[0]
    assert f"Command: `selfsup benchmark --suite t --out {out}`" in table
    # changed settings: the finished run is not shown, and is redone when its method is run
    changed = [("simclr", "simclr", {}), ("simsiam", "simsiam", {"params": {"stop_gradient": False}})]
    third = accuracy_suite(out, "t", "t", changed, overrides, probe_epochs=2, selected=["simclr"])
    assert [r["method"] for r in third if not r["method"].startswith("baseline")] == ["simclr"]
    accuracy_suite(out, "t", "t", changed, overrides, probe_epochs=2, selected=["simsiam"])
    assert (out / "runs" / "simsiam" / "metrics.json").stat().st_mtime_ns != finished
    assert "stop_gradient: false" in (out / "runs" / "simsiam" / "config.yaml").read_text()
    assert {r["precision"] for r in third if not r["method"].startswith("baseline")} == {"32-true"}
    # an interrupted run resumes, also where `auto` now means another precision (how a run computes: the row names
    # the precision its epochs trained in); one interrupted under other settings starts over
    import shutil

    for name in ("simclr-again", "simclr-bf16", "simclr-lr"):
        shutil.copytree(out / "runs" / "simclr", out / "runs" / name, ignore=shutil.ignore_patterns("metrics.json"))
    capsys.readouterr()
    again = [("simclr again", "simclr", {})]
    accuracy_suite(out, "t", "t", again, overrides, probe_epochs=2, selected=["simclr"])
    assert json.loads((out / "runs" / "simclr-again" / "metrics.json").read_text())["resumed_from"]
    bf16 = [("simclr bf16", "simclr", {"trainer": {"precision": "bf16-mixed"}})]
    rows = accuracy_suite(out, "t", "t", bf16, overrides, probe_epochs=2, selected=["simclr"])
    assert json.loads((out / "runs" / "simclr-bf16" / "metrics.json").read_text())["resumed_from"]
    assert rows[0]["method"] == "simclr bf16" and rows[0]["precision"] == "32-true"  # every epoch trained before
    other_lr = [("simclr lr", "simclr", {"optimizer": {"lr": 0.123}})]
    accuracy_suite(out, "t", "t", other_lr, overrides, probe_epochs=2, selected=["simclr"])
    assert json.loads((out / "runs" / "simclr-lr" / "metrics.json").read_text())["resumed_from"] is None
    output = capsys.readouterr().out
    assert "simclr lr: the unfinished run was begun with other settings" in output and "optimizer.lr" in output
    assert "simclr bf16: the unfinished" not in output
    assert "simclr again: the unfinished" not in output
    # a fix of the method (its revision raised): the run is marked in the table, and made again when asked
    from selfsup.methods.simclr import SimCLR

    assert json.loads((out / "runs" / "simclr" / "metrics.json").read_text())["method_revision"] == 1
    monkeypatch.setattr(SimCLR, "revision", 2)
    # the fix changed a default too (as EMP-SSL's optimiser): the old row is still shown, marked, not dropped
    fixed = [("simclr", "simclr", {"params": {"temperature": 0.3}}), changed[1]]
    marked = accuracy_suite(out, "t", "t", fixed, overrides, probe_epochs=2, selected=["simsiam"])
    assert [r["method"] for r in marked if not r["method"].startswith("baseline")] == ["simclr [before fix]", "simsiam"]
    assert "made before a fix changed what its method trains" in (out / "t.md").read_text()
    remade = accuracy_suite(out, "t", "t", changed, overrides, probe_epochs=2, selected=["simclr"])
    assert [r["method"] for r in remade if not r["method"].startswith("baseline")] == ["simclr", "simsiam"]
    assert json.loads((out / "runs" / "simclr" / "metrics.json").read_text())["method_revision"] == 2


def test_a_suite_started_in_two_processes_shares_out_its_rows(tmp_path, capsys):
    import subprocess

    from selfsup.bench.suites import accuracy_suite

    overrides = {"dataset": "synthetic", "epochs": 1, "batch_size": 64, "backbone": {"width": 8},
                 "trainer": {"progress_bar": False}, "knn": {"k": 20, "every_n_epochs": 0}}
    runs = [("simclr", "simclr", {}), ("simsiam", "simsiam", {})]
    out = tmp_path / "bench"
    (out / "runs").mkdir(parents=True)
    other = subprocess.Popen(["sleep", "120"])  # a live process holds simclr's row
    (out / "runs" / ".simclr.claim").write_text(str(other.pid))
    gone = subprocess.Popen(["true"])  # one that died holding simsiam's row
    gone.wait()
    (out / "runs" / ".simsiam.claim").write_text(str(gone.pid))
    try:
        rows = accuracy_suite(out, "t", "t", runs, overrides, probe_epochs=2)
    finally:
        other.kill()
    assert [r["method"] for r in rows if not r["method"].startswith("baseline")] == ["simsiam"]
    assert "simclr: being trained by another process of this suite; left to it" in capsys.readouterr().out
    assert not (out / "runs" / "simclr").exists()
    assert (out / "runs" / ".simclr.claim").read_text() == str(other.pid)  # not this process's to remove
    assert not (out / "runs" / ".simsiam.claim").exists()  # released once the row finished


def test_a_suite_without_method_skips_methods_that_cannot_run_on_its_data(tmp_path, capsys):
    from selfsup.bench.suites import accuracy_suite

    overrides = {"dataset": "synthetic", "epochs": 1, "batch_size": 64, "backbone": {"width": 8},
                 "data": {"channels": 1}, "trainer": {"progress_bar": False}, "knn": {"k": 20, "every_n_epochs": 0}}
    runs = [("colorization", "colorization", {}), ("rotation", "rotation", {})]
    rows = accuracy_suite(tmp_path / "bench", "t", "t", runs, overrides, probe_epochs=2)
    assert [r["method"] for r in rows if not r["method"].startswith("baseline")] == ["rotation"]
    assert "colorization: skipped (colorization needs colour images" in capsys.readouterr().out
    assert not (tmp_path / "bench" / "runs" / "colorization").exists()


def test_per_stage_probes_are_added_to_finished_runs_from_their_checkpoints(tmp_path):
    import json

    from selfsup.bench.suites import accuracy_suite

    overrides = {"dataset": "synthetic", "epochs": 1, "batch_size": 64, "backbone": {"width": 8},
                 "trainer": {"progress_bar": False}, "knn": {"k": 20, "every_n_epochs": 0}}
    runs = [("simclr", "simclr", {})]
    out = tmp_path / "bench"
    accuracy_suite(out, "t", "t", runs, overrides, probe_epochs=2)
    metrics_file = out / "runs" / "simclr" / "metrics.json"
    assert "linear_layers" not in json.loads(metrics_file.read_text())
    rows = accuracy_suite(out, "t", "t", runs, overrides, probe_epochs=2, probe_layers=True)
    metrics = json.loads(metrics_file.read_text())
    assert list(metrics["linear_layers"]) == ["conv1", "conv2", "conv3", "conv4", "conv5"]
    # conv5 is the pooled final stage, the features the main probe sees: the same probe, the same result
    assert metrics["linear_layers"]["conv5"] == metrics["linear_top1"]
    assert rows[0]["linear_conv3"] == metrics["linear_layers"]["conv3"]
    random_init = rows[-1]
    assert random_init["method"].startswith("baseline: random-init")
    assert random_init["linear_conv1"] == metrics["baselines"]["random_init_linear_layers"]["conv1"]
    assert "| linear_conv1 |" in (out / "t.md").read_text()


def test_throughput_runs_colour_only_tasks_on_grey_images_repeated_to_three_channels(tmp_path):
    from selfsup.bench.throughput import throughput_config
    from selfsup.config import merge
    from selfsup.engine.train import pretrain

    assert throughput_config("rotation", None)["data"]["channels"] is None  # the dataset's own
    cfg = throughput_config("split-brain", None)
    assert cfg["data"]["channels"] == 3
    grey = merge(cfg, {"dataset": "digits", "subset": None, "batch_size": 64, "backbone": {"width": 8}})  # 1-channel
    metrics = pretrain(grey, tmp_path / "split-brain")
    assert metrics["samples_per_second"] > 0


def test_throughput_puts_token_methods_and_vit_rows_on_the_vit():
    from selfsup.bench.definitions import FMNIST_QUICK_VIT
    from selfsup.bench.throughput import throughput_config

    assert throughput_config("dino", None)["backbone"]["name"] == "resnet18"
    for method, vit in (("dino", True), ("mae", False)):
        backbone = throughput_config(method, None, vit)["backbone"]
        assert {key: backbone[key] for key in FMNIST_QUICK_VIT["backbone"]} == FMNIST_QUICK_VIT["backbone"]


def test_throughput_table_shows_the_compiled_loop_and_when_compiling_pays(tmp_path):
    from selfsup.bench.throughput import compile_note, throughput_suite
    from selfsup.io import write_json

    assert "2.00x the eager speed" in compile_note("simclr", 100.0, 200.0, 60.0)
    assert "its 60 s of compilation" in compile_note("simclr", 100.0, 200.0, 60.0)
    assert compile_note("simclr", 100.0, 200.0, 60.0).endswith("pays back on a long enough run.")
    assert compile_note("simclr", 100.0, 90.0, 60.0).endswith("never pays back.")
    write_json(tmp_path / "results" / "byol.json", {"engine": 90.0, "engine_bf16": 120.0, "ceiling": 100.0,
                                                     "compiled": 200.0, "compile_seconds": 60.0, "date": "today"})
    rows = throughput_suite(tmp_path, None, [])
    assert {r["device"] for r in rows} == {""}  # a measurement from before devices were recorded
    compiled = [r for r in rows if "trainer.compile" in r["loop"]]
    assert len(compiled) == 1 and compiled[0]["a_over_row"] == pytest.approx(0.45)
    assert "byol: trainer.compile runs the model-only loop at 2.00x" in (tmp_path / "throughput.md").read_text()


def test_throughput_measures_a_speedrun_recipe_at_its_own_batch_and_precision(tmp_path, monkeypatch):
    from selfsup.bench import definitions, throughput

    recipe = {"method": "simclr", "dataset": "synthetic", "epochs": 2, "batch_size": 32, "backbone": {"width": 8},
              "trainer": {"precision": "bf16-mixed"}, "knn": {"every_n_steps": 4}}
    monkeypatch.setattr(definitions, "SPEEDRUN_RECIPES", [("tiny", recipe)])
    monkeypatch.setattr(throughput, "STEPS", 4)
    rows = throughput.throughput_suite(tmp_path, None, [], ["tiny"])
    assert [r["loop"][:3] for r in rows] == ["(a)", "(c)"] and rows[0]["method"] == "recipe tiny"
    assert {r["device"] for r in rows} == {precision.device_description(False)}
    assert all(r["images_per_second"] > 0 for r in rows)
    assert "recipe tiny: the speedrun recipe at its own batch (32) and precision (bf16-mixed)" in \
        (tmp_path / "throughput.md").read_text()
    with pytest.raises(SelfSupError, match="no speedrun recipe 'nope'; its recipes: tiny"):
        throughput.throughput_suite(tmp_path, None, [], ["nope"])


def test_fidelity_table_pairs_each_run_before_a_fix_with_its_remade_run(tmp_path):
    from selfsup.bench.fidelity import fidelity_table
    from selfsup.methods import METHODS

    out = tmp_path / "fidelity"
    out.mkdir()
    runs = {"quick/runs/simclr": {"method": "simclr", "knn_top1": 0.5, "linear_top1": 0.6},
            "quick/runs/dino": {"method": "dino", "knn_top1": 0.7, "linear_top1": 0.8, "commit": "b" * 40},
            # remade, then made again with other settings: the remade metrics stay in before.json
            "quick/runs/moco-v2": {"method": "moco-v2", "knn_top1": 0.6, "linear_top1": 0.7, "after": {
                "method": "moco-v2", "method_revision": METHODS["moco-v2"].revision, "knn_top1": 0.62,
                "linear_top1": 0.71, "commit": "c" * 40}}}
    (out / "before.json").write_text(json.dumps({"commit": "a" * 40, "runs": runs}))
    for run, knn, revision in (("simclr", 0.55, METHODS["simclr"].revision), ("dino", 0.9, METHODS["dino"].revision - 1),
                               ("moco-v2", 0.8, METHODS["moco-v2"].revision)):
        folder = tmp_path / "quick" / "runs" / run
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps({"method": run, "method_revision": revision,
                                                         "knn_top1": knn, "linear_top1": 0.7}))
    rows = {row["run"]: row for row in fidelity_table(out)}
    simclr, dino = rows["quick/runs/simclr"], rows["quick/runs/dino"]
    assert simclr["before_at"] == "aaaaaaa" and simclr["knn_top1 after"] == 0.55
    assert simclr["knn_top1 change"] == pytest.approx(0.05)
    assert dino["before_at"] == "bbbbbbb" and dino["knn_top1 after"] is None  # still the run from before its fix
    assert rows["quick/runs/moco-v2"]["knn_top1 after"] == 0.62  # not the run its suite made later


def test_the_bf16_views_note_stands_under_tables_with_a_run_trained_partly_in_bf16():
    from selfsup.bench.report import bf16_views_notes

    assert bf16_views_notes(["32-true", None, "32-true"]) == []
    mixed = bf16_views_notes(iter(["32-true", "bf16-mixed (epochs 1-15), 32-true (epochs 16-45)"]))
    assert len(mixed) == 1 and "views in bfloat16" in mixed[0] and "37e3693" in mixed[0]
    assert bf16_views_notes(["bf16-mixed"]) == mixed


def test_the_fine_tuning_revision_note_stands_under_tables_with_a_result_made_before_the_fix():
    from selfsup.bench.report import finetune_revision_notes

    assert finetune_revision_notes([2, None, 2]) == [] and finetune_revision_notes([]) == []
    (note,) = finetune_revision_notes(iter([2, 1, None]))
    assert note.startswith("finetune_revision 1:") and "eval mode" in note

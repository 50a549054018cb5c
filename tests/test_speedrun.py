"""The speedrun suite: three seeds per recipe, time to both targets from the monitor, a
leaderboard that ranks recipes that reached the targets by median time and says how far the
others got; the fmnist-long suite's rows and fine-tuning column."""

import csv
import json

import pytest
from support import as_if_made_in

from selfsup import precision
from selfsup.bench import definitions, speedrun
from selfsup.errors import SelfSupError
from selfsup.rundir import RunDirectory

TINY = {"dataset": "synthetic", "epochs": 2, "batch_size": 64, "backbone": {"width": 8},
        "optimizer": {"name": "adam", "lr": 0.008, "lr_scaling": "none"}, "schedule": {"warmup_epochs": 0},
        "knn": {"k": 20, "every_n_steps": 4, "target_probe_epochs": 2}}


@pytest.fixture
def tiny_recipes(monkeypatch):
    recipes = [("unreachable", {"method": "simclr", **TINY, "knn": {**TINY["knn"], "target_knn": 1.01}}),
               ("reachable", {"method": "simclr", **TINY, "knn": {**TINY["knn"], "target_knn": 0.0,
                                                                   "target_linear": 0.0}})]
    monkeypatch.setattr(speedrun, "SPEEDRUN_RECIPES", recipes)
    monkeypatch.setattr(speedrun, "SPEEDRUN_SEEDS", (0, 1))
    return recipes


def test_the_leaderboard_ranks_by_median_time_and_says_how_far_a_miss_got(tmp_path, tiny_recipes):
    rows = speedrun.speedrun_suite(tmp_path, None, None)
    assert [r["recipe"] for r in rows] == ["reachable", "unreachable"]
    reached, missed = rows
    assert reached["seeds_reached"] == "2/2" and reached["median_epochs"] == 0.5  # the first check: step 4 of 8
    assert 0 < reached["min_seconds"] <= reached["median_seconds"] <= reached["max_seconds"]
    assert reached["best_linear"] is not None and reached["network"] == "resnet18 w8" and reached["threads"] >= 1
    assert reached["device"] == precision.device_description(False)  # the CPU both seeds ran on, named once
    assert missed["seeds_reached"] == "0/2" and missed["median_seconds"] is None
    assert 0 < missed["best_linear"] <= 1  # the probe of each seed's last check: how far the miss got
    seeds = [json.loads((tmp_path / "runs" / f"unreachable-seed{seed}" / "metrics.json").read_text()) for seed in (0, 1)]
    checks = [h for m in seeds for h in m["knn_history"]]
    assert missed["best_knn"] == pytest.approx(max(h["knn_top1"] for h in checks))
    assert missed["best_linear"] == pytest.approx(max(h["linear_top1"] for h in checks if h.get("linear_top1") is not None))
    for seed in (0, 1):
        assert (tmp_path / "runs" / f"reachable-seed{seed}" / "metrics.json").exists()
    table = list(csv.DictReader((tmp_path / "speedrun.csv").open()))
    assert [r["recipe"] for r in table] == ["reachable", "unreachable"]
    assert (tmp_path / "speedrun_knn.png").read_bytes()[:4] == b"\x89PNG"
    # finished runs are kept: a second call trains nothing and writes the same ranking
    assert [r["median_seconds"] for r in speedrun.speedrun_suite(tmp_path, None, None)] == \
        [r["median_seconds"] for r in rows]


def test_recipes_rank_by_the_median_of_their_seeds_times_then_the_misses_by_best_knn():
    cfg = speedrun.speedrun_config(definitions.SPEEDRUN_RECIPES[0][1], 0)

    def run(seconds, knn=0.86):  # a finished seed: reached at `seconds`, or missed (None)
        return {"target": {"reached": {"train_seconds": seconds, "epoch": 1} if seconds else None},
                "knn_history": [{"knn_top1": knn}], "device": "cpu", "threads": 2}

    rows = [speedrun.recipe_row("steady", cfg, [run(20), run(21), run(22)]),  # median 21, mean 21
            speedrun.recipe_row("one slow seed", cfg, [run(10), run(11), run(100)]),  # median 11, mean 40.3
            speedrun.recipe_row("close miss", cfg, [run(5), run(None, 0.84), run(6)]),  # a seed missed: no median
            speedrun.recipe_row("far miss", cfg, [run(None, 0.70)] * 3)]
    assert [r["median_seconds"] for r in rows] == [21, 11, None, None] and rows[1]["max_seconds"] == 100
    assert [r["recipe"] for r in speedrun.ranked(rows)] == ["one slow seed", "steady", "close miss", "far miss"]
    assert [r["recipe"] for r in speedrun.ranked(rows[::-1])] == ["one slow seed", "steady", "close miss", "far miss"]


def test_a_recipe_is_selected_by_name_and_an_unknown_one_refused(tmp_path, tiny_recipes):
    rows = speedrun.speedrun_suite(tmp_path, None, None, row=["reachable"])
    assert [r["recipe"] for r in rows] == ["reachable"]
    with pytest.raises(SelfSupError, match="no recipe 'nope'; its recipes: unreachable, reachable"):
        speedrun.speedrun_suite(tmp_path, None, None, row=["nope"])


def test_every_speedrun_recipe_resolves_and_checks_the_targets():
    for name, settings in definitions.SPEEDRUN_RECIPES:
        cfg = speedrun.speedrun_config(settings, 0)
        assert cfg["knn"]["target_knn"] == 0.85 and cfg["knn"]["target_linear"] == 0.88, name
        assert cfg["knn"]["every_n_steps"] > 0 and cfg["knn"]["monitor_train_size"] == 0, name


def test_fmnist_long_has_every_listed_method_then_its_ablations_at_50_epochs():
    rows = definitions.fmnist_long_runs()
    assert [m for _, m, _ in rows][:11] == list(definitions.FMNIST_LONG_METHODS)
    assert definitions.FMNIST_LONG["epochs"] == 50 and definitions.FMNIST_LONG["batch_size"] == 256
    settings = dict((label, s) for label, _, s in rows)
    assert settings["moco-v2, queue 65536 (the paper's)"]["params"]["queue_size"] == 65536
    # over MoCo's fmnist-quick settings
    assert settings["moco-v2, queue 65536 (the paper's)"]["params"]["symmetric"] is True
    assert settings["moco-v2"]["params"]["queue_size"] == 4096
    assert settings["byol"] == definitions.FMNIST_QUICK_TUNED["byol"]


def test_an_accuracy_suite_with_a_label_fraction_fine_tunes_each_run_beside_scratch(tmp_path):
    from selfsup.bench.suites import accuracy_suite

    overrides = {**TINY, "epochs": 1, "knn": {"k": 20, "every_n_epochs": 0}, "trainer": {"progress_bar": False}}
    rows = accuracy_suite(tmp_path, "t", "t", [("simclr", "simclr", {})], overrides, probe_epochs=2,
                          finetune_fraction=0.25)
    run = rows[0]
    result = json.loads((tmp_path / "runs" / "simclr" / "eval_finetune-25pct.json").read_text())
    assert run["method"] == "simclr" and (run["finetune_25pct"], run["scratch_25pct"]) == (result["top1"],
                                                                                          result["scratch_top1"])
    assert result["top1"] != result["scratch_top1"] and result["label_fraction"] == pytest.approx(0.25, abs=0.01)
    assert "finetune_25pct: the whole encoder" in (tmp_path / "t.md").read_text()
    assert run["finetune_revision"] == 2 and "finetune_revision 1:" not in (tmp_path / "t.md").read_text()


def test_a_suite_fine_tunes_again_a_result_older_than_the_protocol_s_fix_only_where_its_row_is_asked_for(tmp_path):
    from selfsup.bench.suites import accuracy_suite

    overrides = {**TINY, "epochs": 1, "knn": {"k": 20, "every_n_epochs": 0}, "trainer": {"progress_bar": False}}
    runs = [("simclr", "simclr", {}), ("simclr seed 1", "simclr", {"seed": 1})]
    suite = dict(out=tmp_path, name="t", title="t", runs=runs, overrides=overrides, probe_epochs=2, finetune_fraction=0.25)
    accuracy_suite(**suite, selected_rows=["simclr"])
    result_file = tmp_path / "runs" / "simclr" / "eval_finetune-25pct.json"
    fresh = json.loads(result_file.read_text())
    assert fresh["revision"] == 2
    result_file.write_text(json.dumps({**fresh, "revision": 1, "top1": 0.001}))  # as made before the fix
    rows = accuracy_suite(**suite, selected_rows=["simclr-seed-1"])  # another row asked for: shown as it is, marked
    assert [(r["method"], r["finetune_25pct"], r["finetune_revision"]) for r in rows[:2]] == [
        ("simclr", 0.001, 1), ("simclr seed 1", rows[1]["finetune_25pct"], 2)]
    assert "finetune_revision 1:" in (tmp_path / "t.md").read_text()
    assert (rows[0]["finetune_checkpoint"], rows[1]["finetune_checkpoint"]) == ("original", "original")
    RunDirectory(tmp_path / "runs" / "simclr").checkpoint.unlink()  # gone, as on another machine
    rows = accuracy_suite(**suite, selected_rows=["simclr"])  # its row asked for: pretrained again, fine-tuned there
    assert (rows[0]["finetune_revision"], rows[0]["finetune_checkpoint"]) == (2, "remade")
    assert rows[0]["finetune_25pct"] == pytest.approx(fresh["top1"], abs=0.05)  # the same settings and seed
    assert (tmp_path / "runs" / "simclr" / "remade" / "metrics.json").exists()
    assert json.loads(result_file.read_text())["revision"] == 2 and "finetune_revision 1:" not in (tmp_path / "t.md").read_text()


def test_the_recipes_suite_trains_both_recipes_only_where_a_method_has_a_short_one(tmp_path, monkeypatch):
    from selfsup.bench import recipes

    rows = [(f"{m}, {r}, 1 ep", m, {"recipe": r, "epochs": 1}) for m, rs in (("simclr", ("paper", "short")),
                                                                          ("rotation", ("paper",))) for r in rs]
    rows += definitions.spread_rows("simclr, short, 1 ep", "simclr", {"recipe": "short", "epochs": 1})
    monkeypatch.setattr(recipes, "recipe_runs", lambda: rows)
    monkeypatch.setattr(recipes, "RECIPE_EPOCHS", (1,))
    monkeypatch.setattr(recipes, "RECIPE_BUDGET", {k: v for k, v in TINY.items() if k not in ("epochs", "knn")})
    table = {r["method"]: r for r in recipes.recipes_suite(tmp_path / "recipes", None, None)}
    assert table["simclr"]["short_recipe"] == "yes" and table["rotation"]["short_recipe"] == "= paper"
    assert table["rotation"]["knn_paper_1ep"] == table["rotation"]["knn_short_1ep"] is not None
    assert table["simclr"]["knn_paper_1ep"] != table["simclr"]["knn_short_1ep"]  # T 0.5 against 0.2: other runs
    temperature = [RunDirectory(tmp_path / "recipes" / "runs" / f"simclr-{r}-1-ep").saved_config()["params"]["temperature"]
                   for r in ("paper", "short")]
    assert temperature == [0.5, 0.2] and table["simclr"]["random_init_knn"] is not None
    # the other training seeds of the spread row are a note, not cells or rows of the table
    knn = [table["simclr"]["knn_short_1ep"]] + [
        json.loads((tmp_path / "recipes" / "runs" / f"simclr-short-1-ep-training-seed-{seed}" / "metrics.json")
                   .read_text())["knn_top1"] for seed in (1, 2)]
    assert set(table) == {"simclr", "rotation"} and len(set(knn)) == 3
    assert f"a range of {100 * (max(knn) - min(knn)):.2f} points" in (tmp_path / "recipes" / "recipes.md").read_text()

    # fmnist-quick's runs stand for the cells with its epochs and settings: the short recipe's, and
    # the one run of a method without a short entry; the paper recipe of a method with one trains
    quick = tmp_path / "fmnist-quick" / "runs"
    quick.mkdir(parents=True)
    for method, recipe in (("simclr", "short"), ("rotation", "paper")):
        (tmp_path / "recipes" / "runs" / f"{method}-{recipe}-1-ep").rename(quick / method)
    monkeypatch.setattr(recipes, "QUICK_EPOCHS", 1)
    monkeypatch.setattr(recipes, "pretrain_row", lambda label, *args, **kwargs: pytest.fail(f"{label} trained"))
    again = {r["method"]: r for r in recipes.recipes_suite(tmp_path / "recipes", None, None)}
    assert again["rotation"]["fmnist_quick_run"] == again["simclr"]["fmnist_quick_run"] == "yes"
    assert [again[m][f"knn_{r}_1ep"] for m in ("simclr", "rotation") for r in ("paper", "short")] == \
        [table[m][f"knn_{r}_1ep"] for m in ("simclr", "rotation") for r in ("paper", "short")]
    assert "Precision" not in (tmp_path / "recipes" / "recipes.md").read_text()  # every run in 32-true

    # a cell made in another precision (``auto`` on another machine) is named under the table
    as_if_made_in(quick / "simclr", "bf16-mixed")
    recipes.recipes_suite(tmp_path / "recipes", None, None)
    assert ("Precision (the one `auto` chose on the machine that made the run): 32-true, but for bf16-mixed: "
            "simclr short 1 ep.") in (tmp_path / "recipes" / "recipes.md").read_text()

    # cells made before a fix of their method (its revision rose), fmnist-quick's run among them, keep
    # their figures while another method is run, and are named under the table
    from selfsup.methods import METHODS
    monkeypatch.setattr(METHODS["simclr"], "revision", METHODS["simclr"].revision + 1)
    rows = {r["method"]: r for r in recipes.recipes_suite(tmp_path / "recipes", None, ["rotation"])}
    assert [rows["simclr"][f"knn_{r}_1ep"] for r in ("paper", "short")] == \
        [table["simclr"][f"knn_{r}_1ep"] for r in ("paper", "short")]
    assert ("Made before a fix of their method ([before fix]; the suite makes them again when the method is run): "
            "simclr paper 1 ep, simclr short 1 ep.") in (tmp_path / "recipes" / "recipes.md").read_text()


def test_recipe_rows_cover_every_method_that_learns_without_labels():
    from selfsup.config import packaged_config
    from selfsup.methods import METHODS

    rows = definitions.recipe_runs()
    short = packaged_config("recipes")["short"]
    for m, cls in METHODS.items():
        recipes = {(s["recipe"], s["epochs"]) for _, method, s in rows if method == m}
        if cls.semi_supervised or cls.supervised or cls.colour_only or "image" not in cls.modalities:
            assert not recipes, m
        else:
            assert recipes == {(r, e) for e in (1, 5) for r in (("paper", "short") if m in short else ("paper",))}, m
    epochs = [settings["epochs"] for _, _, settings in rows]
    assert epochs == sorted(epochs)  # the 1-epoch cells first
    labels = [label for label, _, _ in rows]
    reference = labels.index(definitions.RECIPE_SPREAD_ROW)  # its other training seeds follow it
    assert [rows[reference + k][2] for k in (1, 2)] == [{**rows[reference][2], "seed": seed} for seed in (1, 2)]


def test_the_quickstart_runs_the_chosen_speedrun_recipe_with_fewer_epochs():
    import re
    from pathlib import Path

    import yaml

    from selfsup.config import resolve

    root = Path(__file__).resolve().parents[1]
    quickstart = yaml.safe_load((root / "configs" / "quickstart.yaml").read_text())
    script = (root / "quickstart.sh").read_text()
    assert re.search(rf"--method {quickstart['method']} .*--config configs/quickstart.yaml", script)
    recipe = speedrun.speedrun_config(dict(definitions.SPEEDRUN_RECIPES)[definitions.QUICKSTART_RECIPE], 0)
    ours = resolve(quickstart["method"], str(root / "configs" / "quickstart.yaml"))
    for key in ("method", "batch_size", "optimizer", "schedule", "params", "backbone", "recipe"):
        assert ours[key] == recipe[key], key
    assert ours["trainer"]["precision"] == recipe["trainer"]["precision"]
    assert ours["epochs"] < recipe["epochs"]

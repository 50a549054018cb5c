"""Semi-supervised learning: labelled subsets, mixed batches, FixMatch's strong view, the
`selfsup semisup` command (tiny runs beat chance), --init, and bad input (exit 2, nothing written)."""
import csv
import json
import os

import numpy as np
import pytest
import yaml
import torch

from selfsup.cli import main
from selfsup.data.randaugment import OPERATIONS, cutout, rand_augment
from selfsup.data.samplers import LabelledUnlabelledBatchSampler
from selfsup.methods.semisup.base import ema_note, labelled_indices

SEMI = ["--dataset", "synthetic", "--width", "8", "--batch-size", "16", "--labels-per-class", "10",
        "--set", "trainer.progress_bar=false", "--set", "knn.k=20", "--set", "params.unlabelled_ratio=2",
        "--set", "params.ema=0.9", "--set", "optimizer.lr=0.05"]


def test_labelled_indices_per_class_and_seeded():
    labels = np.repeat(np.arange(3), 20)
    a = labelled_indices(labels, 4, seed=0)
    assert np.bincount(labels[a.numpy()]).tolist() == [4, 4, 4]
    assert torch.equal(a, labelled_indices(labels, 4, seed=0))
    assert not torch.equal(a, labelled_indices(labels, 4, seed=1))


def test_ema_note_when_the_initial_weights_would_linger():
    assert "keeps 34% of its random initial weights" in ema_note(0.999, 1070)  # 0.999 ** 1070 = 0.343
    assert "a rate of 0.9953 or lower" in ema_note(0.999, 1070)
    assert 0.9953 ** 1070 < 0.01 and ema_note(0.99, 1070) is None and ema_note(0.999, 2 ** 20) is None


def test_mixed_batches_start_with_labelled_images_and_pass_over_the_pool():
    labelled = torch.tensor([3, 7, 11])
    sampler = LabelledUnlabelledBatchSampler(labelled, pool_size=40, labelled_batch=2, unlabelled_ratio=4, seed=0)
    batches = list(sampler)
    assert len(batches) == 5 and all(len(b) == 10 for b in batches)
    assert all(set(b[:2]) <= {3, 7, 11} for b in batches)
    unlabelled = [i for b in batches for i in b[2:]]
    assert len(set(unlabelled)) == 40  # one pass over the pool, no repeats


def test_strong_view_stays_in_range_and_changes_every_image():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(32, 3, 16, 16)
    for name, op in OPERATIONS.items():
        y = op(x, torch.rand(32))
        assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1 + 1e-6, name
    y = rand_augment(x, g)
    assert y.min() >= 0 and y.max() <= 1 and ((y - x).abs().flatten(1).max(1).values > 0).all()
    assert torch.equal(rand_augment(x, torch.Generator().manual_seed(5)), rand_augment(x, torch.Generator().manual_seed(5)))
    # posterize at magnitude 0 keeps 4 bits: multiples of 16/255
    assert torch.allclose((OPERATIONS["posterize"](x, torch.zeros(32)) * 255 / 16).frac(), torch.zeros(1), atol=1e-4)
    cut = cutout(torch.zeros(4, 1, 16, 16), 0.5, torch.Generator().manual_seed(0))
    assert ((cut == 0.5).flatten(1).sum(1) <= 8 * 8 + 2 * 9).all() and (cut == 0.5).any()


def test_equalize_maps_each_level_to_its_cumulative_share():
    """Half black, a quarter at 0.4, a quarter at 0.8 → 0, 1/2, 1; a one-level image is kept."""
    x = torch.zeros(2, 1, 4, 4)
    x[0, 0, 2] = 0.4
    x[0, 0, 3] = 0.8
    x[1] = 0.3
    out = OPERATIONS["equalize"](x, torch.zeros(2))
    expected = torch.zeros(4, 4)
    expected[2], expected[3] = 0.5, 1.0
    assert torch.allclose(out[0, 0], expected) and torch.equal(out[1], x[1])


# self-training's rounds take about 40 seconds on one core: slow (tests/test_learning.py holds it to learning)
@pytest.mark.parametrize("method,balance", [(name, []) for name in ("supervised-only", "pseudo-label", "fixmatch", "frost")] +
                         [pytest.param("self-training", [], marks=pytest.mark.slow)] +
                         [("fixmatch", ["--balance", "loss"]), ("fixmatch", ["--balance", "hybrid"])],
                         ids=lambda v: (" ".join(v) or "default balance") if isinstance(v, list) else v)
def test_tiny_semisup_run_beats_chance(method, balance, tmp_path, capsys):
    out = tmp_path / method
    assert main(["semisup", "--method", method, "--epochs", "6", "--out", str(out)] + SEMI + balance) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_top1"] > 1 / 6 + 0.15  # 6 classes
    assert "classifier test top-1" in capsys.readouterr().out
    if method == "self-training":  # rounds start at epochs 2 and 4
        assert [h["round"] for h in metrics["epoch_history"] if "round" in h] == [1, 2]
        assert metrics["epoch_history"][-1]["pool_label_accuracy"] > 0.5
    elif method != "supervised-only":
        history = metrics["epoch_history"][-1]
        counted = sum(history[f"pseudo_labels_class_{c}"] for c in range(6))
        assert counted == pytest.approx(history["pseudo_label_rate"] * 16 * 2 * 512 // 32)


def test_init_starts_from_a_pretrained_backbone_and_refuses_another_input(tmp_path, capsys):
    from support import TINY

    from selfsup.config import resolve
    from selfsup.io import read_checkpoint
    from selfsup.build import build_method
    from selfsup.engine.train import load_datasets

    assert main(["pretrain", "--method", "simclr", "--epochs", "1", "--out", str(tmp_path / "simclr")] + TINY) == 0
    ckpt = tmp_path / "simclr" / "checkpoints" / "last.ckpt"
    cfg = resolve("fixmatch", None, {"dataset": "synthetic", "backbone": {"width": 8, "init": str(ckpt)},
                                     "batch_size": 16})
    load_datasets(cfg)
    method = build_method(cfg)
    saved = read_checkpoint(ckpt)[0]["state_dict"]
    assert torch.equal(method.backbone.conv1.weight, saved["method.backbone.conv1.weight"])
    assert torch.equal(method.ema_backbone.conv1.weight, saved["method.backbone.conv1.weight"])
    out = tmp_path / "grey"
    code = main(["semisup", "--method", "fixmatch", "--init", str(ckpt), "--out", str(out)] + SEMI +
                ["--set", "data.channels=1"])
    err = capsys.readouterr().err
    assert code == 2 and "does not fit this run's" in err and not out.exists()


@pytest.fixture(scope="module")
def interrupted_semisup_run(tmp_path_factory):
    """A run with its checkpoint and settings but no metrics.json yet, as a crash leaves it."""
    out = tmp_path_factory.mktemp("semisup") / "run"
    assert main(["semisup", "--method", "fixmatch", "--epochs", "1", "--out", str(out)] + SEMI) == 0
    (out / "metrics.json").unlink()
    return out


# (flags, the error's words for a new run, for resuming a run): a count that only the data can refuse
# differs from the interrupted run's settings first
@pytest.mark.parametrize("argv,needles", [
    (["--labels-per-class", "0"], ["labels_per_class"] * 2),
    (["--labels-per-class", "100000"], ["more than the 85 images", "must repeat the run's settings"]),
    (["--set", "params.threshold=0"], ["params.threshold"] * 2),
    (["--set", "params.threshold=1.5"], ["params.threshold"] * 2),
    (["--init", "corrupt.ckpt"], ["corrupt"] * 2),
    (["--init", "absent.ckpt"], ["does not exist"] * 2)])
@pytest.mark.parametrize("into", ["a new directory", "an interrupted run"])
def test_bad_input_exits_2_and_writes_nothing(argv, needles, into, interrupted_semisup_run, tmp_path, capsys):
    (tmp_path / "corrupt.ckpt").write_bytes(b"not a checkpoint")
    argv = [str(tmp_path / a) if a.endswith(".ckpt") else a for a in argv]
    out = tmp_path / "new" if into == "a new directory" else interrupted_semisup_run
    needle = needles[into != "a new directory"]
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    code = main(["semisup", "--method", "fixmatch", "--epochs", "1", "--out", str(out), *SEMI, *argv, "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("selfsup: error:"), err
    assert out.exists() == (into != "a new directory")
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # nothing written or changed


def _method(balance: str, name: str = "fixmatch", **params):
    from selfsup.config import resolve
    from selfsup.build import build_method
    from selfsup.engine.train import load_datasets

    cfg = resolve(name, None, {"dataset": "synthetic", "backbone": {"width": 8}, "batch_size": 16,
                               "params": {"balance": balance, "threshold": 0.5, **params}})
    load_datasets(cfg)
    return build_method(cfg)


def test_step_end_moves_the_ema_network_at_its_rate_and_copies_the_batchnorm_statistics():
    from support import perturb, tiny
    method = tiny("fixmatch", ema=0.9)
    perturb(method.backbone, method.classifier)  # the online network now differs from its EMA copy
    method.train()
    with torch.no_grad():  # a training-mode forward moves the online BatchNorm statistics
        method.logits(torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0)))
    pairs = [(method.ema_backbone, method.backbone), (method.ema_classifier, method.classifier)]
    old = [{n: p.detach().clone() for n, p in ema.named_parameters()} for ema, _ in pairs]
    new = [{n: p.detach().clone() for n, p in online.named_parameters()} for _, online in pairs]
    old_buffers = {n: b.clone() for n, b in method.ema_backbone.named_buffers()}
    new_buffers = {n: b.clone() for n, b in method.backbone.named_buffers()}
    assert any(not torch.equal(old_buffers[n], new_buffers[n]) for n in new_buffers)
    method.on_step_end(0, 100)
    for (ema, _), before, online in zip(pairs, old, new):
        after = dict(ema.named_parameters())
        assert after.keys() == before.keys() == online.keys() and after
        for name in after:
            expected = 0.9 * before[name] + 0.1 * online[name]  # ema·old + (1 − ema)·new, ema 0.9
            assert torch.allclose(after[name], expected, atol=1e-6), name
    assert any(n.endswith("running_mean") for n in new_buffers)
    for name, buffer in method.ema_backbone.named_buffers():
        assert torch.equal(buffer, new_buffers[name]), name


def test_frost_runs_the_step_hooks_of_its_self_supervised_method():
    """BYOL's target network follows the shared backbone only through BYOL's own step hook."""
    method = _method("data", "frost", self_supervised="byol")
    byol = method.self_supervised
    assert byol.backbone is method.backbone and byol.generator is method.generator
    with torch.no_grad():
        for param in method.backbone.parameters():
            param.add_(1.0)
    before = [p.clone() for p in byol.target_backbone.parameters()]
    method.on_step_end(1, 100)
    momentum = byol.cfg["base_momentum"]
    for old, new, online in zip(before, byol.target_backbone.parameters(), method.backbone.parameters()):
        assert torch.allclose(new, momentum * old + (1 - momentum) * online, atol=1e-5)


@pytest.mark.parametrize("name,needle", [("simsiam", "its own parameter groups"), ("deepcluster", "its own train batches"),
                                         ("supcon", "self-supervised method"), ("nonsense", "self-supervised method")])
def test_frost_refuses_a_method_it_cannot_host(name, needle, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["semisup", "--method", "frost", "--out", str(out), *SEMI, "--set", f"params.self_supervised={name}"])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


@pytest.mark.parametrize("balance", ["none", "data", "loss", "hybrid"])
def test_balancing_favours_the_rare_pseudo_label_classes(balance):
    """An imbalanced pool: class 0 was predicted 10 times as often as the others last epoch."""
    method = _method(balance)
    method.previous_counts.copy_(torch.tensor([100.0, 10, 10, 10, 10, 10]))
    targets = torch.arange(6).repeat_interleave(200)
    logits = torch.nn.functional.one_hot(targets, 6).float() * 10  # all confident
    _, weights = method.pseudo_labels(logits, targets)
    per_class = torch.stack([weights[targets == c].sum() for c in range(6)])
    kept = torch.tensor([method.pseudo_counts[c] for c in range(6)])
    if balance == "none":
        assert torch.equal(per_class, torch.full((6,), 200.0)) and torch.equal(kept, torch.full((6,), 200.0))
    if balance in ("data", "hybrid"):  # class 0 kept with probability 10/100
        assert 5 < kept[0] < 40 and (kept[1:] == 200).all()
    if balance == "loss":  # weights mean n / n_c, normalised: class 0 gets 1/10 of the others
        assert (kept == 200).all() and float(per_class[0]) == pytest.approx(float(per_class[1]) / 10, rel=1e-4)
    if balance != "none":
        assert per_class[0] < per_class[1:].min() / 4


@pytest.mark.parametrize("balance", ["data", "loss", "hybrid"])
def test_a_class_without_confident_predictions_counts_as_the_rarest(balance):
    """Counts (0, 100, 10, 10, 10, 10): class 0 is kept and weighted like classes 2-5, and the
    weights of the classes that have counts keep their size (1/n_c over the mean of 1/n_c)."""
    keep, weight = _method(balance).class_balance(torch.tensor([0.0, 100, 10, 10, 10, 10]))
    inverse = 1 / torch.tensor([10.0, 100, 10, 10, 10, 10])
    expected_weight = inverse / inverse.mean() if balance != "data" else torch.ones(6)
    expected_keep = torch.tensor([1.0, 0.1, 1, 1, 1, 1]) if balance != "loss" else torch.ones(6)
    assert torch.allclose(weight, expected_weight) and torch.allclose(keep, expected_keep)


@pytest.mark.parametrize("balance", ["none", "data", "loss", "hybrid"])
def test_no_class_balance_before_any_confident_prediction(balance):
    keep, weight = _method(balance).class_balance(torch.zeros(6))
    assert torch.equal(keep, torch.ones(6)) and torch.equal(weight, torch.ones(6))


def test_self_training_data_balance_keeps_as_many_pool_labels_per_class():
    method = _method("data", "self-training")
    n = method.run.train_size
    targets = torch.where(torch.arange(n) % 4 == 0, (torch.arange(n) // 4) % 6, torch.zeros(n, dtype=torch.long))
    scores = torch.nn.functional.one_hot(targets, 6).float() * 10  # the "network" favours class 0

    def embed(encode=None):
        return scores, targets

    stats = method.on_epoch_start(method.run.epochs // method.cfg["iterations"], embed)  # the first relabelling
    counts = [stats[f"pool_class_{c}"] for c in range(6)]
    assert len(set(counts)) == 1 and counts[0] > 0


@pytest.mark.slow  # about a minute on one core
def test_semisup_suite_tabulates_seeds_reuses_runs_and_probes_the_init(tmp_path, monkeypatch):
    from support import TINY, as_if_made_in

    from selfsup.bench import semisup
    from selfsup.bench.semisup import semisup_suite
    from selfsup.config import merge, resolve

    assert main(["pretrain", "--method", "simclr", "--epochs", "1", "--out", str(tmp_path / "simclr")] + TINY) == 0
    budget = {"dataset": "synthetic", "epochs": 4, "batch_size": 16, "backbone": {"width": 8},
              "knn": {"k": 20, "every_n_epochs": 0}, "params": {"unlabelled_ratio": 2},
              "trainer": {"progress_bar": False}}
    out = tmp_path / "suite"
    kwargs = dict(methods=["supervised-only", "self-training"], labels=(3,), seeds=(0, 1), budget=budget,
                  init=tmp_path / "simclr" / "checkpoints" / "last.ckpt")
    plotted, draw = {}, semisup.curve_plot
    monkeypatch.setattr(semisup, "curve_plot", lambda path, panels, *a, **k: plotted.update({path.name: panels})
                        or draw(path, panels, *a, **k))
    rows = semisup_suite(out, **kwargs)
    assert [r["method"] for r in rows] == ["supervised-only", "self-training", "linear probe of the SimCLR checkpoint"]
    assert all(r["3_per_class"].endswith("(n=2)") for r in rows)
    runs = sorted(p.name for p in (out / "runs").iterdir())
    assert runs == ["self-training-3labels-seed0", "self-training-3labels-seed1", "supervised-only-3labels-seed0",
                    "supervised-only-3labels-seed1"]
    saved = json.loads((out / "runs" / runs[0] / "config.yaml").parent.joinpath("metrics.json").read_text())
    rounds = [(h["round"], h["pool_top1"]) for h in saved["epoch_history"] if "pool_top1" in h]
    assert [r for r, _ in rounds] == [1, 2, 3] and all(0 <= top1 <= 1 for _, top1 in rounds)  # 4 rounds of 1 epoch
    assert (out / "semisup_self_training.png").stat().st_size > 0
    by_labels = plotted["semisup_by_labels.png"][""]  # each row's mean over its seeds at each label count
    assert list(by_labels) == [r["method"] for r in rows] and (out / "semisup_by_labels.png").stat().st_size > 0
    assert [by_labels[r["method"]] for r in rows] == [([3], [pytest.approx(float(r["3_per_class"][:6]), abs=6e-5)])
                                                       for r in rows]
    probes = json.loads((out / "simclr_linear_probes.json").read_text())
    assert set(probes) == {"3/0", "3/1"} and probes["3/0"] != probes["3/1"]  # other labelled images per seed
    stamp = (out / "runs" / runs[0] / "metrics.json").stat().st_mtime_ns
    assert semisup_suite(out, **kwargs) == rows  # everything reused
    assert (out / "runs" / runs[0] / "metrics.json").stat().st_mtime_ns == stamp
    assert semisup_suite(out, **{**kwargs, "seeds": (1,)}) == rows  # the table shows every finished run of the grid
    assert "--labels-per-class 3 --label-seed 0 --label-seed 1" in (out / "semisup.md").read_text()
    # a run claimed by another live process (here: this one) is left to it and out of the table
    (out / "runs" / ".supervised-only-3labels-seed2.claim").write_text(str(os.getpid()))
    shared = semisup_suite(out, **{**kwargs, "methods": ["supervised-only"], "seeds": (0, 1, 2)})
    assert shared[0]["3_per_class"].endswith("(n=2)") and not (out / "runs" / "supervised-only-3labels-seed2").exists()
    # ... and counts when that process finishes it while this one trains a later row
    train_row = semisup.pretrain_row

    def the_other_process_finishes_first(label, cfg, run_dir):
        other = out / "runs" / "supervised-only-3labels-seed2"
        if not other.exists():
            saved = resolve("supervised-only", str(out / "runs" / "supervised-only-3labels-seed0" / "config.yaml"))
            train_row(other.name, merge(saved, {"params": {"label_seed": 2}}), other)
        return train_row(label, cfg, run_dir)

    monkeypatch.setattr(semisup, "pretrain_row", the_other_process_finishes_first)
    rows = semisup_suite(out, **{**kwargs, "seeds": (0, 1, 2)})
    assert [r["3_per_class"][-5:] for r in rows] == ["(n=3)"] * 3
    # the run-to-run spread: a cell again with another training seed, reported in a note, not a cell
    monkeypatch.setattr(semisup, "SPREAD_CELLS", (("supervised-only", 3, 0),))
    monkeypatch.setattr(semisup, "SPREAD_SEEDS", (1,))
    spread = semisup_suite(out, **{**kwargs, "methods": ["supervised-only"], "seeds": (0,)})
    assert spread[0]["3_per_class"].endswith("(n=3)")
    top1 = [json.loads((out / "runs" / f"supervised-only-3labels-seed0{t}" / "metrics.json").read_text())["test_top1"]
            for t in ("", "-training-seed1")]
    assert yaml.safe_load((out / "runs" / "supervised-only-3labels-seed0-training-seed1" / "config.yaml").read_text())[
        "seed"] == 1
    assert f"label seed 0: {top1[0]:.4f}, {top1[1]:.4f} (training seeds 0, 1;" in (out / "semisup.md").read_text()
    assert "Precision:" not in (out / "semisup.md").read_text()  # every run in 32-true
    assert "views in bfloat16" not in (out / "semisup.md").read_text()
    # a run made where `auto` chose bf16-mixed is kept (precision does not decide what is trained) and named
    as_if_made_in(out / "runs" / "self-training-3labels-seed1", "bf16-mixed")
    semisup_suite(out, **kwargs)
    assert ("Precision: the runs trained in 32-true except some runs of these cells (labels per class; "
            in (out / "semisup.md").read_text())
    assert "names each run's precision, the one `auto` chose on the machine that made it): bf16-mixed: " \
        "self-training at 3." in (out / "semisup.md").read_text()
    assert "made their views in bfloat16 too" in (out / "semisup.md").read_text()
    with open(out / "semisup_runs.csv") as table:
        assert {(r["label_seed"], r["precision"]) for r in csv.DictReader(table) if r["row"] == "self-training"} \
            == {("0", "32-true"), ("1", "bf16-mixed"), ("2", "32-true")}  # the bf16 run kept, not made again


def test_benchmark_refuses_a_suite_option_of_another_suite(tmp_path, capsys):
    assert main(["benchmark", "--suite", "smoke", "--out", str(tmp_path / "out"), "--label-seed", "1"]) == 2
    assert "--label-seed is not an option of the smoke suite" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def scripted(method_name: str, **params):
    """A semi-supervised method whose network returns its input: each view *is* its logits."""
    from support import tiny

    method = tiny(method_name, **params)
    method.logits = lambda x: x
    return method


def test_fixmatch_step_trains_the_strong_view_on_the_confident_weak_predictions():
    method = scripted("fixmatch", threshold=0.95, lambda_u=2.0)
    labelled = torch.tensor([[2.0, 0, 0, 0, 0, 0], [0, 0, 1.0, 0, 0, 0]])
    weak = torch.tensor([[9.0, 0, 0, 0, 0, 0],  # confident: class 0
                         [1.0, 1.0, 0, 0, 0, 0],  # not confident
                         [0, 0, 0, 0, 9.0, 0]], requires_grad=True)  # confident: class 4
    strong = torch.randn(3, 6, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    batch = {"labeled": {"views": [labelled], "label": torch.tensor([0, 1])},
             "unlabeled": {"views": [weak, strong], "label": torch.tensor([0, 1, 3]), "index": torch.arange(3)}}
    out = method.training_step(batch, 0)
    supervised = torch.nn.functional.cross_entropy(labelled, torch.tensor([0, 1]))
    per_image = torch.nn.functional.cross_entropy(strong, torch.tensor([0, 0, 4]), reduction="none")
    consistency = (per_image[0] + per_image[2]) / 3  # masked, averaged over all unlabelled images
    assert out["supervised"].item() == pytest.approx(supervised.item(), rel=1e-6)
    assert out["unlabelled"].item() == pytest.approx(consistency.item(), rel=1e-6)
    assert out["loss"].item() == pytest.approx((supervised + 2.0 * consistency).item(), rel=1e-6)
    assert out["mask_rate"].item() == pytest.approx(2 / 3)
    out["loss"].backward()
    assert torch.all(weak.grad == 0)  # the weak view is the target: no gradient through it
    assert strong.grad[1].abs().sum() == 0 and strong.grad[0].abs().sum() > 0  # unconfident image: no loss
    assert method.confident_counts.tolist() == [1, 0, 0, 0, 1, 0]


LABELLED = {"views": [torch.tensor([[2.0, 0, 0, 0, 0, 0], [0, 0, 1.0, 0, 0, 0]])], "label": torch.tensor([0, 1])}
SUPERVISED = torch.nn.functional.cross_entropy(LABELLED["views"][0], LABELLED["label"]).item()


def unlabelled_batch(*views, label=(0, 1, 3)):
    return {"labeled": LABELLED, "unlabeled": {"views": list(views), "label": torch.tensor(label),
                                               "index": torch.arange(len(label))}}


def cross_entropy_to(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per row, −Σ_c target_c log softmax(logits)_c (targets: class indices or distributions)."""
    if targets.dim() == 1:
        targets = torch.nn.functional.one_hot(targets, logits.shape[1]).float()
    return -(targets * logits.log_softmax(1)).sum(1)


def test_supervised_only_step_is_the_labelled_cross_entropy_alone():
    out = scripted("supervised-only").training_step(unlabelled_batch(), 0)
    assert set(out) == {"loss", "supervised"} and out["loss"].item() == pytest.approx(SUPERVISED, rel=1e-6)


def test_pseudo_label_step_adds_the_confident_predictions_cross_entropy_times_lambda_u():
    method = scripted("pseudo-label", threshold=0.5, ramp=0.0, lambda_u=3.0)
    weak = torch.tensor([[5.0, 0, 0, 0, 0, 0], [0.5, 0.4, 0, 0, 0, 0], [0, 0, 0, 4.0, 0, 0]])
    out = method.training_step(unlabelled_batch(weak), 0)
    unlabelled = (cross_entropy_to(weak, torch.tensor([0, 0, 3])) * torch.tensor([1.0, 0, 1])).mean()
    assert out["unlabelled"].item() == pytest.approx(unlabelled.item(), rel=1e-6)
    assert out["loss"].item() == pytest.approx(SUPERVISED + 3.0 * unlabelled.item(), rel=1e-6)


def test_mean_teacher_step_pulls_the_students_second_view_to_the_teachers_first():
    method = scripted("mean-teacher", ramp=0.0, lambda_u=50.0)
    method.predict = lambda x: 2 * x  # the EMA network, another function than the student's
    first, second = torch.randn(2, 3, 6, generator=torch.Generator().manual_seed(1))
    out = method.training_step(unlabelled_batch(first, second), 0)
    unlabelled = (second.softmax(1) - (2 * first).softmax(1)).square().mean()
    assert out["loss"].item() == pytest.approx(SUPERVISED + 50.0 * unlabelled.item(), rel=1e-6)


def test_self_training_step_trains_the_pool_images_on_their_assigned_labels():
    method = scripted("self-training", lambda_u=2.0, iterations=2)
    method.assigned[:3] = torch.tensor([4, -1, 1])  # the second image has no label this round
    weak = torch.randn(3, 6, generator=torch.Generator().manual_seed(2))
    out = method.training_step(unlabelled_batch(weak), 0)
    unlabelled = (cross_entropy_to(weak, torch.tensor([4, 0, 1])) * torch.tensor([1.0, 0, 1])).sum() / 3
    assert out["loss"].item() == pytest.approx(SUPERVISED + 2.0 * unlabelled.item(), rel=1e-6)


def test_uda_step_anneals_the_labelled_loss_and_trains_the_strong_view_on_sharpened_soft_targets():
    # Xie et al. 2020: TSA (linear: at half the run a labelled image counts while its correct-class
    # probability is at most 0.5 (1 − 1/6) + 1/6); the strong view's cross-entropy to the weak
    # view's softmax at T 0.4 where the weak view's confidence reaches 0.8
    method = scripted("uda", threshold=0.8, temperature=0.4, tsa="linear", lambda_u=1.0)
    method.total_steps = 10
    labelled = torch.tensor([[3.0, 0, 0, 0, 0, 0], [0, 0.5, 0, 0, 0, 0]])  # correct-class probability 0.80, 0.25
    weak = torch.tensor([[6.0, 2.0, 0, 0, 0, 0], [1.0, 1.0, 0, 0, 0, 0], [0, 0, 0, 0, 7.0, 0]])
    strong = torch.randn(3, 6, generator=torch.Generator().manual_seed(3))
    batch = unlabelled_batch(weak, strong)
    batch["labeled"] = {"views": [labelled], "label": torch.tensor([0, 1])}
    out = method.training_step(batch, 5)
    threshold = 0.5 * (1 - 1 / 6) + 1 / 6
    kept = (labelled.softmax(1)[torch.arange(2), torch.tensor([0, 1])] <= threshold).float()
    assert kept.tolist() == [0.0, 1.0]
    supervised = (cross_entropy_to(labelled, torch.tensor([0, 1])) * kept).mean()
    soft = (weak / 0.4).softmax(1)
    consistency = (cross_entropy_to(strong, soft) * (weak.softmax(1).max(1).values >= 0.8).float()).mean()
    assert out["supervised"].item() == pytest.approx(supervised.item(), rel=1e-6)
    assert out["unlabelled"].item() == pytest.approx(consistency.item(), rel=1e-6)
    assert out["loss"].item() == pytest.approx((supervised + consistency).item(), rel=1e-6)


def test_freematch_step_adds_its_fairness_term_on_the_strong_views_of_the_masked_images():
    from selfsup.losses.semisup import freematch_fairness

    method = scripted("freematch", lambda_f=0.3)
    weak = torch.tensor([[9.0, 0, 0, 0, 0, 0], [0.0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 9.0, 0]])
    strong = torch.randn(3, 6, generator=torch.Generator().manual_seed(4))
    out = method.training_step(unlabelled_batch(weak, strong), 0)
    # the thresholds start at 1/K and rise a little with this batch: the uniform prediction stays under
    mask = torch.tensor([1.0, 0, 1])
    assert out["mask_rate"].item() == pytest.approx(2 / 3)
    fairness = 0.3 * freematch_fairness(strong.softmax(1), method.class_mean, method.class_histogram, mask)
    assert out["fairness"].item() == pytest.approx(fairness.item(), rel=1e-6)
    consistency = (cross_entropy_to(strong, torch.tensor([0, 0, 4])) * mask).mean()
    assert out["loss"].item() == pytest.approx(SUPERVISED + consistency.item() + fairness.item(), rel=1e-6)


@pytest.mark.parametrize("mapping, mask", [("convex", [0.0, 1, 1, 1]), ("linear", [0.0, 0, 1, 1])])
def test_flexmatch_step_masks_by_the_thresholds_of_the_classes_learning_effects_before_the_step(mapping, mask):
    # Zhang et al. 2021: class 0 learnt by 300 pool images, class 4 by 150, 62 not yet counted
    # (warm-up: β = σ / max(300, 62)); convex thresholds 0.95 · β / (2 − β): 0.95, 0.32 (linear's
    # would be 0.475), 0 elsewhere
    import math

    method = scripted("flexmatch", threshold=0.95, lambda_u=1.0, mapping=mapping)
    method.learnt_class[:300], method.learnt_class[300:450] = 0, 4
    logit = lambda confidence: math.log(5 * confidence / (1 - confidence))  # noqa: E731  (max softmax of one class)
    weak = torch.zeros(4, 6)
    for row, (cls, confidence) in enumerate([(0, 0.9), (4, 0.4), (2, 0.2), (0, 0.99)]):
        weak[row, cls] = logit(confidence)
    strong = torch.randn(4, 6, generator=torch.Generator().manual_seed(7))
    batch = unlabelled_batch(weak, strong, label=(0, 4, 2, 0))
    batch["unlabeled"]["index"] = torch.tensor([500, 501, 502, 503])  # not yet counted
    out = method.training_step(batch, 0)
    # 0.9 < 0.95 for class 0; 0.4 >= 0.32 for class 4 (convex; < 0.475, linear); 0.2 >= 0 for class 2
    consistency = (cross_entropy_to(strong, torch.tensor([0, 4, 2, 0])) * torch.tensor(mask)).mean()
    assert out["unlabelled"].item() == pytest.approx(consistency.item(), rel=1e-6)
    assert method.learnt_class[500:504].tolist() == [-1, -1, -1, 0]  # only the prediction at τ counts as learnt


def test_softmatch_step_weighs_each_unaligned_pseudo_label_by_its_aligned_confidence():
    # Chen et al. 2023 (as USB): confidences after uniform alignment (the first batch's mean starts
    # the running mean), running μ and σ² from 1/K and 1 at momentum 0.5 here, weight 1 at or above μ
    # and exp(−(c − μ)² / (2σ²/4)) below; the class of the unaligned prediction is the target
    method = scripted("softmatch", ema_p=0.5, lambda_u=1.0)
    weak = torch.tensor([[4.0, 0, 0, 0, 0, 0], [0.5, 0.6, 0, 0, 0, 0], [0, 0, 0, 0, 3.0, 0], [2.0, 0, 0, 0, 0, 2.1]])
    strong = torch.randn(4, 6, generator=torch.Generator().manual_seed(6))
    out = method.training_step(unlabelled_batch(weak, strong, label=(0, 1, 4, 5)), 0)
    probs = weak.double().softmax(1)
    aligned = probs / probs.mean(0)  # times the uniform 1/K over the running mean, renormalised
    confidence = (aligned / aligned.sum(1, keepdim=True)).max(1).values
    mu = 0.5 / 6 + 0.5 * confidence.mean()
    variance = 0.5 * 1.0 + 0.5 * confidence.var()
    weights = torch.where(confidence >= mu, torch.ones(4, dtype=torch.double),
                          torch.exp(-(confidence - mu) ** 2 / (2 * variance / 4)))
    consistency = (cross_entropy_to(strong.double(), probs.argmax(1)) * weights).mean()
    assert out["unlabelled"].item() == pytest.approx(consistency.item(), rel=1e-5)
    assert out["loss"].item() == pytest.approx(SUPERVISED + consistency.item(), rel=1e-5)


def test_frost_step_adds_its_self_supervised_loss_and_the_assigned_labels_term():
    from selfsup.losses import nt_xent

    method = scripted("frost", lambda_ss=0.5, lambda_u=1.0, balance="none", iterations=2)
    method.assigned[:3] = torch.tensor([-1, 2, 2])
    weak = torch.tensor([[9.0, 0, 0, 0, 0, 0], [0, 1.0, 0, 0, 0, 0], [0, 0, 0, 0, 9.0, 0]])
    strong = torch.randn(3, 6, generator=torch.Generator().manual_seed(5))
    batch = unlabelled_batch(weak, strong)
    images = [torch.randn(3, 3, 16, 16), torch.randn(3, 3, 16, 16)]
    batch["self_supervised"] = {"views": images, "index": torch.arange(3)}
    out = method.training_step(batch, 0)
    simclr = method.self_supervised
    with torch.no_grad():
        z = simclr.projector(simclr.backbone(torch.cat(images)))
    self_supervised = 0.5 * nt_xent(*z.chunk(2), simclr.cfg["temperature"])
    self_training = (cross_entropy_to(weak, torch.tensor([0, 2, 2])) * torch.tensor([0, 1.0, 1])).sum() / 3
    consistency = (cross_entropy_to(strong, torch.tensor([0, 0, 4])) * torch.tensor([1.0, 0, 1])).mean()
    assert simclr.backbone is method.backbone
    assert out["self_supervised"].item() == pytest.approx(self_supervised.item(), rel=1e-5)
    assert out["self_training"].item() == pytest.approx(self_training.item(), rel=1e-6)
    assert out["loss"].item() == pytest.approx(
        SUPERVISED + consistency.item() + self_supervised.item() + self_training.item(), rel=1e-5)


@pytest.mark.parametrize("accumulate", [1, 2, 3])
def test_semisup_schedules_count_the_optimiser_steps_of_the_run(accumulate):
    from selfsup.config import resolve
    from selfsup.build import build_method
    from selfsup.engine.train import load_datasets

    cfg = resolve("uda", None, {"dataset": "synthetic", "backbone": {"width": 8}, "batch_size": 16, "epochs": 3,
                                "trainer": {"accumulate_grad_batches": accumulate}})
    train = load_datasets(cfg)[0]
    method = build_method(cfg)
    batches = len(method.train_batches(train, 16, 0)[1])
    steps_per_epoch = {1: batches, 2: batches // 2, 3: batches // 3 + 1}[accumulate]  # a partial last step at 3
    assert batches == 4 and method.total_steps == 3 * steps_per_epoch  # the steps the ramps and TSA span


def test_pseudo_label_weight_ramps_up_linearly_over_its_share_of_the_run():
    method = scripted("pseudo-label", threshold=0.5, ramp=0.4)
    method.total_steps = 100
    unlabelled = {"views": [torch.tensor([[5.0, 0, 0, 0, 0, 0], [0, 4.0, 0, 0, 0, 0]])], "label": torch.tensor([0, 1]),
                  "index": torch.arange(2)}
    full = torch.nn.functional.cross_entropy(unlabelled["views"][0], torch.tensor([0, 1]))
    for step, weight in [(0, 0.0), (10, 0.25), (20, 0.5), (40, 1.0), (90, 1.0)]:
        loss = method.unlabelled_loss({"unlabeled": unlabelled}, step)
        assert loss.item() == pytest.approx(weight * full.item(), rel=1e-6, abs=1e-9), step
    method = scripted("pseudo-label", threshold=0.5, ramp=0.0)  # no ramp: full weight from the first step
    method.total_steps = 100
    assert method.unlabelled_loss({"unlabeled": unlabelled}, 0).item() == pytest.approx(full.item(), rel=1e-6)


def _write_cifar10(root, per_batch: int = 20):
    """CIFAR-10's python pickles with random images, labels cycling over the ten classes."""
    import pickle
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    generator = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": generator.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                         b"labels": [i % 10 for i in range(per_batch)]}, f)
    return root


def test_usb_classic_protocol_on_written_cifar_files(tmp_path, capsys):
    data = _write_cifar10(tmp_path / "data")
    protocol = ["--protocol", "usb-classic", "--dataset", "cifar10", "--data-dir", str(data)]
    assert main(["semisup", "--method", "fixmatch", *protocol, "--print-config"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["epochs"] == 9447  # 2^20 steps of 64 + 7 x 64 images over a 50,000-image pool: 111 steps an epoch
    assert cfg["backbone"]["name"] == "wrn-28-2" and cfg["batch_size"] == 64
    assert cfg["schedule"] == {"warmup_epochs": 0, "final_lr_ratio": 0.0, "shape": "fixmatch", "final_weight_decay": None}
    assert {k: cfg["optimizer"][k] for k in ("name", "lr", "lr_scaling", "momentum", "nesterov", "weight_decay")} == \
        {"name": "sgd", "lr": 0.03, "lr_scaling": "none", "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4}
    assert {k: cfg["params"][k] for k in ("ema", "translate", "strong_ops", "unlabelled_ratio")} == \
        {"ema": 0.999, "translate": 0.125, "strong_ops": 3, "unlabelled_ratio": 7}
    assert main(["semisup", "--method", "mixmatch", *protocol, "--print-config"]) == 0
    mixmatch = yaml.safe_load(capsys.readouterr().out)
    assert mixmatch["epochs"] == 1343 and "strong_ops" not in mixmatch["params"]  # mu 1: 781 steps an epoch
    assert {k: mixmatch["params"][k] for k in ("unlabelled_ratio", "lambda_u", "alpha")} == \
        {"unlabelled_ratio": 1, "lambda_u": 75.0, "alpha": 0.5}  # USB's mixmatch_cifar10 config, not the paper's
    for name in ("pseudo-label", "mean-teacher"):  # mu 1 as USB's configs (pseudo-label's own default is 7)
        assert main(["semisup", "--method", name, *protocol, "--print-config"]) == 0
        cfg = yaml.safe_load(capsys.readouterr().out)
        assert cfg["params"]["unlabelled_ratio"] == 1 and cfg["epochs"] == 1343, name
        assert cfg["knn"]["every_n_epochs"] == 7, name  # USB's 5120 steps: about 7 epochs of 781 steps
    out = tmp_path / "run"
    assert main(["semisup", "--method", "fixmatch", *protocol, "--epochs", "1", "--batch-size", "2", "--subset", "40",
                 "--labels-per-class", "2", "--set", "params.unlabelled_ratio=1", "--set", "knn.every_n_epochs=0",
                 "--set", "knn.k=5", "--set", "trainer.progress_bar=false", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["backbone"] == "wrn-28-2" and 0 <= metrics["test_top1"] <= 1
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["backbone"]["name"] == "wrn-28-2" and saved["schedule"]["shape"] == "fixmatch"


def test_usb_classic_protocol_refuses_other_data_and_methods(capsys):
    from tests.test_cli import assert_clean_error
    code = main(["semisup", "--method", "fixmatch", "--protocol", "usb-classic", "--print-config"])
    assert_clean_error(code, capsys.readouterr().err, "CIFAR-10 or CIFAR-100")
    code = main(["semisup", "--method", "simclr", "--protocol", "usb-classic", "--dataset", "cifar10", "--print-config"])
    assert_clean_error(code, capsys.readouterr().err, "semisup trains a semi-supervised method")
    assert main(["semisup", "--method", "flexmatch", "--protocol", "usb-classic", "--dataset", "cifar100",
                 "--print-config"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["backbone"]["name"] == "wrn-28-8" and cfg["optimizer"]["weight_decay"] == 1e-3
    assert main(["semisup", "--method", "mixmatch", "--protocol", "usb-classic", "--dataset", "cifar100",
                 "--print-config"]) == 0
    mixmatch = yaml.safe_load(capsys.readouterr().out)["params"]
    assert (mixmatch["lambda_u"], mixmatch["alpha"]) == (150.0, 0.5)  # USB's mixmatch_cifar100 config


def test_mixmatch_step_mixes_labelled_and_guessed_targets():
    from scipy.special import betaincinv
    from selfsup.losses.semisup import sharpen
    method = scripted("mixmatch", lambda_u=100.0, ramp=0.0)
    method.generator = torch.Generator().manual_seed(3)
    g = torch.Generator().manual_seed(0)
    labelled = torch.randn(2, 6, generator=g)
    views = [torch.randn(3, 6, generator=g), torch.randn(3, 6, generator=g)]
    batch = {"labeled": {"views": [labelled], "label": torch.tensor([0, 5])},
             "unlabeled": {"views": views, "label": torch.tensor([0, 1, 2]), "index": torch.arange(3)}}
    out = method.training_step(batch, 0)
    guess = sharpen((views[0].softmax(1) + views[1].softmax(1)) / 2, 0.5)
    replay = torch.Generator().manual_seed(3)
    weight = float(betaincinv(0.75, 0.75, float(torch.rand((), generator=replay))))
    weight = max(weight, 1 - weight)
    partner = torch.randperm(8, generator=replay)
    inputs = torch.cat([labelled, *views])
    targets = torch.cat([torch.nn.functional.one_hot(torch.tensor([0, 5]), 6).float(), guess, guess])
    inputs, targets = weight * inputs + (1 - weight) * inputs[partner], weight * targets + (1 - weight) * targets[partner]
    supervised = -(targets[:2] * inputs[:2].log_softmax(1)).sum(1).mean()
    unlabelled = ((inputs[2:].softmax(1) - targets[2:]) ** 2).mean()
    assert out["supervised"].item() == pytest.approx(supervised.item(), rel=1e-5)
    assert out["unlabelled"].item() == pytest.approx(unlabelled.item(), rel=1e-5)
    assert out["loss"].item() == pytest.approx((supervised + 100 * unlabelled).item(), rel=1e-5)
    assert method.pseudo_seen.item() == 3  # the guesses are counted for the epoch's report


def test_mean_teacher_pulls_the_student_towards_the_ema_teacher():
    method = scripted("mean-teacher", lambda_u=50.0, ramp=0.5)
    method.total_steps = 100
    method.predict = lambda x: 2 * x  # the teacher: another network than the student
    g = torch.Generator().manual_seed(0)
    teacher_view, student_view = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g).requires_grad_(True)
    batch = {"unlabeled": {"views": [teacher_view, student_view], "label": torch.arange(4), "index": torch.arange(4)}}
    loss = method.unlabelled_loss(batch, 25)  # half way up the ramp (25 of 50 steps)
    expected = 0.5 * ((student_view.softmax(1) - (2 * teacher_view).softmax(1)) ** 2).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    assert student_view.grad.abs().sum() > 0


def test_remixmatch_step_anchors_the_strong_views_to_the_weak_guess_with_pre_mixup_and_rotation_terms():
    # Berthelot et al. 2020: the strong views (then the weak one) enter MixUp with the weak view's
    # aligned, sharpened guess as target (cross-entropy); the first strong view, unmixed, is also
    # classified to the guess (pre-mixup, λ 0.5) and, turned by a drawn quarter, has its rotation
    # predicted (λ 0.5); the unlabelled and pre-mixup terms ramp up
    from support import tiny
    from selfsup import rng

    method = tiny("remixmatch", lambda_u=1.5, ramp=0.5, lambda_pre_mixup=0.5, lambda_rotation=0.5)
    method.total_steps = 10
    torch.manual_seed(0)
    labelled, weak, first, second = (torch.randn(4, 3, 16, 16) for _ in range(4))
    batch = {"labeled": {"views": [labelled], "label": torch.tensor([0, 1, 2, 3])},
             "unlabeled": {"views": [weak, first, second], "label": torch.tensor([0, 1, 2, 3]), "index": torch.arange(4)}}
    mean, drawn = method.prediction_mean.clone(), method.generator.get_state()
    out = method.training_step(batch, 2)  # ramp 2 / 5 of the way
    method.prediction_mean.copy_(mean)
    method.generator.set_state(drawn)
    with torch.no_grad():
        guess = method.guess(batch["unlabeled"])
        one_hot = torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 3]), 6).float()
        inputs, targets = method.mixup(torch.cat([labelled, first, second, weak]), torch.cat([one_hot, guess, guess, guess]))
        logits = method.logits(inputs)
        quarters = rng.randint(0, 4, 4, method.generator)
        turned = torch.stack([torch.rot90(image, int(q), (1, 2)) for image, q in zip(first, quarters)])
        features = method.backbone(torch.cat([first, turned]))
    supervised = cross_entropy_to(logits[:4], targets[:4]).mean()
    unlabelled = cross_entropy_to(logits[4:], targets[4:]).mean()
    pre_mixup = cross_entropy_to(method.classifier(features[:4]), guess).mean()
    rotation = cross_entropy_to(method.rotation_head(features[4:]), quarters).mean()
    assert out["pre_mixup"].item() == pytest.approx(0.5 * 0.4 * pre_mixup.item(), rel=1e-5)
    assert out["rotation"].item() == pytest.approx(0.5 * rotation.item(), rel=1e-5)
    expected = supervised + 1.5 * 0.4 * unlabelled + 0.5 * 0.4 * pre_mixup + 0.5 * rotation
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_remixmatch_guess_is_aligned_then_sharpened():
    from selfsup.losses.semisup import align_distribution, sharpen
    method = scripted("remixmatch", ema_p=0.5)
    method.prediction_mean.copy_(torch.tensor([0.5, 0.1, 0.1, 0.1, 0.1, 0.1]))
    weak = torch.randn(3, 6, generator=torch.Generator().manual_seed(0))
    guess = method.guess({"views": [weak]})
    mean = 0.5 * torch.tensor([0.5, 0.1, 0.1, 0.1, 0.1, 0.1]) + 0.5 * weak.softmax(1).mean(0)
    assert torch.allclose(method.prediction_mean, mean)
    assert torch.allclose(guess, sharpen(align_distribution(weak.softmax(1), mean), 0.5), atol=1e-6)

"""`selfsup evaluate finetune|transfer|retrieval|embedding` and the per-protocol baselines,
on a seconds-long SimCLR run; the retrieval metrics against independent formulas."""
import json
import os
import shutil

import numpy as np
import pytest
import torch
import yaml
from sklearn.metrics import average_precision_score

from selfsup.cli import main
from selfsup.eval.retrieval import mean_average_precision, precision_at_k


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_simclr_run):
    """The checkpoint of a copy of the session's tiny SimCLR run (the protocols write beside it)."""
    out = shutil.copytree(tiny_simclr_run, tmp_path_factory.mktemp("runs") / "simclr")
    return out / "checkpoints" / "last.ckpt"


def run_json(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured


def test_knn_votes_with_similarity_weights_at_the_temperature():
    """One class-0 neighbour at cosine 0.9 against two class-1 neighbours at 0.1: at T = 0.1 the
    weights e^9 and 2·e^1 give class 0; at a temperature so high that the vote is nearly a count,
    the two neighbours win.  Cosine: scaling the bank's vectors changes nothing."""
    from selfsup.eval.knn import knn_predict

    spread = float(np.sqrt(1 - 0.81))
    bank = torch.tensor([[0.9, spread], [0.1, 0.995], [0.1, -0.995]]) * torch.tensor([[3.0], [0.5], [7.0]])
    labels, query = torch.tensor([0, 1, 1]), torch.tensor([[2.0, 0.0]])
    assert knn_predict(bank, labels, query, num_classes=2, k=3, temperature=0.1).tolist() == [0]
    assert knn_predict(bank, labels, query, num_classes=2, k=3, temperature=100.0).tolist() == [1]
    assert knn_predict(bank, labels, query, num_classes=2, k=1, temperature=100.0).tolist() == [0]  # the nearest
    assert knn_predict(bank, labels, query, num_classes=2, k=200, temperature=100.0).tolist() == [1]  # k > bank: all


def test_knn_top1_matches_a_brute_force_weighted_vote():
    from selfsup.eval.knn import knn_predict, knn_top1

    generator = np.random.default_rng(0)
    bank, queries = generator.normal(size=(500, 16)), generator.normal(size=(300, 16))
    labels, truth = generator.integers(0, 5, 500), generator.integers(0, 5, 300)
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    similarity = unit(queries) @ unit(bank).T
    nearest = np.argsort(-similarity, axis=1)[:, :20]
    votes = np.zeros((300, 5))
    for row, (neighbours, scores) in enumerate(zip(nearest, np.take_along_axis(similarity, nearest, 1))):
        np.add.at(votes[row], labels[neighbours], np.exp(scores / 0.07))
    tensors = [torch.from_numpy(a) for a in (bank.astype(np.float32), labels, queries.astype(np.float32), truth)]
    predicted = knn_predict(*tensors[:3], num_classes=5, k=20, temperature=0.07)
    assert predicted.tolist() == votes.argmax(1).tolist()
    assert knn_top1(*tensors, num_classes=5, k=20, temperature=0.07) == pytest.approx((votes.argmax(1) == truth).mean())


def test_mean_average_precision_matches_scikit_learn():
    g = torch.Generator().manual_seed(0)
    bank, queries = torch.randn(50, 6, generator=g), torch.randn(7, 6, generator=g)
    bank_y, query_y = torch.randint(0, 3, (50,), generator=g), torch.randint(0, 3, (7,), generator=g)
    similarity = torch.nn.functional.normalize(queries, dim=1) @ torch.nn.functional.normalize(bank, dim=1).T
    expected = np.mean([average_precision_score((bank_y == query_y[i]).numpy(), similarity[i].numpy())
                        for i in range(7)])
    assert mean_average_precision(bank, bank_y, queries, query_y, block=3) == pytest.approx(expected, abs=1e-6)


def test_precision_at_k_by_hand():
    bank = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    bank_y = torch.tensor([0, 1, 1, 1])
    queries, query_y = torch.tensor([[1.0, 0.05]]), torch.tensor([0])
    # ranking by cosine: bank 0 (class 0), 1 (class 1), 3, 2
    precision, neighbours = precision_at_k(bank, bank_y, queries, query_y, [1, 2, 4])
    assert precision == {1: 1.0, 2: 0.5, 4: 0.25}
    assert neighbours[0].tolist() == [0, 1, 3, 2]


def test_knn_and_linear_report_pixel_and_random_init_baselines(capsys, checkpoint, tmp_path):
    from selfsup.data.datasets import load_split, normalization_for
    from selfsup.eval.baselines import raw_pixel_knn

    out = tmp_path / "knn.json"
    assert main(["evaluate", "knn", "--checkpoint", str(checkpoint), "--k", "20", "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    train, test = load_split("synthetic", "train"), load_split("synthetic", "test")
    expected = raw_pixel_knn(train, test, normalization_for("synthetic", 3), train.num_classes, 20, 0.1)
    assert result["baselines"]["pixels"] == pytest.approx(expected)
    assert 0 <= result["baselines"]["random_init"] <= 1 and 0 <= result["top1"] <= 1
    assert main(["evaluate", "linear", "--checkpoint", str(checkpoint), "--epochs", "5", "--output",
                 str(tmp_path / "lin.json")]) == 0
    linear = json.loads((tmp_path / "lin.json").read_text())
    assert set(linear["baselines"]) == {"pixels", "random_init"}
    assert main(["evaluate", "knn", "--checkpoint", str(checkpoint), "--k", "20", "--no-baselines", "--output",
                 str(out)]) == 0
    assert json.loads(out.read_text())["baselines"] == {}


def test_finetuning_warms_up_and_clips_gradients(checkpoint, monkeypatch):
    """Fine-tuning a pretrained network at SimCLR's rate diverged without these two (SimSiam and
    DeepCluster checkpoints on 1% of Fashion-MNIST's labels ended at chance)."""
    import lightning as L

    from selfsup.data.datasets import load_split
    from selfsup.build import load_pretrained
    from selfsup.eval import finetune as ft

    seen = {}

    class Recording(L.Trainer):
        def __init__(self, **kwargs):
            seen.update(kwargs)
            super().__init__(**kwargs)

        def fit(self, model, loader):
            super().fit(model, loader)
            seen["lrs"] = model.lr_history

    class Finetuner(ft.Finetuner):
        lr_history: list = []

        def on_train_batch_start(self, batch, batch_idx):
            self.lr_history.append(self.trainer.optimizers[0].param_groups[0]["lr"])

    monkeypatch.setattr(ft.L, "Trainer", Recording)
    monkeypatch.setattr(ft, "Finetuner", Finetuner)
    module = load_pretrained(checkpoint)
    train, test = load_split("synthetic", "train"), load_split("synthetic", "test")
    ft.finetune(module.method, train.subset(list(range(64))), test, module.norm, train.num_classes, epochs=40)
    assert seen["gradient_clip_val"] == 1.0
    lrs, peak = seen["lrs"], 0.05 * 64 / 256  # one step per epoch: 4 warm-up steps, then cosine
    assert len(lrs) == 40 and lrs[:4] == pytest.approx([peak / 4, peak / 2, 3 * peak / 4, peak])
    assert lrs[4] == pytest.approx(peak) and lrs[5] < peak and lrs[-1] < peak / 100


def test_finetuning_trains_a_loaded_network_in_train_mode(checkpoint):
    """A checkpoint loads in eval mode; fine-tuning must still train its BatchNorm statistics,
    as the from-scratch network's are (Lightning keeps the mode a module comes in)."""
    from selfsup.build import load_pretrained
    from selfsup.data.datasets import load_split
    from selfsup.eval.finetune import finetune

    module = load_pretrained(checkpoint)
    assert not module.method.training
    norms = [m for m in module.method.backbone.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    before = [m.running_mean.clone() for m in norms]
    train, test = load_split("synthetic", "train"), load_split("synthetic", "test")
    finetune(module.method, train.subset(list(range(64))), test.subset(list(range(32))), module.norm,
             train.num_classes, epochs=1)
    assert norms and all(not torch.equal(b, m.running_mean) for b, m in zip(before, norms))


def test_finetune_reports_the_gain_over_random_init(capsys, checkpoint, tmp_path):
    out = tmp_path / "ft.json"
    assert main(["evaluate", "finetune", "--checkpoint", str(checkpoint), "--labels-per-class", "10", "--epochs", "3",
                 "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["labelled_images"] == 60 and result["epochs"] == 3  # 6 classes
    assert result["gain"] == pytest.approx(result["top1"] - result["scratch_top1"])
    assert result["top1"] > 1 / 6 + 0.05  # above chance on 6 classes (0.25-0.3 here, by thread count)
    assert 0 <= result["baselines"]["pixels_linear"] <= 1


def test_the_from_scratch_run_is_shared_by_checkpoints_with_the_same_initial_network(capsys, checkpoint, tmp_path):
    """SimSiam builds the same ResNet as SimCLR at one seed: its from-scratch run is SimCLR's,
    and the cached number is exactly what running it again gives; DeepCluster's Sobel input
    makes another network, so another run."""
    from support import TINY

    cache, flags = tmp_path / "scratch", ["--labels-per-class", "4", "--epochs", "2", "--no-baselines"]
    others = {}
    for method in ["simsiam", "deepcluster"]:
        assert main(["pretrain", "--method", method, "--epochs", "1", "--out", str(tmp_path / method)] + TINY) == 0
        others[method] = str(tmp_path / method / "checkpoints" / "last.ckpt")

    def scratch(ckpt, name, *extra):
        assert main(["evaluate", "finetune", "--checkpoint", ckpt, *flags, *extra,
                     "--output", str(tmp_path / f"{name}.json")]) == 0
        return json.loads((tmp_path / f"{name}.json").read_text())

    simclr = scratch(str(checkpoint), "simclr", "--baseline-cache", str(cache))
    assert len(list(cache.glob("*.json"))) == 1
    simsiam = scratch(others["simsiam"], "simsiam", "--baseline-cache", str(cache))
    assert simsiam["scratch_cache"] == simclr["scratch_cache"] and len(list(cache.glob("*.json"))) == 1
    assert scratch(others["simsiam"], "simsiam-fresh")["scratch_top1"] == simsiam["scratch_top1"]
    deepcluster = scratch(others["deepcluster"], "deepcluster", "--baseline-cache", str(cache))
    assert deepcluster["scratch_cache"] != simclr["scratch_cache"] and len(list(cache.glob("*.json"))) == 2
    # the checkpoint's precision by default; another precision is another from-scratch run
    bf16 = scratch(str(checkpoint), "simclr-bf16", "--baseline-cache", str(cache), "--precision", "bf16-mixed")
    assert simclr["precision"] == "32-true" and bf16["precision"] == "bf16-mixed"
    assert bf16["scratch_cache"] != simclr["scratch_cache"] and len(list(cache.glob("*.json"))) == 3

    # The other protocols' pixel and random-init scores are shared the same way.
    def retrieval(ckpt, name, *extra):
        assert main(["evaluate", "retrieval", "--checkpoint", ckpt, "--k", "1", "5", *extra,
                     "--output", str(tmp_path / f"retrieval-{name}.json")]) == 0
        return json.loads((tmp_path / f"retrieval-{name}.json").read_text())

    finetune_runs = set(cache.glob("*.json"))
    simclr = retrieval(str(checkpoint), "simclr", "--baseline-cache", str(cache))
    added = set(cache.glob("*.json")) - finetune_runs
    assert sorted(json.loads(p.read_text())["baseline"] for p in added) == ["pixels", "random_init"]
    simsiam = retrieval(others["simsiam"], "simsiam", "--baseline-cache", str(cache))
    assert set(cache.glob("*.json")) - finetune_runs == added and simsiam["baselines"] == simclr["baselines"]
    assert retrieval(others["simsiam"], "simsiam-fresh")["baselines"] == simsiam["baselines"]
    assert retrieval(others["deepcluster"], "deepcluster", "--baseline-cache", str(cache))["baselines"]["pixels"] == \
        simclr["baselines"]["pixels"]
    assert len(set(cache.glob("*.json")) - finetune_runs) == 3  # its Sobel network's random-init score is its own


@pytest.mark.parametrize("flags, message", [
    (["--label-fraction", "0"], "--label-fraction must be in (0, 1]"),
    (["--label-fraction", "1.5"], "--label-fraction must be in (0, 1]"),
    (["--labels-per-class", "100000"], "more than the"),
])
def test_finetune_bad_label_amounts(capsys, checkpoint, tmp_path, flags, message):
    out = tmp_path / "ft.json"
    code, captured = run_json(capsys, "evaluate", "finetune", "--checkpoint", str(checkpoint), *flags,
                              "--output", str(out))
    assert code == 2 and message in captured.err and "Traceback" not in captured.err
    assert not out.exists()


def test_transfer_to_digits_adapts_size_and_channels(capsys, checkpoint, tmp_path):
    out = tmp_path / "transfer.json"
    assert main(["evaluate", "transfer", "--checkpoint", str(checkpoint), "--dataset", "digits", "--k", "20",
                 "--epochs", "20", "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    assert "(8x8) resized to 16x16, 3 channel(s)" in result["adaptation"]
    assert result["knn_top1"] > 0.3 and result["linear_top1"] > 0.3  # 10 classes: chance 0.1
    assert set(result["baselines"]["pixels"]) == {"knn_top1", "linear_top1"}


def test_transfer_needs_a_target_dataset(capsys, checkpoint):
    with pytest.raises(SystemExit):
        main(["evaluate", "transfer", "--checkpoint", str(checkpoint)])
    assert "--dataset" in capsys.readouterr().err


def test_retrieval_writes_scores_and_a_grid(capsys, checkpoint, tmp_path):
    out = tmp_path / "ret.json"
    assert main(["evaluate", "retrieval", "--checkpoint", str(checkpoint), "--k", "1", "10", "--grid-queries", "4",
                 "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["precision_at_k"]) == {"1", "10"}
    assert 0 < result["mean_average_precision"] <= 1
    assert 0 < result["baselines"]["pixels"]["mean_average_precision"] <= 1
    assert (tmp_path / "retrieval.png").stat().st_size > 1000
    code, captured = run_json(capsys, "evaluate", "retrieval", "--checkpoint", str(checkpoint), "--k", "0",
                              "--output", str(tmp_path / "bad.json"))
    assert code == 2 and "--k values" in captured.err and not (tmp_path / "bad.json").exists()


def test_embedding_plots_have_one_legend_entry_per_class(capsys, checkpoint, tmp_path, monkeypatch):
    import matplotlib.figure

    from selfsup.data.datasets import SYNTHETIC_PATTERNS

    legends = []
    savefig = matplotlib.figure.Figure.savefig

    def record(fig, *args, **kwargs):
        legends.append([t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()])
        return savefig(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", record)
    out = tmp_path / "emb.json"
    assert main(["evaluate", "embedding", "--checkpoint", str(checkpoint), "--images", "60", "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["images"] == 60
    for how in ("tsne", "umap"):
        assert (tmp_path / f"embedding_{how}.png").stat().st_size > 1000
    assert legends == [[f"{i}: {name}" for i, name in enumerate(SYNTHETIC_PATTERNS)]] * 2  # the classes by name


def test_evaluations_suite_evaluates_each_checkpoint_once(capsys, checkpoint, tmp_path, monkeypatch):
    import shutil

    from selfsup.bench import evaluations, run_suite

    quick = {"finetune": {"epochs": 2}, "embedding": {"images": 60, "projection": ["tsne"]}, "transfer": {"epochs": 5}}
    monkeypatch.setattr(evaluations, "PROTOCOLS", [(name, protocol, {**options, **quick.get(protocol, {})})
                                                   for name, protocol, options in evaluations.PROTOCOLS])
    runs = tmp_path / "bench" / "fmnist-quick" / "runs"
    shutil.copytree(checkpoint.parent.parent, runs / "simclr", ignore=shutil.ignore_patterns("eval_*", "*.png"))
    out = tmp_path / "bench" / "evaluations"
    claimed = runs / ".simclr.evaluations.claim"  # another live process of the suite is evaluating the run
    claimed.write_text(str(os.getppid()))
    assert run_suite("evaluations", out) == [] and not list((runs / "simclr").glob("eval_*"))
    assert "being evaluated by another process" in capsys.readouterr().out
    claimed.unlink()
    rows = run_suite("evaluations", out)
    assert [r["method"] for r in rows][0] == "simclr" and rows[-1]["method"].startswith("baseline: random-init")
    finetune = json.loads((runs / "simclr" / "eval_finetune-1pct.json").read_text())
    assert rows[0]["finetune_1pct"] == finetune["top1"] and rows[-1]["finetune_1pct"] == finetune["scratch_top1"]
    assert rows[0]["finetune_revision"] == 2 and "finetune_revision 1" not in (out / "evaluations.md").read_text()
    assert (runs / "simclr" / "embedding_tsne.png").exists() and (out / "report" / "index.html").exists()
    assert "| finetune_1pct |" in (out / "evaluations.md").read_text()
    stamp = (runs / "simclr" / "eval_retrieval.json").stat().st_mtime_ns
    run_suite("evaluations", out)
    assert (runs / "simclr" / "eval_retrieval.json").stat().st_mtime_ns == stamp  # not recomputed
    assert run_suite("evaluations", out, methods=["byol"]) == rows  # no byol run; finished rows still shown
    older = runs / "simclr" / "eval_finetune-10pct.json"  # a result made before the protocol's fix
    older.write_text(json.dumps({**json.loads(older.read_text()), "revision": 1, "top1": 0.001}))
    marked = run_suite("evaluations", out, methods=["byol"])  # simclr not asked for: shown as it is, marked
    assert (marked[0]["finetune_10pct"], marked[0]["finetune_revision"]) == (0.001, 1)
    assert "finetune_revision 1:" in (out / "evaluations.md").read_text()
    assert run_suite("evaluations", out, methods=["simclr"]) == rows  # asked for: fine-tuned again, as before
    assert (runs / "simclr" / "eval_retrieval.json").stat().st_mtime_ns == stamp  # the current results kept

    # On another machine the checkpoints are gone (they are not committed): finished results
    # are read back, and a run that lacks some is pretrained again from its config.yaml.
    shutil.rmtree(runs / "simclr" / "checkpoints")
    shutil.copytree(checkpoint.parent.parent, runs / "gone", ignore=shutil.ignore_patterns("eval_*", "*.png", "checkpoints"))
    config = yaml.safe_load((runs / "gone" / "config.yaml").read_text())
    del config["params"]["temperature"]  # a run older than an option: remade with the option's default
    (runs / "gone" / "config.yaml").write_text(yaml.safe_dump(config))
    original = (runs / "gone" / "metrics.json").read_text()
    rows = run_suite("evaluations", out)
    assert [(r["method"], r["checkpoint"]) for r in rows[:2]] == [("gone", "remade"), ("simclr", "original")]
    assert rows[-1]["method"] == "baseline: random-init backbone (the initial network of 2 rows, e.g. gone's)"
    assert rows[0]["precision"] == json.loads((runs / "gone" / "eval_finetune-1pct.json").read_text())["precision"]
    assert (runs / "simclr" / "eval_retrieval.json").stat().st_mtime_ns == stamp
    assert not (runs / "simclr" / "remade").exists()
    remade = runs / "gone" / "remade"
    assert (remade / "checkpoints" / "last.ckpt").exists() and (remade / "metrics.json").exists()
    assert yaml.safe_load((remade / "config.yaml").read_text())["params"]["temperature"] == 0.5  # SimCLR's default
    assert (runs / "gone" / "metrics.json").read_text() == original
    assert json.loads((runs / "gone" / "eval_retrieval.json").read_text())["checkpoint"] == \
        str(remade / "checkpoints" / "last.ckpt")

    # The original checkpoint's results are kept when it is lost; the missing ones come from the remade one.
    for name in ["finetune-1pct", "finetune-10pct"]:
        (runs / "simclr" / f"eval_{name}.json").unlink()
    rows = run_suite("evaluations", out)
    assert rows[1]["checkpoint"] == "original: transfer-digits, retrieval, embedding; remade: finetune-1pct, finetune-10pct"


def test_evaluations_suite_needs_checkpoints(capsys, tmp_path):
    assert main(["benchmark", "--suite", "evaluations", "--out", str(tmp_path / "evaluations")]) == 2
    assert "run `selfsup benchmark --suite fmnist-quick" in capsys.readouterr().err


def test_odd_batches_train_without_crashing(tmp_path):
    """PyTorch 2.14 corrupts memory in the channels-last backward of strided 1x1 convolutions
    for odd batches (CPU); the engine trains such batches in NCHW."""
    from support import TINY
    from selfsup.build import uses_channels_last

    args = [a if a != "64" else "33" for a in TINY]
    assert main(["pretrain", "--method", "supervised", "--epochs", "1", "--out", str(tmp_path / "odd")] + args) == 0
    cfg = yaml.safe_load((tmp_path / "odd" / "config.yaml").read_text())
    assert cfg["trainer"]["channels_last"] and not uses_channels_last(cfg)  # asked for, refused at batch 33
    assert uses_channels_last({**cfg, "batch_size": 64})


def test_evaluations_show_progress_bars_where_the_run_did(capfd, checkpoint, tmp_path, tiny_args):
    shown = tmp_path / "shown"
    assert main(["pretrain", "--method", "simclr", "--epochs", "1", "--out", str(shown), *tiny_args,
                 "--set", "trainer.progress_bar=true"]) == 0
    capfd.readouterr()
    for run_checkpoint, bars in ((checkpoint, False), (shown / "checkpoints" / "last.ckpt", True)):
        for protocol in ("knn", "finetune"):
            assert main(["evaluate", protocol, "--checkpoint", str(run_checkpoint), "--output",
                         str(tmp_path / f"{bars}-{protocol}.json"), *(["--epochs", "1"] if protocol == "finetune" else [])]) == 0
            captured = capfd.readouterr()
            assert ("it/s]" in captured.out + captured.err) == bars, (protocol, bars)

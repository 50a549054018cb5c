"""Series datasets, 1-D views, the conv1d encoder, CPC on series and the series-ssl tables."""
import csv
import json

import numpy as np
import pytest
import torch

from selfsup.cli import main
from selfsup.data.datasets import load_split
from selfsup.data.series import SeriesAugmentConfig, augment_series, random_mask
from selfsup.data.views import Normalization
from selfsup.errors import SelfSupError
from selfsup.models.backbones import Conv1dEncoder

LENGTH = 64


def _two_rhythms(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Fast (class 1, period 6-9) and slow (class 2, period 14-20) waves with random phase,
    amplitude and shape (sine or square): the class is what predicts the series' future."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2 + 1
    period = np.where(labels == 1, rng.uniform(6, 9, n), rng.uniform(14, 20, n))[:, None]
    wave = np.sin(2 * np.pi * np.arange(LENGTH) / period + rng.uniform(0, 2 * np.pi, (n, 1)))
    series = np.where(rng.random((n, 1)) < 0.5, wave, np.sign(wave)) * rng.uniform(0.5, 1.5, (n, 1))
    return series + rng.normal(0, 0.1, series.shape), labels


def _write_tsv(folder, name: str, n: int, seed: int) -> None:
    series, labels = _two_rhythms(n, seed)
    np.savetxt(folder / f"SHAPES_{name}.tsv", np.column_stack([labels, series]), delimiter="\t")


@pytest.fixture
def ucr_dir(tmp_path):
    folder = tmp_path / "shapes"
    folder.mkdir()
    _write_tsv(folder, "TRAIN", 64, 0)
    _write_tsv(folder, "TEST", 40, 1)
    return folder


def test_ucr_tsv_folder_loads_both_splits_with_one_label_mapping(ucr_dir):
    train = load_split("ucr", "train", str(ucr_dir))
    test = load_split("ucr", "test", str(ucr_dir))
    assert train.series.shape == (64, 1, LENGTH) and test.series.shape == (40, 1, LENGTH)
    assert train.num_classes == 2 and set(train.labels.tolist()) == {0, 1}
    raw = np.loadtxt(ucr_dir / "SHAPES_TEST.tsv", delimiter="\t")
    assert (test.labels.numpy() == raw[:, 0] - 1).all()  # labels 1, 2 -> classes 0, 1 in both splits
    assert torch.allclose(test.series[:, 0], torch.from_numpy(raw[:, 1:]).float())
    batch = train.__getitems__([3, 5])
    assert set(batch) == {"series", "label", "index"} and batch["series"].shape == (2, 1, LENGTH)


def test_ucr_ts_file_is_read_with_aeon(tmp_path):
    pytest.importorskip("aeon")
    lines = ["@problemName toy", "@timeStamps false", "@univariate true", "@classLabel true a b", "@data"]
    for split, rows in [("TRAIN", ["1,2,3,4:a", "4,3,2,1:b"]), ("TEST", ["1,2,3,5:a"])]:
        (tmp_path / f"TOY_{split}.ts").write_text("\n".join(lines + rows) + "\n")
    train = load_split("ucr", "train", str(tmp_path))
    test = load_split("ucr", "test", str(tmp_path))
    assert train.series[:, 0].tolist() == [[1, 2, 3, 4], [4, 3, 2, 1]]
    assert train.labels.tolist() == [0, 1] and test.labels.tolist() == [0]


def test_unequal_lengths_are_resampled_to_the_longest_training_series(tmp_path):
    pytest.importorskip("aeon")
    lines = ["@problemName toy", "@timeStamps false", "@univariate false", "@dimensions 2", "@equalLength false",
             "@classLabel true a b", "@data"]
    rows = {"TRAIN": ["0,2,4,6,8:1,1,1,1,1:a", "0,4,8:3,3,3:b"], "TEST": ["8,0:5,5:a"]}
    for split, data in rows.items():
        (tmp_path / f"TOY_{split}.ts").write_text("\n".join(lines + data) + "\n")
    train = load_split("ucr", "train", str(tmp_path))
    test = load_split("ucr", "test", str(tmp_path))
    assert train.series.shape == (2, 2, 5) and test.series.shape == (1, 2, 5)
    assert train.series[0].tolist() == [[0, 2, 4, 6, 8], [1, 1, 1, 1, 1]]  # the longest: kept as it is
    assert train.series[1].tolist() == [[0, 2, 4, 6, 8], [3, 3, 3, 3, 3]]  # 3 steps over the same span: 5
    assert test.series[0].tolist() == [[8, 6, 4, 2, 0], [5, 5, 5, 5, 5]]


@pytest.mark.parametrize("name,shape,classes", [("acsf1", (100, 1, 1460), 10),
                                                ("pickup-gesture-wiimotez", (50, 1, 361), 10),
                                                ("basic-motions", (40, 6, 100), 4),
                                                ("japanese-vowels", (370, 12, 26), 9)])
def test_every_shipped_problem_loads_offline_at_one_length(name, shape, classes):
    pytest.importorskip("aeon")
    test = load_split(name, "test")
    assert tuple(test.series.shape) == shape and test.num_classes == classes
    assert torch.isfinite(test.series).all() and len(set(test.labels.tolist())) == classes


def test_ucr_folder_errors_name_the_problem(tmp_path, ucr_dir):
    with pytest.raises(SelfSupError, match="no \\*_TRAIN.ts"):
        load_split("ucr", "train", str(tmp_path))
    series, _ = _two_rhythms(4, 2)
    np.savetxt(ucr_dir / "SHAPES_TEST.tsv", np.column_stack([np.full(4, 7), series]), delimiter="\t")
    with pytest.raises(SelfSupError, match="test labels 7 do not occur"):
        load_split("ucr", "test", str(ucr_dir))


def test_shipped_ucr_problem_loads_offline():
    pytest.importorskip("aeon")
    train = load_split("gunpoint", "train")
    test = load_split("gunpoint", "test")
    assert train.series.shape == (50, 1, 150) and test.series.shape == (150, 1, 150)
    assert set(test.labels.tolist()) == {0, 1}


def test_series_views_are_seeded_and_identity_when_switched_off():
    x = torch.randn(8, 2, LENGTH)
    cfg = SeriesAugmentConfig(mask_p=0.5)
    a = augment_series(x, cfg, torch.Generator().manual_seed(1))
    b = augment_series(x, cfg, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.allclose(a, x)
    off = SeriesAugmentConfig(crop_scale=(1.0, 1.0), scale_sigma=0.0, jitter_sigma=0.0, mask_p=0.0)
    assert torch.equal(augment_series(x, off, torch.Generator()), x)


def test_series_crop_is_a_resized_window_of_the_ramp():
    ramp = torch.linspace(0, 1, LENGTH).expand(16, 1, LENGTH)
    crop = SeriesAugmentConfig(crop_scale=(0.5, 0.5), scale_sigma=0.0, jitter_sigma=0.0)
    view = augment_series(ramp, crop, torch.Generator().manual_seed(0))
    span = view[:, 0, -1] - view[:, 0, 0]
    assert torch.allclose(span, torch.full_like(span, 0.5), atol=1e-5)  # half the ramp, stretched to full length
    steps = view[:, 0, 1:] - view[:, 0, :-1]
    assert torch.allclose(steps, torch.full_like(steps, 0.5 / (LENGTH - 1)), atol=1e-5)


def test_series_mask_zeroes_one_segment_of_bounded_length():
    x = torch.ones(32, 1, 100)
    masked = random_mask(x, p=1.0, fraction=0.2, g=torch.Generator().manual_seed(0))
    zeros = masked[:, 0] == 0
    for row in zeros:
        where = torch.nonzero(row).flatten()
        assert len(where) <= 20
        if len(where):
            assert where[-1] - where[0] + 1 == len(where)  # contiguous
    assert zeros.any(1).float().mean() > 0.5


def test_normalization_works_on_series():
    norm = Normalization((1.0, 2.0), (2.0, 4.0))
    x = torch.tensor([[[1.0, 3.0], [2.0, 6.0]]])
    assert torch.equal(norm(x), torch.tensor([[[0.0, 1.0], [0.0, 1.0]]]))


@pytest.mark.parametrize("length", [24, 25, 64, 150, 427])
def test_conv1d_encoder_output_length_matches_its_forward(length):
    encoder = Conv1dEncoder(in_channels=2, width=4)
    sequence = encoder.forward_sequence(torch.randn(3, 2, length))
    assert sequence.shape == (3, Conv1dEncoder.output_length(length), encoder.feature_dim)
    assert encoder(torch.randn(3, 2, length)).shape == (3, encoder.feature_dim)
    assert [s.shape[1] for s in encoder.forward_stages(torch.randn(3, 2, length))] == encoder.stage_dims


SERIES_RUN = ["--method", "cpc", "--dataset", "ucr", "--batch-size", "16", "--width", "8", "--set", "knn.k=5",
              "--set", "trainer.progress_bar=false", "--set", "optimizer.lr=0.003"]


def test_cpc_on_a_ucr_folder_trains_and_reports_baselines(ucr_dir, tmp_path, capsys):
    # the synthetic waves are easy for any encoder (random init: kNN 0.975): whether CPC learns
    # beyond its random initialisation is tests/test_learning.py's GunPoint test
    out = tmp_path / "run"
    assert main(["pretrain", *SERIES_RUN, "--data-dir", str(ucr_dir), "--epochs", "15", "--out", str(out),
                 "--baselines", "--linear-probe"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    saved = (out / "config.yaml").read_text()
    assert "name: conv1d" in saved and "modality: series" in saved
    assert metrics["knn_top1"] > 0.75 and metrics["linear_top1"] > 0.75  # two classes: chance is 0.5
    assert set(metrics["baselines"]) >= {"random_init_knn_top1", "random_init_linear_top1", "raw_pixels_knn_top1"}
    assert metrics["diagnostics"]["effective_rank"] > 1
    assert "raw values" in capsys.readouterr().out
    assert main(["evaluate", "svm", "--checkpoint", str(out / "checkpoints" / "last.ckpt")]) == 0
    svm = json.loads((out / "eval_svm.json").read_text())
    assert svm["top1"] > 0.75 and set(svm["baselines"]) == {"pixels", "random_init"}
    assert svm["C"] in (*SVM_GRID, "inf") and svm["train_images"] == 64


SVM_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4)


@pytest.mark.parametrize("train_size", [30, 120])
def test_svm_probe_is_tsvecs_grid_search_in_scikit_learn(train_size):
    from sklearn.model_selection import GridSearchCV
    from sklearn.svm import SVC
    from selfsup.eval.svm import svm_probe
    g = torch.Generator().manual_seed(0)
    x = torch.randn(train_size + 100, 6, generator=g)
    y = ((x[:, 0] * x[:, 1] > 0).long() + (x[:, 2] > 1).long())  # three classes, not linearly separable
    result = svm_probe(x[:train_size], y[:train_size], x[train_size:], y[train_size:])
    train_x, train_y, test_x, test_y = (t.double().numpy() if t.is_floating_point() else t.numpy()
                                        for t in (x[:train_size], y[:train_size], x[train_size:], y[train_size:]))
    if train_size < 50:  # too few to search: a hard margin
        reference, chosen = SVC(C=np.inf, gamma="scale").fit(train_x, train_y), "inf"
    else:
        search = GridSearchCV(SVC(kernel="rbf", gamma="scale"), {"C": [*SVM_GRID, np.inf]}, cv=5).fit(train_x, train_y)
        reference, chosen = search.best_estimator_, search.best_params_["C"]
        chosen = "inf" if np.isinf(chosen) else chosen
    assert result["C"] == chosen
    assert result["test_top1"] == pytest.approx((reference.predict(test_x) == test_y).mean())
    assert result["test_top1"] > 0.5  # three classes


def test_cpc_loss_falls_on_series(ucr_dir):
    from selfsup.config import merge, resolve
    from selfsup.data.views import make_views
    from selfsup.build import build_method
    from selfsup.engine.train import load_datasets

    cfg = merge(resolve("cpc"), {"dataset": "ucr", "data_dir": str(ucr_dir), "batch_size": 16, "backbone": {"width": 8}})
    train, _, _ = load_datasets(cfg)
    method = build_method(cfg)
    optimizer = torch.optim.Adam(method.parameters(), lr=3e-3)
    norm = Normalization((0.0,), (1.0,))
    losses = []
    for step in range(40):
        batch = train.__getitems__(list(range(16 * (step % 4), 16 * (step % 4 + 1))))
        batch = method.prepare_batch(batch, lambda x, specs: make_views(x, specs, norm, torch.Generator().manual_seed(step)))
        loss = method.training_step(batch, step)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-8:]) < np.mean(losses[:8]) - 0.2


@pytest.mark.parametrize("extra, message", [
    (["--method", "moco-v2"], "moco-v2 learns from image data, but ucr holds series data; methods for it: simclr, byol, vicreg, cpc"),
    (["--backbone", "resnet18"], "backbone resnet18 does not fit ucr"),
    (["--set", "params.prediction_steps=25"], "must be smaller than the 25 encodings of a 64-step series"),
])
def test_series_runs_reject_what_cannot_work(ucr_dir, tmp_path, capsys, extra, message):
    out = tmp_path / "bad"
    assert main(["pretrain", *SERIES_RUN, *extra, "--data-dir", str(ucr_dir), "--epochs", "1", "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_image_backbone_names_stay_for_images(tmp_path, capsys, tiny_args):
    out = tmp_path / "bad"
    assert main(["pretrain", "--method", "simclr", *tiny_args, "--backbone", "conv1d", "--epochs", "1",
                 "--out", str(out)]) == 2
    assert "backbone conv1d does not fit synthetic" in capsys.readouterr().err


def test_every_protocol_runs_on_a_series_checkpoint(ucr_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["pretrain", *SERIES_RUN, "--data-dir", str(ucr_dir), "--epochs", "2", "--out", str(out)]) == 0
    checkpoint = str(out / "checkpoints" / "last.ckpt")
    for protocol in (["knn"], ["linear"], ["svm"], ["finetune", "--labels-per-class", "4", "--epochs", "2"],
                     ["retrieval", "--k", "1", "5"], ["embedding", "--projection", "tsne"], ["diagnostics"]):
        result = tmp_path / f"{protocol[0]}.json"
        assert main(["evaluate", *protocol, "--checkpoint", checkpoint, "--output", str(result)]) == 0, protocol
        assert json.loads(result.read_text())["protocol"] == protocol[0]
    assert (tmp_path / "retrieval.png").stat().st_size > 0
    # the dataset interface: one clear message where a protocol cannot serve the data
    for protocol, dataset, needle in (("transfer", "digits", "pretrained on series (ucr) but digits holds images"),
                                      ("knn", "digits", "evaluate it on a series dataset"),
                                      ("transfer", "gunpoint", "transfer adapts images")):
        result = tmp_path / f"refused-{protocol}.json"
        assert main(["evaluate", protocol, "--checkpoint", checkpoint, "--dataset", dataset,
                     "--output", str(result)]) == 2
        err = capsys.readouterr().err
        assert needle in err and "Traceback" not in err and not result.exists(), err


def test_series_ssl_ranks_and_ts2vec_training_length():
    from selfsup.bench.series import _ranks, t_loss_epochs, ts2vec_epochs, ts_tcc_epochs
    assert _ranks({"a": 0.9, "b": 0.7, "c": 0.9, "d": 0.5}) == {"a": 1.5, "c": 1.5, "b": 3, "d": 4}
    assert ts2vec_epochs(50, 150, 1, 8) == 34  # 7,500 values: 200 steps of 6 an epoch
    assert ts2vec_epochs(100, 1460, 1, 8) == 50  # 146,000 values: 600 steps of 12 an epoch
    assert ts2vec_epochs(5, 40, 1, 8) == 200  # a batch is the whole training set
    assert t_loss_epochs(50, 10) == 300 and t_loss_epochs(270, 10) == 56  # 1500 steps of 10 series: 5, 27 an epoch
    assert ts_tcc_epochs(50, 128) == 200 and ts_tcc_epochs(270, 128) == 100  # 200 steps of 50 series, of 128 (2 an epoch)
    assert ts_tcc_epochs(7352, 128) == 40  # HAR's size: the paper's 40 epochs are more than 200 steps


def test_series_summary_ranks_the_models_every_problem_has_over_every_problem():
    from selfsup.bench.series import summarise
    models = {"gunpoint": {"a": 0.9, "b": 0.8, "c": 0.7}, "arrowhead": {"a": 0.6, "b": 0.7}}  # c: one problem only
    rows = {r["model"]: r for r in summarise(models)}
    assert set(rows) == {"a", "b"} and all(r["problems"] == 2 for r in rows.values())
    assert rows["a"]["mean_svm_accuracy"] == pytest.approx(0.75) and rows["a"]["mean_rank"] == 1.5
    assert summarise({}) == []


def test_series_summary_keeps_one_random_init_row_per_encoder(tmp_path, monkeypatch):
    """Two methods on one encoder: the untrained encoder's row is the first method's, not the last one's."""
    from selfsup.bench import series
    monkeypatch.setattr(series, "SERIES_DATASETS", ("gunpoint",))
    monkeypatch.setattr(series, "SERIES_METHODS", ("ts2vec", "simclr"))
    monkeypatch.setattr(series, "SEEDS", (0,))
    monkeypatch.setattr(series, "method_config", lambda *args: {})
    random_init = {"ts2vec": 0.70, "simclr": 0.60}
    for method, svm in (("ts2vec", 0.9), ("simclr", 0.8)):
        run_dir = tmp_path / "runs" / series.run_name(method, "gunpoint", 0)
        run_dir.mkdir(parents=True)
        (run_dir / "eval_svm.json").write_text(json.dumps(
            {"top1": svm, "baselines": {"random_init": random_init[method], "pixels": 0.5}}))
    metrics = {"train_images": 50, "backbone": "dilated-conv", "knn_top1": 0.8, "linear_top1": 0.8, "train_seconds": 1.0,
               "baselines": {"random_init_knn_top1": 0.6, "random_init_linear_top1": 0.6, "raw_pixels_knn_top1": 0.5,
                             "standardized_pixels_linear_top1": 0.5}}
    monkeypatch.setattr(series, "finished_run", lambda *args, **kwargs: metrics)
    series.write_series_tables(tmp_path)
    with open(tmp_path / "series-ssl_summary.csv") as f:
        summary = {row["model"]: float(row["mean_svm_accuracy"]) for row in csv.DictReader(f)}
    assert summary == {"ts2vec": 0.9, "simclr": 0.8, "random-init dilated-conv": 0.70, "raw series": 0.5}

import csv

from selfsup.cli import main


def test_smoke_suite_writes_table_csv_and_plots(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["benchmark", "--suite", "smoke", "--out", str(out)]) == 0
    table = (out / "smoke.md").read_text()
    assert "| simclr |" in table and "baseline: raw pixels" in table and "Command:" in table
    rows = list(csv.DictReader((out / "smoke.csv").open()))
    simclr = next(r for r in rows if r["method"] == "simclr")
    assert float(simclr["knn_top1"]) > 2 / 6  # six texture classes: chance is 1/6
    assert float(simclr["linear_top1"]) > 2 / 6
    for plot in ["smoke_knn.png", "smoke_knn_curve.png"]:
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_suite(tmp_path, capsys):
    assert main(["benchmark", "--suite", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown benchmark suite 'nope'" in capsys.readouterr().err


def test_unknown_method_in_a_suite_is_refused_before_any_work(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["benchmark", "--suite", "smoke", "--method", "nope", "--out", str(out)]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err
    assert not out.exists()


def test_every_ablation_row_changes_a_real_setting_of_its_method():
    from selfsup.bench import ABLATIONS, FMNIST_QUICK, FMNIST_QUICK_TUNED
    from selfsup.config import merge, resolve

    labels = [label for label, _, _ in ABLATIONS]
    assert len(set(labels)) == len(labels)
    for label, method, change in ABLATIONS:
        reference = merge(merge(resolve(method), FMNIST_QUICK), FMNIST_QUICK_TUNED.get(method, {}))
        ablated = merge(reference, change)  # strict: a misspelt key is an error
        assert (ablated != reference) == bool(change), label

"""The Python API (``selfsup.api``): the CLI's commands as functions, the same checks, the same files."""
import json

import pytest
import torch

import selfsup
from selfsup.build import load_pretrained
from selfsup.errors import SelfSupError


def test_import_selfsup_stays_light_until_the_api_is_used():
    import subprocess
    import sys
    code = "import sys, selfsup; print('lightning' in sys.modules); selfsup.configure; print('lightning' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True"]


def test_configure_layers_settings_config_and_sets_in_that_order(tmp_path):
    file = tmp_path / "mine.yaml"
    file.write_text("epochs: 7\nparams:\n  temperature: 0.3\n")
    cfg = selfsup.configure("simclr", file, ["params.temperature=0.4"], batch_size=32, params={"temperature": 0.35})
    assert (cfg["epochs"], cfg["batch_size"], cfg["params"]["temperature"]) == (7, 32, 0.4)
    assert selfsup.configure("simclr", {"epochs": 3}, epochs=None)["epochs"] == 3  # None: not given


@pytest.mark.parametrize("call, message", [
    (lambda: selfsup.configure("simclr", epochs=0), "epochs"),
    (lambda: selfsup.configure("simclr", temprature=0.2), "unknown config key 'temprature'"),
    (lambda: selfsup.configure("no-such-method"), "no-such-method"),
    (lambda: selfsup.configure("simclr", backbone={"name": "resnet7"}), "unknown backbone 'resnet7'"),
    (lambda: selfsup.pretrain(selfsup.configure("simclr"), "x", epochs=3), "not both"),
    (lambda: selfsup.load_backbone("/nonexistent/run"), "no such run directory or checkpoint"),
    (lambda: selfsup.evaluate("knn", "/nonexistent/run"), "no such run directory or checkpoint"),
])
def test_bad_calls_raise_one_clear_error(call, message):
    with pytest.raises(SelfSupError, match=message):
        call()


def test_pretrain_from_python_writes_the_run_the_cli_writes(tmp_path):
    metrics = selfsup.pretrain("simclr", tmp_path / "run", dataset="synthetic", epochs=1, batch_size=64,
                               backbone={"width": 8}, sets=["trainer.progress_bar=false", "knn.k=20"])
    assert metrics == json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and metrics["knn_top1"] > 0
    with pytest.raises(SelfSupError, match="finished run"):  # the CLI's refusal, from Python too
        selfsup.pretrain("simclr", tmp_path / "run", dataset="synthetic", epochs=1)


def test_load_backbone_gives_the_features_every_evaluation_uses(tiny_simclr_run):
    backbone = selfsup.load_backbone(tiny_simclr_run)
    method = load_pretrained(tiny_simclr_run / "checkpoints" / "last.ckpt").method
    x = torch.randn(4, 3, 16, 16)
    assert not backbone.training
    with torch.no_grad():
        torch.testing.assert_close(backbone(x), method.features(x))


def test_evaluate_from_python_returns_and_writes_the_protocols_json(simclr_run):
    result = selfsup.evaluate("knn", simclr_run, k=20, baselines=False)
    written = result.pop("output")
    assert written == str(simclr_run / "eval_knn.json") and result == json.loads((simclr_run / "eval_knn.json").read_text())
    assert result["k"] == 20 and 0 < result["top1"] <= 1

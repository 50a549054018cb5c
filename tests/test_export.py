"""`selfsup export`: each format loaded the way a user would (torchvision and timm through the
recipe the export writes, safetensors with safetensors, ONNX with onnxruntime) gives the
checkpoint's features; bad requests exit with one message and overwrite nothing."""
import json
import subprocess
import sys

import pytest
import torch

from selfsup.build import load_pretrained
from selfsup.cli import main
from support import TINY


def checkpoint_features(run, images):
    pretrained = load_pretrained(run / "checkpoints" / "last.ckpt")
    with torch.no_grad():
        return pretrained.method.backbone.float().eval()(pretrained.norm(images))


def synthetic_images(n=6):
    from selfsup.data.datasets import load_split

    return load_split("synthetic", "test", None, n, 0).__getitems__(list(range(n)))["image"].float() / 255


def run_recipe_in_a_fresh_interpreter(recipe: str, images) -> torch.Tensor:
    """The export's recipe in a Python process that never imports selfsup: its features of ``images``."""
    script = (recipe + "import sys\nassert not any(m.startswith('selfsup') for m in sys.modules)\n"
              f"images = torch.load({str(images)!r})\n"
              f"torch.save(model(images).detach(), {str(images) + '.out'!r})\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return torch.load(str(images) + ".out")


@pytest.fixture(scope="module")
def resnet64_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "simclr64"
    assert main(["pretrain", "--method", "simclr", "--epochs", "1", "--out", str(out), *TINY,
                 "--set", "backbone.width=64", "--set", "knn.every_n_epochs=0", "--set", "knn.final=false"]) == 0
    return out


@pytest.fixture(scope="module")
def vit_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "mae"
    assert main(["pretrain", "--method", "mae", "--epochs", "1", "--out", str(out), *TINY, "--backbone", "vit",
                 "--width", "16", "--set", "backbone.depth=2", "--set", "backbone.heads=2",
                 "--set", "knn.every_n_epochs=0", "--set", "knn.final=false"]) == 0
    return out


@pytest.mark.parametrize("fmt,run_fixture", [("torchvision", "resnet64_run"), ("timm", "vit_run")])
def test_state_dict_formats_load_through_their_recipe_without_selfsup(fmt, run_fixture, request, tmp_path, capsys):
    run = request.getfixturevalue(run_fixture)
    out = tmp_path / f"backbone-{fmt}.pt"
    assert main(["export", str(run), "--format", fmt, "--out", str(out)]) == 0
    assert "largest difference" in capsys.readouterr().out
    info = json.loads((tmp_path / f"backbone-{fmt}.pt.json").read_text())
    assert info["check"]["max_abs_difference"] < 1e-4 and "test images of synthetic" in info["check"]["inputs"]
    images = synthetic_images()
    pretrained = load_pretrained(run / "checkpoints" / "last.ckpt")
    torch.save(pretrained.norm(images), tmp_path / "images.pt")
    features = run_recipe_in_a_fresh_interpreter(info["recipe"], tmp_path / "images.pt")
    assert torch.allclose(features, checkpoint_features(run, images), atol=1e-4)


def test_safetensors_holds_the_tensors_and_the_input_facts(tiny_simclr_run, tmp_path):
    from safetensors import safe_open

    out = tmp_path / "backbone.safetensors"
    assert main(["export", str(tiny_simclr_run), "--format", "safetensors", "--out", str(out)]) == 0
    pretrained = load_pretrained(tiny_simclr_run / "checkpoints" / "last.ckpt")
    with safe_open(str(out), "pt") as handle:
        facts = json.loads(handle.metadata()["selfsup"])
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    assert facts["input"] == {"channels": 3, "image_size": 16}
    assert facts["normalization"] == {"mean": list(pretrained.norm.mean), "std": list(pretrained.norm.std)}
    state = pretrained.method.backbone.state_dict()
    assert tensors.keys() == state.keys() and all(torch.equal(tensors[k], state[k].float()) for k in state)


def test_onnx_runs_in_onnxruntime_with_the_checkpoints_features(tiny_simclr_run, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    out = tmp_path / "backbone.onnx"
    assert main(["export", str(tiny_simclr_run), "--format", "onnx", "--out", str(out)]) == 0
    images = synthetic_images(5)  # another batch size than the export's
    pretrained = load_pretrained(tiny_simclr_run / "checkpoints" / "last.ckpt")
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    features = session.run(["features"], {"images": pretrained.norm(images).numpy()})[0]
    assert torch.allclose(torch.from_numpy(features), checkpoint_features(tiny_simclr_run, images), atol=1e-4)
    assert json.loads((tmp_path / "backbone.onnx.json").read_text())["check"]["max_abs_difference"] < 1e-4


def test_bad_exports_say_why_and_overwrite_nothing(tiny_simclr_run, tmp_path, capsys):
    out = tmp_path / "taken.pt"
    out.write_text("earlier work")
    assert main(["export", str(tiny_simclr_run), "--format", "safetensors", "--out", str(out)]) != 0
    assert "exists" in capsys.readouterr().err and out.read_text() == "earlier work"
    assert main(["export", str(tiny_simclr_run), "--format", "torchvision", "--out", str(tmp_path / "a.pt")]) != 0
    assert "width 64" in capsys.readouterr().err  # the tiny run's ResNet is 8 wide
    assert main(["export", str(tiny_simclr_run), "--format", "timm", "--out", str(tmp_path / "b.pt")]) != 0
    assert "vision transformers" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nowhere"), "--format", "onnx", "--out", str(tmp_path / "c.onnx")]) != 0
    assert "no such run directory or checkpoint" in capsys.readouterr().err
    assert not any(p.name in ("a.pt", "b.pt", "c.onnx") for p in tmp_path.iterdir())


def test_a_backbone_behind_an_input_filter_is_refused_with_the_reason(tmp_path, capsys):
    run = tmp_path / "deepcluster"
    assert main(["pretrain", "--method", "deepcluster", "--epochs", "1", "--out", str(run), *TINY,
                 "--set", "knn.every_n_epochs=0", "--set", "knn.final=false"]) == 0
    assert main(["export", str(run), "--format", "onnx", "--out", str(tmp_path / "d.onnx")]) != 0
    assert "Sobel" in capsys.readouterr().err and not (tmp_path / "d.onnx").exists()

"""Every registered method, through the engine on tiny data: steps, checkpoint round trip,
resume equality of weights *and* buffers (queues, cluster assignments), features, groups.
A new method is covered by registering it."""
import pytest
import torch

from conftest import TINY
from selfsup.config import resolve
from selfsup.build import load_pretrained
from selfsup.engine.train import pretrain
from selfsup.methods import METHODS


def tiny_method_cfg(method: str, epochs: int = 2) -> dict:
    assignments = [TINY[i + 1] for i, arg in enumerate(TINY) if arg == "--set"]
    return resolve(method, flags={"dataset": "synthetic", "epochs": epochs, "batch_size": 64, "backbone": {"width": 8}},
                   assignments=assignments + ["knn.every_n_epochs=0"])


class SimulatedCrash(RuntimeError):
    pass


def assert_same_state(a: dict, b: dict, atol: float = 1e-6) -> None:
    """Two checkpoints at the same step with the same parameters and buffers, within ``atol``."""
    assert a["global_step"] == b["global_step"]
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, value in a["state_dict"].items():
        assert torch.allclose(value.float(), b["state_dict"][key].float(), atol=atol), key


def crash_and_resume(name, tmp_path, monkeypatch, make_cfg):
    """Train ``make_cfg()`` straight, and again with a crash at the start of epoch 2 then resumed:
    (both runs' metrics, both last checkpoints)."""
    straight = pretrain(make_cfg(), tmp_path / "straight")
    cls = METHODS[name]
    original = cls.on_epoch_start

    def crash_in_second_epoch(self, epoch, embed):
        if epoch == 1:
            raise SimulatedCrash
        return original(self, epoch, embed)

    monkeypatch.setattr(cls, "on_epoch_start", crash_in_second_epoch)
    with pytest.raises(SimulatedCrash):
        pretrain(make_cfg(), tmp_path / "resumed")
    monkeypatch.setattr(cls, "on_epoch_start", original)
    resumed = pretrain(make_cfg(), tmp_path / "resumed", resume=True)
    return (straight, resumed), [torch.load(tmp_path / run / "checkpoints" / "last.ckpt", weights_only=True)
                                 for run in ("straight", "resumed")]


# every registered method (semi-supervised ones with one unlabelled image per labelled one: the
# same 8 steps per epoch; self-training and FROST relabel at the second epoch), and the options that
# build other state
SEMI = {"unlabelled_ratio": 1}
VARIANTS = [(name, {**SEMI, "iterations": 2} if "iterations" in METHODS[name].defaults else SEMI
             if METHODS[name].semi_supervised else {}) for name in sorted(METHODS)] + [("fixmatch", {**SEMI, "balance": "hybrid"}),
                                                      ("frost", {**SEMI, "iterations": 2, "self_supervised": "moco-v2"}),
                                                      ("moco-v2", {"negatives": "batch"}),
                                                      ("moco-v2", {"negatives": "bank", "queue_size": 128}),
                                                      ("instdisc", {"bank_init": "embeddings"}),
                                                      ("instdisc", {"loss": "softmax"}),
                                                      ("context-encoder", {"adversarial": 0.001, "region": "random"}),
                                                      ("denoising-ae", {"corruption": "gaussian", "noise": 0.5}),
                                                      ("multitask", {"tasks": ["relative-patch", "supervised"],
                                                                     "uncertainty": True})]


@pytest.mark.parametrize("name,params", VARIANTS, ids=["-".join([n, *("+".join(v) if isinstance(v, list) else str(v)
                                                                        for v in p.values())]) for n, p in VARIANTS])
def test_method_trains_checkpoints_and_resumes_exactly(name, params, tmp_path, monkeypatch):
    def make_cfg():
        cfg = tiny_method_cfg(name)
        cfg["params"].update(params)
        return cfg

    (straight, resumed), (a, b) = crash_and_resume(name, tmp_path, monkeypatch, make_cfg)
    assert straight["final_loss"] is not None and straight["knn_top1"] is not None  # learning: tests/test_learning.py
    assert resumed["resumed_from"]
    assert a["global_step"] == 16
    assert_same_state(a, b, atol=1e-5)
    assert a.get("epoch_history") == b.get("epoch_history")

    # the checkpoint alone rebuilds the method with every buffer at its shape
    module = load_pretrained(tmp_path / "straight" / "checkpoints" / "last.ckpt")
    for key, value in module.method.state_dict().items():
        assert torch.equal(value, a["state_dict"]["method." + key]), key

    method = module.method
    images = torch.randn(4, 3, 16, 16)
    assert method.features(images).shape == (4, method.feature_dim)
    layers = method.feature_layers(images)
    assert len(layers) == 5 and layers[-1].shape == (4, method.feature_dim)

    grouped = [p for group in method.parameter_groups() for p in group["params"]]
    trainable = [p for p in method.parameters() if p.requires_grad]
    assert len(grouped) == len({id(p) for p in grouped}) == len(trainable)
    assert {id(p) for p in grouped} == {id(p) for p in trainable}

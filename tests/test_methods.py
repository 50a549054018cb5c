"""Every registered method, through the engine on tiny data: steps, checkpoint round trip,
resume equality of weights *and* buffers (queues, cluster assignments), features, groups.
A new method is covered by registering it."""
import pytest
import torch

from selfsup.bench.definitions import TINY_RUN_PARAMS
from selfsup.build import load_pretrained
from selfsup.methods import METHODS
from support import assert_same_state, crash_and_resume, tiny_method_cfg


# every registered method (semi-supervised ones with one unlabelled image per labelled one: the
# same 8 steps per epoch; self-training and FROST relabel at the second epoch), and the options that
# build other state
SEMI = {"unlabelled_ratio": 1}
VARIANTS = [(name, {**SEMI, "iterations": 2} if "iterations" in METHODS[name].defaults else SEMI
             if METHODS[name].semi_supervised else TINY_RUN_PARAMS.get(name, {})) for name in sorted(METHODS)] + [("fixmatch", {**SEMI, "balance": "hybrid"}),
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
    # each epoch's loss is in metrics.json, the interrupted epoch's included, as the run without the crash had it
    assert [h["epoch"] for h in resumed["loss_history"]] == [0, 1] == [h["epoch"] for h in straight["loss_history"]]
    assert [h["loss"] for h in resumed["loss_history"]] == pytest.approx([h["loss"] for h in straight["loss_history"]],
                                                                         rel=1e-4, abs=1e-6)
    assert resumed["loss_history"][-1]["loss"] == pytest.approx(resumed["final_loss"], rel=1e-6)

    # the checkpoint alone rebuilds the method with every buffer at its shape
    module = load_pretrained(tmp_path / "straight" / "checkpoints" / "last.ckpt")
    for key, value in module.method.state_dict().items():
        assert torch.equal(value, a["state_dict"]["method." + key]), key

    method = module.method
    run = method.run
    images = torch.randn(4, run.channels, *([run.image_size] * (1 if run.modality == "series" else 2)))
    assert method.features(images).shape == (4, method.feature_dim)
    layers = method.feature_layers(images)
    assert len(layers) == len(method.layer_names) and layers[-1].shape == (4, method.feature_dim)

    grouped = [p for group in method.parameter_groups() for p in group["params"]]
    trainable = [p for p in method.parameters() if p.requires_grad]
    assert len(grouped) == len({id(p) for p in grouped}) == len(trainable)
    assert {id(p) for p in grouped} == {id(p) for p in trainable}

"""The Method contract through the engine: method randomness survives resume, batches that
are not one image tensor, fixed-lr groups, re-initialised heads lose their optimiser state,
gradient surgery before the step, the one evaluation path, the BatchNorm policy."""
import lightning as L
import pytest
import torch
import torch.nn.functional as F

import toy_methods
import yaml
from selfsup.engine.module import PretrainModule
from selfsup.build import build_method
from selfsup.engine.train import pretrain
from selfsup.eval.linear import linear_probe
from selfsup.methods.deepcluster import DeepCluster
from selfsup.methods.supervised import SupCon
from selfsup.rundir import RunDirectory
from selfsup.models.norm import SplitBatchNorm2d
from support import assert_same_state, crash_and_resume, tiny_method_cfg


@pytest.fixture
def toys(monkeypatch):
    toy_methods.register(monkeypatch.setitem)


@pytest.mark.parametrize("name", ["toy-noisy", "toy-semisup"])
def test_method_randomness_and_two_part_batches_resume_exactly(name, toys, tmp_path, monkeypatch):
    _, (a, b) = crash_and_resume(name, tmp_path, monkeypatch, lambda: tiny_method_cfg(name))
    assert_same_state(a, b)


def test_modules_drawing_from_pytorch_s_own_generator_resume_exactly(tmp_path, monkeypatch):
    """timm's stochastic depth and dropout draw from the device's default generator, which the
    engine seeds each step from the step's key: a resumed ViT run drops the blocks the
    uninterrupted run dropped."""
    def cfg():
        c = tiny_method_cfg("mae")
        c["backbone"]["drop_path"] = 0.5
        return c

    _, (a, b) = crash_and_resume("mae", tmp_path, monkeypatch, cfg)
    assert_same_state(a, b)


def test_a_param_added_since_a_run_was_saved_takes_the_value_the_run_trained_with(tmp_path):
    """SupCon's head lost its BatchNorm (``head_batch_norm``, now false by default); a checkpoint
    saved before the param existed trained with it, and loads with it (``Method.earlier_runs``)."""
    from selfsup.build import load_pretrained
    from support import tiny

    cfg = tiny_method_cfg("supcon", epochs=1)
    cfg["params"]["head_batch_norm"] = True
    pretrain(cfg, tmp_path / "run")
    path = tmp_path / "run" / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(path, weights_only=True)
    del checkpoint["hyper_parameters"]["cfg"]["params"]["head_batch_norm"]  # as written before the param
    torch.save(checkpoint, path)
    saved = load_pretrained(path).method
    assert saved.cfg["head_batch_norm"] and any(isinstance(m, torch.nn.BatchNorm1d) for m in saved.projector.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in tiny("supcon").projector.modules())
    # and a run directory whose config.yaml lacks the param is not the same run as one without BatchNorm
    run = RunDirectory(tmp_path / "run")
    saved = yaml.safe_load(run.config_file.read_text())
    del saved["params"]["head_batch_norm"]
    run.config_file.write_text(yaml.safe_dump(saved))
    today = tiny_method_cfg("supcon", epochs=1)
    assert "params.head_batch_norm" not in run.differences(today)  # without the earlier values: the config's
    assert "params.head_batch_norm" in run.differences(today, earlier=SupCon.earlier_runs)
    assert "params.head_batch_norm" not in run.differences(cfg, earlier=SupCon.earlier_runs)


def test_method_generator_is_per_step_and_reproducible(toys, tmp_path, monkeypatch):
    draws = []
    original = toy_methods.NoisyContrast.training_step

    def record(self, batch, step):
        draws.append(torch.rand(3, generator=self.generator))
        return original(self, batch, step)

    monkeypatch.setattr(toy_methods.NoisyContrast, "training_step", record)
    pretrain(tiny_method_cfg("toy-noisy", epochs=1), tmp_path / "a")
    first = list(draws)
    draws.clear()
    pretrain(tiny_method_cfg("toy-noisy", epochs=1), tmp_path / "b")
    assert all(torch.equal(x, y) for x, y in zip(first, draws)) and len(first) == 8
    assert len({tuple(x.tolist()) for x in first}) == 8  # a fresh stream each step


def test_series_batches_through_pretrain_checkpoint_and_resume(toys, tmp_path, monkeypatch):
    def cfg():
        c = tiny_method_cfg("toy-series")
        c.update(dataset="toy-sines", batch_size=32)
        c["knn"]["final"] = False
        return c

    _, (a, b) = crash_and_resume("toy-series", tmp_path, monkeypatch, cfg)
    assert a["global_step"] == 16  # 256 series / 32, two epochs
    assert_same_state(a, b)
    assert a["hyper_parameters"]["cfg"]["data"]["image_size"] == 32  # the series length


def test_fixed_lr_groups_skip_warmup_and_decay():
    from types import SimpleNamespace

    cfg = tiny_method_cfg("simclr", epochs=10)
    cfg["data"].update(channels=3, image_size=16, num_classes=6, mean=[0.5] * 3, std=[0.2] * 3)
    cfg["backbone"]["small_stem"] = True
    cfg["run"] = {"train_size": 512, "world_size": 1, "batches_per_epoch": 8}
    cfg["schedule"]["warmup_epochs"] = 1
    module = PretrainModule(cfg)
    head = list(module.method.projector.parameters())
    module.method.parameter_groups = lambda: [
        {"params": list(module.method.backbone.parameters())},
        {"params": head, "fixed_lr": True, "lr_scale": 0.5}]
    module._trainer = SimpleNamespace(estimated_stepping_batches=80, world_size=1)
    setup = module.configure_optimizers()
    optimizer, schedule = setup["optimizer"], setup["lr_scheduler"]["scheduler"]
    peak = optimizer.param_groups[0]["initial_lr"]
    rates = []
    for _ in range(80):
        rates.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        schedule.step()
    assert rates[0][0] < 0.2 * peak and max(r[0] for r in rates) == pytest.approx(peak)  # warm-up, then peak
    assert rates[-1][0] < 0.01 * peak  # cosine decay
    assert all(r[1] == pytest.approx(0.5 * peak) for r in rates)  # fixed group: scaled, never scheduled


def _stepped_module(cfg, total=80):
    """A SimCLR module's optimiser and schedule, as Lightning would build them for ``total`` steps."""
    from types import SimpleNamespace

    cfg["data"].update(channels=3, image_size=16, num_classes=6, mean=[0.5] * 3, std=[0.2] * 3)
    cfg["backbone"]["small_stem"] = True
    cfg["run"] = {"train_size": 512, "world_size": 1, "batches_per_epoch": 8}
    module = PretrainModule(cfg)
    module._trainer = SimpleNamespace(estimated_stepping_batches=total, world_size=1)
    setup = module.configure_optimizers()
    return setup["optimizer"], setup["lr_scheduler"]["scheduler"]


def test_weight_decay_rises_along_its_cosine_and_resumes():
    import math

    cfg = tiny_method_cfg("simclr", epochs=10)
    cfg["optimizer"].update(name="adamw", weight_decay=0.04)
    cfg["schedule"]["final_weight_decay"] = 0.4
    optimizer, schedule = _stepped_module(cfg)
    decayed = [i for i, g in enumerate(optimizer.param_groups) if g["weight_decay"] > 0]
    spared = [i for i, g in enumerate(optimizer.param_groups) if g["weight_decay"] == 0]
    assert decayed and spared  # weights are decayed, biases and norms not
    seen = []
    for step in range(80):
        seen.append([g["weight_decay"] for g in optimizer.param_groups])
        expected = 0.4 - 0.36 * 0.5 * (1 + math.cos(math.pi * step / 80))  # DINO's cosine_scheduler(0.04, 0.4)
        assert all(seen[-1][i] == pytest.approx(expected) for i in decayed), step
        assert all(seen[-1][i] == 0 for i in spared)
        optimizer.step()
        schedule.step()
        if step == 39:
            saved = (schedule.state_dict(), optimizer.state_dict())
    again, resumed = _stepped_module(cfg)
    resumed.load_state_dict(saved[0])
    again.load_state_dict(saved[1])
    for step in range(40, 80):
        assert [g["weight_decay"] for g in again.param_groups] == pytest.approx(seen[step])
        again.step()
        resumed.step()


def test_weight_decay_schedule_needs_a_weight_decay():
    from selfsup.config import Config
    from selfsup.errors import SelfSupError

    cfg = tiny_method_cfg("simclr", epochs=10)
    cfg["optimizer"]["weight_decay"] = 0.0
    cfg["schedule"]["final_weight_decay"] = 0.4
    with pytest.raises(SelfSupError, match="optimizer.weight_decay above 0"):
        Config(cfg).settings


def test_reinitialised_classifier_loses_its_optimiser_state(tmp_path, monkeypatch):
    seen = []
    original = PretrainModule.on_train_epoch_start

    def after_hook(self):
        optimizer = self.trainer.optimizers[0]
        before = [p in optimizer.state for p in self.method.classifier.parameters()]
        weights = self.method.classifier.weight.detach().clone()
        original(self)
        after = [p in optimizer.state for p in self.method.classifier.parameters()]
        kept = all(p in optimizer.state for p in self.method.backbone.parameters())
        seen.append((before, after, kept, torch.equal(weights, self.method.classifier.weight)))

    monkeypatch.setattr(PretrainModule, "on_train_epoch_start", after_hook)
    cfg = tiny_method_cfg("deepcluster")
    cfg["optimizer"].update(name="sgd", lr=0.05, momentum=0.9)
    pretrain(cfg, tmp_path / "run")
    (_, _, _, _), (before, after, kept, unchanged) = seen
    assert all(before) and not any(after) and kept and not unchanged


@pytest.mark.parametrize("freeze_epochs", [0, 1])
def test_swav_drops_prototype_gradients_in_the_first_epoch(freeze_epochs, tmp_path):
    cfg = tiny_method_cfg("swav", epochs=1)
    cfg["params"]["freeze_prototypes_epochs"] = freeze_epochs
    pretrain(cfg, tmp_path / "run")
    trained = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    L.seed_everything(cfg["seed"], verbose=False)
    initial = PretrainModule(cfg).method.prototypes.weight.detach()
    after = trained["state_dict"]["method.prototypes.weight"]
    assert torch.allclose(after, F.normalize(initial, dim=1), atol=1e-6) == bool(freeze_epochs)


def test_evaluation_runs_in_eval_mode_and_leaves_batchnorm_statistics_alone(tmp_path):
    cfg = tiny_method_cfg("simclr", epochs=1)
    pretrain(cfg, tmp_path / "run")
    from selfsup.build import load_pretrained
    from selfsup.data.datasets import load_split
    module = load_pretrained(tmp_path / "run" / "checkpoints" / "last.ckpt")
    method = module.method.train()
    before = {k: v.clone() for k, v in method.state_dict().items()}
    data = load_split("synthetic", "train", options={"synthetic_size": 128})
    probe = linear_probe(method, data, data, module.norm, 6, layers=True, epochs=2)
    assert list(probe) == ["conv1", "conv2", "conv3", "conv4", "conv5"]
    assert method.training  # mode restored
    for key, value in method.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_batchnorm_policy_split_on_one_device_local_under_ddp():
    cfg = tiny_method_cfg("moco-v2")
    cfg["data"].update(channels=3, image_size=16, num_classes=6)
    cfg["backbone"]["small_stem"] = True
    cfg["run"] = {"train_size": 512, "world_size": 1, "batches_per_epoch": 8}
    method = build_method(cfg)
    splits = [m for m in method.modules() if isinstance(m, SplitBatchNorm2d)]
    assert splits and all(m.num_splits == 8 for m in splits)
    assert any(isinstance(m, SplitBatchNorm2d) for m in method.key_backbone.modules())
    cfg["run"]["world_size"] = 2
    assert not any(isinstance(m, SplitBatchNorm2d) for m in build_method(cfg).modules())


def test_moco_symmetric_loss_averages_both_directions_and_queues_both_keys():
    cfg = tiny_method_cfg("moco-v2")
    cfg["data"].update(channels=3, image_size=16, num_classes=6)
    cfg["backbone"].update(small_stem=True, batchnorm="local")  # keys then do not depend on the shuffle
    cfg["run"] = {"train_size": 512, "world_size": 1, "batches_per_epoch": 8}
    torch.manual_seed(0)
    a, b = torch.randn(2, 8, 3, 16, 16)
    one_way, both_ways = build_method(cfg), None
    cfg["params"]["symmetric"] = True
    both_ways = build_method(cfg)
    both_ways.load_state_dict(one_way.state_dict())
    queue = one_way.queue.items().clone()
    index = torch.arange(8)
    forward = one_way.training_step({"views": [a, b], "index": index}, 0)["loss"]
    one_way.queue.load_state_dict(both_ways.queue.state_dict())
    backward = one_way.training_step({"views": [b, a], "index": index}, 0)["loss"]
    symmetric = both_ways.training_step({"views": [a, b], "index": index}, 0)["loss"]
    assert torch.allclose(symmetric, (forward + backward) / 2, atol=1e-6)
    assert int(both_ways.queue.pointer) == 16  # the keys of both views joined the queue
    assert not torch.equal(both_ways.queue.items()[:16], queue[:16])


def test_deepcluster_scores_its_new_assignment_against_the_previous_one_and_the_classes():
    from sklearn.metrics import normalized_mutual_info_score as nmi
    from support import tiny

    method = tiny("deepcluster")
    previous = torch.randint(0, 60, (512,), generator=torch.Generator().manual_seed(0))
    method.assignment.copy_(previous)
    labels = torch.arange(512) % 6
    stats = method.on_epoch_start(1, lambda encode: (torch.randn(512, 16, generator=torch.Generator().manual_seed(1)),
                                                     labels))
    new = method.assignment.clone()
    assert not torch.equal(new, previous)
    assert stats["nmi_previous"] == pytest.approx(nmi(previous.numpy(), new.numpy())) and stats["nmi_previous"] < 1
    assert stats["nmi_true_labels"] == pytest.approx(nmi(labels.numpy(), new.numpy()))
    assert stats["clusters_used"] == len(new.unique())


def test_deepcluster_reports_cluster_statistics_each_epoch(tmp_path):
    metrics = pretrain(tiny_method_cfg("deepcluster", epochs=2), tmp_path / "run")
    first, second = metrics["epoch_history"]
    assert first["clusters_used"] == second["clusters_used"] == 60  # 10 x 6 classes
    assert 0 < second["nmi_previous"] <= 1 and 0 < second["nmi_true_labels"] <= 1
    assert DeepCluster.defaults["sobel"]

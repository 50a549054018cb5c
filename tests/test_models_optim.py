import math

import pytest
import torch

from selfsup.optim import LARS, scaled_lr, warmup_cosine
from selfsup.models import build_backbone, mlp


@pytest.mark.parametrize("arch,expansion", [("resnet18", 1), ("resnet34", 1), ("resnet50", 4)])
def test_backbone_width_channels_and_stages(arch, expansion):
    net = build_backbone({"name": arch, "width": 8, "small_stem": True}, 4, 32).eval()
    x = torch.randn(2, 4, 32, 32)
    assert net(x).shape == (2, 8 * 8 * expansion) and net.feature_dim == 64 * expansion
    stages = net.forward_stages(x)
    assert [s.shape[1] for s in stages] == net.stage_dims
    assert torch.allclose(stages[-1], net(x), atol=1e-6)


def test_small_stem_keeps_resolution_and_imagenet_stem_quarters_it():
    small = build_backbone({"name": "resnet18", "width": 8, "small_stem": True}, 3, 32)
    large = build_backbone({"name": "resnet18", "width": 8, "small_stem": False}, 3, 32)
    x = torch.randn(1, 3, 32, 32)
    assert small.layer1(small.maxpool(small.relu(small.bn1(small.conv1(x))))).shape[-1] == 32
    assert large.layer1(large.maxpool(large.relu(large.bn1(large.conv1(x))))).shape[-1] == 8


def test_mlp_head_has_the_asked_depth_and_batchnorm_layers():
    head = mlp(16, 32, 8, layers=3, last_batch_norm=True)
    assert head(torch.randn(4, 16)).shape == (4, 8)
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in head) == 3


def test_lars_step_matches_hand_computation():
    w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))  # norm 5
    bias = torch.nn.Parameter(torch.tensor([1.0]))
    optimizer = LARS([{"params": [w]}, {"params": [bias], "lars_exclude": True, "weight_decay": 0.0}],
                     lr=0.1, momentum=0.9, weight_decay=0.01, trust_coefficient=0.001)
    w.grad = torch.tensor([0.6, 0.8])
    bias.grad = torch.tensor([2.0])
    optimizer.step()
    update = torch.tensor([0.6, 0.8]) + 0.01 * torch.tensor([3.0, 4.0])
    trust = 0.001 * 5.0 / update.norm()
    assert torch.allclose(w.detach(), torch.tensor([3.0, 4.0]) - 0.1 * trust * update)
    assert torch.allclose(bias.detach(), torch.tensor([1.0 - 0.1 * 2.0]))  # plain SGD step, no decay


@pytest.mark.parametrize("lr", [0.1, 0.001, 0.0])
def test_clipped_lars_steps_by_the_trust_coefficient_capped_at_the_learning_rate(lr):
    # EMP-SSL's LARS: the step is min(eta * |w| / |g + wd w|, lr) times g + wd w, momentum and Nesterov on top
    w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))  # norm 5
    optimizer = LARS([{"params": [w]}], lr=lr, momentum=0.9, weight_decay=0.01, trust_coefficient=0.005,
                     nesterov=True, trust_clip=True)
    w.grad = torch.tensor([0.6, 0.8])
    optimizer.step()
    update = torch.tensor([0.6, 0.8]) + 0.01 * torch.tensor([3.0, 4.0])
    step = min(0.005 * 5.0 / update.norm().item(), lr)  # 0.0240: the trust sets the step at lr 0.1, lr caps it at 0.001
    # the first momentum buffer is the update itself, and Nesterov adds momentum times it again
    assert torch.allclose(w.detach(), torch.tensor([3.0, 4.0]) - step * 1.9 * update)


def test_learning_rate_rules_and_schedule():
    assert scaled_lr(0.3, "linear", 512) == pytest.approx(0.6)
    assert scaled_lr(0.075, "sqrt", 256) == pytest.approx(1.2)
    assert scaled_lr(0.1, "none", 4096) == 0.1
    assert warmup_cosine(0, 100, 10) == pytest.approx(0.1)
    assert warmup_cosine(9, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine(55, 100, 10) == pytest.approx(0.5)
    assert warmup_cosine(100, 100, 10, final_ratio=0.1) == pytest.approx(0.1)
    assert warmup_cosine(10 + 45 // 2, 100, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi * 22 / 90)))


def test_numbers_in_exponent_notation_are_numbers_in_set_and_config_files(tmp_path):
    from selfsup.config import resolve

    user = tmp_path / "user.yaml"
    user.write_text("optimizer:\n  lr: 3e-4\n")
    cfg = resolve("simclr", user_file=str(user), assignments=["optimizer.weight_decay=1e-6", "params.temperature=2E-1"])
    assert cfg["optimizer"]["lr"] == 3e-4 and cfg["optimizer"]["weight_decay"] == 1e-6
    assert cfg["params"]["temperature"] == 0.2


@pytest.mark.parametrize("method, decays_everything", [("moco-v2", True), ("simsiam", True), ("instdisc", True),
                                                       ("deepcluster", True), ("supcon", True), ("simclr", False),
                                                       ("byol", False)])
def test_weight_decay_reaches_biases_and_norms_only_where_the_reference_code_decays_them(method, decays_everything):
    from selfsup.config import resolve
    from selfsup.optim import build_optimizer
    from selfsup.methods.base import split_decay

    cfg = resolve(method)["optimizer"]
    assert cfg["decay_biases_and_norms"] is decays_everything
    layer = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    optimizer = build_optimizer(split_decay(layer.parameters()), cfg, 256)
    by_shape = {p.ndim: group["weight_decay"] for group in optimizer.param_groups for p in group["params"]}
    assert by_shape[2] == cfg["weight_decay"] > 0
    assert by_shape[1] == (cfg["weight_decay"] if decays_everything else 0.0)


def test_adam_betas_come_from_the_config_and_bad_ones_are_refused():
    from selfsup.errors import SelfSupError
    from selfsup.optim import build_optimizer

    cfg = {"name": "adamw", "lr": 1e-3, "lr_scaling": "none", "weight_decay": 0.05, "betas": [0.9, 0.95]}
    optimizer = build_optimizer([{"params": [torch.nn.Parameter(torch.zeros(2))]}], cfg, 256)
    assert optimizer.param_groups[0]["betas"] == (0.9, 0.95)
    with pytest.raises(SelfSupError, match="optimizer.betas"):
        build_optimizer([{"params": [torch.nn.Parameter(torch.zeros(2))]}], {**cfg, "betas": [0.9]}, 256)

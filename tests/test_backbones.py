"""ResNet backbones: the shortcut's strided 1x1 convolution and the CPU crash it avoids."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from selfsup.errors import SelfSupError
from selfsup.models.backbones import StridedPointwiseConv, build_backbone

RESNET18_WIDTH8 = {"name": "resnet18", "width": 8, "small_stem": True}


def test_strided_pointwise_conv_is_the_strided_1x1_convolution():
    torch.manual_seed(0)
    plain = nn.Conv2d(8, 16, 1, stride=2, bias=True)
    ours = StridedPointwiseConv(8, 16, 1, stride=2, bias=True)
    ours.load_state_dict(plain.state_dict())
    for layout in (torch.contiguous_format, torch.channels_last):
        x = torch.randn(3, 8, 15, 15).contiguous(memory_format=layout).requires_grad_()
        y_plain, y_ours = plain(x), ours(x)
        assert y_ours.shape == y_plain.shape == (3, 16, 8, 8)
        torch.testing.assert_close(y_ours, y_plain)
        g_plain = torch.autograd.grad(y_plain.square().sum(), (x, plain.weight))
        g_ours = torch.autograd.grad(y_ours.square().sum(), (x, ours.weight))
        for a, b in zip(g_ours, g_plain):
            torch.testing.assert_close(a, b)
    assert repr(ours) == repr(plain)  # one function, one printed form (the baseline caches hash it)


def test_every_strided_shortcut_is_pointwise_and_the_seeded_network_is_unchanged(monkeypatch):
    from selfsup.models import backbones

    torch.manual_seed(5)
    net = build_backbone(RESNET18_WIDTH8, 3, 32)
    shortcuts = [m for m in net.modules() if isinstance(m, StridedPointwiseConv)]
    assert len(shortcuts) == 3  # layer2..layer4
    monkeypatch.setattr(backbones, "_pointwise_shortcuts", lambda stage: stage)  # torchvision's strided Conv2d
    torch.manual_seed(5)
    plain = build_backbone(RESNET18_WIDTH8, 3, 32)
    assert not any(isinstance(m, StridedPointwiseConv) for m in plain.modules())
    assert net.state_dict().keys() == plain.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), plain.state_dict().values()))


def test_narrow_resnet_trains_channels_last_at_64_pixels_without_crashing():
    """oneDNN's strided 1x1 convolution backward corrupted memory here (width 8, 64x64, channels_last)."""
    code = ("import torch; from selfsup.models.backbones import build_backbone\n"
            "net = build_backbone({'name': 'resnet18', 'width': 8, 'small_stem': True}, 3, 64).to(memory_format=torch.channels_last)\n"
            "x = torch.randn(32, 3, 64, 64).contiguous(memory_format=torch.channels_last)\n"
            "for _ in range(3): net(x).square().mean().backward()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("name, option, value", [("resnet18", "depth", 3), ("tcc-conv", "depth", 3), ("conv1d", "depth", 2),
                                                 ("vit-tiny", "depth", 4), ("vit-small", "heads", 2),
                                                 ("resnet18", "patch_size", 4), ("dilated-conv", "pool", "mean")])
def test_a_size_option_the_network_does_not_read_is_refused(name, option, value):
    settings = {"name": name, "width": 8, "small_stem": True, option: value}
    with pytest.raises(SelfSupError, match=f"backbone.{option} \\({value}\\) does not apply to {name}: only "):
        build_backbone(settings, 1, 28)
    settings[option] = None if option != "pool" else "cls"  # unset, the same network builds
    assert isinstance(build_backbone(settings, 1, 28), nn.Module)


def test_the_networks_that_read_depth_get_it():
    def blocks(depth):
        return len(build_backbone({"name": "dilated-conv", "width": 8, "depth": depth}, 1, 32).blocks)
    assert blocks(5) - blocks(3) == 2
    assert len(build_backbone({"name": "vit", "width": 32, "depth": 2, "heads": 2}, 1, 28).vit.blocks) == 2

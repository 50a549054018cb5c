"""ResNet backbones built from torchvision's blocks.

torchvision's ``ResNet`` fixes the stage widths at 64-128-256-512 and the ImageNet stem
(7x7 stride-2 conv + max-pool).  Self-supervised work on small images (CIFAR, STL, MNIST)
uses a 3x3 stride-1 stem without max-pool (SimCLR appendix B.9) and often a narrower network,
so ``ResNetBackbone`` reuses torchvision's ``BasicBlock``/``Bottleneck`` and ``_make_layer``
but takes a base width and an input channel count.  The classifier is dropped: the backbone
returns the globally pooled features of the last stage (``feature_dim`` values).
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from ..errors import SelfSupError
from .vit import VIT_BACKBONES, VIT_SIZES, ViTBackbone, default_patch_size
from .dilated_conv import CausalConvEncoder, DilatedConvEncoder
from .norm import memory_layout
from .staged import StagedSeriesEncoder
from .tcc_conv import TCCConvEncoder
from .wide_resnet import WIDE_RESNETS, wide_resnet

RESNET_LAYOUTS = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
}


class StridedPointwiseConv(nn.Conv2d):
    """A 1x1 convolution with a stride (a ResNet shortcut's downsampling), computed as the
    stride-1 convolution of every ``stride``-th pixel: the same function and parameters.  We
    avoid the strided kernel because its CPU (oneDNN) backward corrupts memory for
    channels_last inputs of few channels (PyTorch 2.14: 8 to 16 channels at 64x64 pixels
    crashes the process; ``tests/test_backbones.py``)."""

    def _get_name(self) -> str:  # the same function as a Conv2d: printed, and so hashed for the baseline caches, as one
        return "Conv2d"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        picked = x[:, :, ::self.stride[0], ::self.stride[1]].contiguous(memory_format=memory_layout(x))
        return nn.functional.conv2d(picked, self.weight, self.bias)


def _pointwise_shortcuts(stage: nn.Sequential) -> nn.Sequential:
    """``stage`` with each block's strided 1x1 shortcut convolution as a ``StridedPointwiseConv``."""
    for block in stage:
        conv = block.downsample[0] if block.downsample is not None else None
        if conv is not None and conv.kernel_size == (1, 1) and conv.stride != (1, 1):
            # skip_init draws no random numbers, so a seed builds the same network as before
            pointwise = nn.utils.skip_init(StridedPointwiseConv, conv.in_channels, conv.out_channels, 1,
                                           stride=conv.stride, bias=conv.bias is not None)
            pointwise.weight, pointwise.bias = conv.weight, conv.bias
            block.downsample[0] = pointwise
    return stage


class ResNetBackbone(ResNet):
    """A torchvision ResNet with a configurable stem, base width and input channels."""

    def __init__(self, arch: str = "resnet18", in_channels: int = 3, width: int = 64,
                 small_stem: bool = False):
        nn.Module.__init__(self)
        block, layers = RESNET_LAYOUTS[arch]
        # Attributes that torchvision's ``_make_layer`` reads.
        self._norm_layer = nn.BatchNorm2d
        self.inplanes, self.dilation, self.groups, self.base_width = width, 1, 1, 64
        if small_stem:
            self.conv1 = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = _pointwise_shortcuts(self._make_layer(block, width * 2, layers[1], stride=2))
        self.layer3 = _pointwise_shortcuts(self._make_layer(block, width * 4, layers[2], stride=2))
        self.layer4 = _pointwise_shortcuts(self._make_layer(block, width * 8, layers[3], stride=2))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Flatten()
        self.feature_dim = width * 8 * block.expansion
        self.stage_dims = [width] + [width * m * block.expansion for m in (1, 2, 4, 8)]
        self.layer_names = [f"conv{i + 1}" for i in range(5)]  # the survey's probing points
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def compile_regions(self) -> list[nn.Module]:
        """What ``trainer.compile`` compiles: the four stages."""
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Globally average-pooled features after the stem and each of the four stages
        (the survey's conv1..conv5 probing points)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        pooled = [self.avgpool(x).flatten(1)]
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
            pooled.append(self.avgpool(x).flatten(1))
        return pooled


class StepLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of each time step of a [B, C, T] sequence."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class Conv1dEncoder(StagedSeriesEncoder):
    """Strided 1-D convolutions for series, CPC's audio encoder (van den Oord et al. 2018:
    five strided convolutions without padding, 160x down-sampling of 16 kHz audio) scaled to
    short series: kernels 5, 3, 3, 3 with one stride of 2, no padding (zero padding would
    tell every encoding where it sits in the series, a shortcut for CPC's task), so that a
    24-step series still gives 5 encodings; channels width, width, 2 width, 2 width.  Each
    convolution is followed by a layer norm over the channels of each time step
    (``StepLayerNorm``: no statistics across time, so an encoding depends only on the steps in
    its receptive field and CPC cannot see the future; no BatchNorm, which leaks information
    between the series of a batch, as CPC v2 notes) and a ReLU.  ``forward_sequence`` gives
    the encodings over time, ``forward`` their mean."""

    LAYOUT = ((5, 1, 1), (3, 2, 1), (3, 1, 2), (3, 1, 2))  # (kernel, stride, channel multiple)

    def __init__(self, in_channels: int = 1, width: int = 64):
        super().__init__()
        stages, channels = [], in_channels
        for kernel, stride, multiple in self.LAYOUT:
            out = width * multiple
            stages.append(nn.Sequential(nn.Conv1d(channels, out, kernel, stride),
                                        StepLayerNorm(out), nn.ReLU(inplace=True)))
            channels = out
        self.stages = nn.ModuleList(stages)
        self.feature_dim = channels
        self.stage_dims = [width * multiple for _, _, multiple in self.LAYOUT]
        self.layer_names = [f"conv{i + 1}" for i in range(len(self.LAYOUT))]

    @classmethod
    def output_length(cls, length: int) -> int:
        """Encodings per series of ``length`` steps."""
        for kernel, stride, _ in cls.LAYOUT:
            length = (length - kernel) // stride + 1
        return length


IMAGE_BACKBONES = (*RESNET_LAYOUTS, *WIDE_RESNETS, *VIT_BACKBONES)
#: the series encoders built of ``backbone.depth`` residual blocks (TS2Vec's and T-Loss's, 10 by default)
STACKED_SERIES_BACKBONES = ("dilated-conv", "causal-conv")
SERIES_BACKBONES = ("conv1d", *STACKED_SERIES_BACKBONES, "tcc-conv")
BACKBONES = (*IMAGE_BACKBONES, *SERIES_BACKBONES)
#: the networks whose name fixes their width, which ``backbone.width`` may not change
FIXED_WIDTH_BACKBONES = (*VIT_SIZES, *WIDE_RESNETS)


def default_backbone(modality: str) -> str:
    """What ``backbone.name: auto`` means for images and for series."""
    return "conv1d" if modality == "series" else "resnet18"


def vit_size(settings: dict, image_size: int) -> dict:
    """Width, depth, heads and patch size of the ViT that ``settings`` (a config's ``backbone``
    section) names, with their derived defaults (``selfsup.models.vit``)."""
    size = {"width": settings["width"], "depth": settings.get("depth") or 6, "heads": settings.get("heads"),
            **VIT_SIZES.get(settings["name"], {})}
    size["heads"] = size["heads"] or max(1, size["width"] // 64)
    size["patch_size"] = settings.get("patch_size") or default_patch_size(image_size)
    return size


# The options only some networks read, and their unset values: set on any other network, they are
# refused rather than ignored (vit-tiny and vit-small take their depth and heads from the name, and
# accept only the name's own values, which a run's config.yaml records).
OPTION_READERS = {"depth": ("vit", *STACKED_SERIES_BACKBONES), "heads": ("vit",), "patch_size": VIT_BACKBONES,
                  "drop_path": VIT_BACKBONES, "pool": VIT_BACKBONES}
UNSET_OPTIONS = {"depth": None, "heads": None, "patch_size": None, "drop_path": 0.0, "pool": "cls"}


def check_backbone_options(settings: dict) -> None:
    """Refuse an option ``settings`` (a config's ``backbone`` section) sets that its network does not read."""
    fixed = VIT_SIZES.get(settings["name"], {})
    for option, readers in OPTION_READERS.items():
        value = settings.get(option, UNSET_OPTIONS[option])
        if settings["name"] not in readers and value not in (UNSET_OPTIONS[option], fixed.get(option)):
            raise SelfSupError(f"backbone.{option} ({settings[option]}) does not apply to {settings['name']}: "
                               f"only {', '.join(readers)} read it")


def build_backbone(settings: dict, in_channels: int, image_size: int) -> nn.Module:
    """The encoder ``settings`` (a config's ``backbone`` section) describes, for inputs of
    ``in_channels`` channels and side (or length) ``image_size``."""
    check_backbone_options(settings)
    name = settings["name"]
    if name == "conv1d":
        return Conv1dEncoder(in_channels, settings["width"])
    if name == "dilated-conv":  # TS2Vec's encoder: ``width`` hidden channels, ``depth`` blocks (default 10)
        return DilatedConvEncoder(in_channels, settings["width"], settings.get("depth") or 10)
    if name == "causal-conv":  # T-Loss's encoder: ``width`` channels, ``depth`` causal blocks (default 10)
        return CausalConvEncoder(in_channels, settings["width"], settings.get("depth") or 10)
    if name == "tcc-conv":  # TS-TCC's encoder: ``width``, 2 x and 4 x ``width`` channels
        return TCCConvEncoder(in_channels, settings["width"])
    if name in VIT_BACKBONES:
        return ViTBackbone(in_channels, image_size, drop_path=settings.get("drop_path", 0.0),
                           pool=settings.get("pool", "cls"), **vit_size(settings, image_size))
    if name in WIDE_RESNETS:  # depth and widening in the name; ``width`` and ``small_stem`` do not apply
        return wide_resnet(name, in_channels)
    if name not in RESNET_LAYOUTS:
        raise KeyError(name)
    return ResNetBackbone(name, in_channels=in_channels, width=settings["width"], small_stem=settings["small_stem"])

"""Exporting a run's backbone (no heads, no optimiser) for use without selfsup.

Formats:

- ``torchvision``: a state dict (``torch.save``) that loads into ``torchvision.models.resnetNN``
  after the recipe's stem and ``fc`` replacements (ResNets of the standard width, 64);
- ``timm``: a state dict that loads into timm's ``VisionTransformer`` built with the recipe's
  arguments (our ViTs);
- ``safetensors``: the backbone's tensors (torchvision's or timm's names for those backbones,
  ours for any other) with the backbone settings, input size and normalisation in its metadata;
- ``onnx``: the backbone as an ONNX graph (input ``images`` [N, C, H, W], output ``features``,
  any batch size), checked with onnxruntime where it is installed.

Every format expects images normalised as the run normalised them; beside the file,
``FILE.json`` says how to load it (the recipe), the input and the normalisation.  The export
loads the file back as the recipe says and compares its features with the checkpoint's on a
batch of the run's own test images (or, where those cannot be read, random inputs): the
largest absolute difference is in the JSON and printed.
"""
from __future__ import annotations

import json
from copy import deepcopy
from pathlib import Path

import torch
from torch import nn

from . import rng
from .errors import SelfSupError

FORMATS = ("torchvision", "timm", "safetensors", "onnx")


def torchvision_recipe(cfg: dict, backbone: nn.Module, file: str) -> str:
    """Python lines that rebuild ``backbone`` (a ``ResNetBackbone``) from torchvision and load ``file``."""
    from .models.backbones import ResNetBackbone

    settings = cfg["backbone"]
    if type(backbone) is not ResNetBackbone:  # not a subclass either (DeepCluster's Sobel input)
        raise SelfSupError(f"--format torchvision exports ResNets; this run's backbone is {settings['name']} "
                           "(use --format safetensors or onnx)")
    if settings["width"] != 64:
        raise SelfSupError(f"--format torchvision needs a ResNet of width 64 (torchvision's stages are 64-128-256-512 "
                           f"wide); this run's has width {settings['width']} (use --format safetensors or onnx)")
    channels = backbone.conv1.in_channels
    stem = (f"model.conv1 = torch.nn.Conv2d({channels}, 64, kernel_size=3, stride=1, padding=1, bias=False)\n"
            "model.maxpool = torch.nn.Identity()\n") if settings["small_stem"] else \
        (f"model.conv1 = torch.nn.Conv2d({channels}, 64, kernel_size=7, stride=2, padding=3, bias=False)\n"
         if channels != 3 else "")
    return ("import torch, torchvision\n"
            f"model = torchvision.models.{settings['name']}()\n" + stem +
            "model.fc = torch.nn.Identity()\n"
            f"model.load_state_dict(torch.load({file!r}))\n"
            "model.eval()\n")


def timm_recipe(backbone: nn.Module, file: str) -> str:
    """Python lines that rebuild ``backbone`` (a ``ViTBackbone``) with timm and load ``file``."""
    from .models.vit import ViTBackbone

    if not isinstance(backbone, ViTBackbone):
        raise SelfSupError("--format timm exports vision transformers; this run's backbone is not one "
                           "(use --format torchvision, safetensors or onnx)")
    vit = backbone.vit
    pool = "global_pool='token'" if backbone.pool == "cls" else "global_pool='avg', fc_norm=False"
    return ("import torch\n"
            "from timm.models.vision_transformer import VisionTransformer\n"
            f"model = VisionTransformer(img_size={tuple(vit.patch_embed.img_size)}, "
            f"patch_size={backbone.patch_size}, in_chans={vit.patch_embed.proj.in_channels}, num_classes=0, "
            f"embed_dim={backbone.feature_dim}, depth={len(vit.blocks)}, num_heads={vit.blocks[0].attn.num_heads}, "
            f"{pool}, dynamic_img_size=True, dynamic_img_pad=True)\n"
            f"model.load_state_dict(torch.load({file!r}))\n"
            "model.eval()\n")


def _portable_state(backbone: nn.Module) -> dict[str, torch.Tensor]:
    """The backbone's tensors under the names torchvision or timm give them (ours otherwise)."""
    from .models.vit import ViTBackbone

    state = {name: tensor.detach().contiguous().clone() for name, tensor in backbone.state_dict().items()}
    if isinstance(backbone, ViTBackbone):
        state = {name.removeprefix("vit."): tensor for name, tensor in state.items()}
    return state


def _sample_inputs(cfg: dict, norm, channels: int, size: int) -> tuple[torch.Tensor, str]:
    """The first eight normalised test images of the run's dataset (all, if fewer), or eight random inputs where
    they cannot be read."""
    from .data.datasets import dataset_info, load_split
    from .data.views import clean_view

    try:
        info = dataset_info(cfg["dataset"])
        split = "test" if "test" in info.splits else info.pretrain_split
        test = load_split(cfg["dataset"], split, cfg.get("data_dir"), None, cfg["seed"], cfg["data"])
        images = test.__getitems__(list(range(min(8, len(test)))))["image"]  # uint8, or float in [0, 1]
        return clean_view(images, norm), f"{len(images)} test images of {cfg['dataset']}"
    except (SelfSupError, KeyError, OSError, ValueError):
        return rng.randn((8, channels, size, size), rng.cpu_generator(0)), "8 random inputs (the run's data is not here)"


def export_backbone(run: str | Path, fmt: str, out: str | Path) -> dict:
    """Write the backbone of ``run`` (a run folder or a checkpoint) to ``out`` in ``fmt`` and
    ``out`` + ".json" beside it; returns that JSON's dict (with the check's largest difference)."""
    from .build import load_pretrained
    from .data.datasets import dataset_info
    from .rundir import checkpoint_of

    if fmt not in FORMATS:
        raise SelfSupError(f"unknown export format '{fmt}'; choose one of {', '.join(FORMATS)}")
    out = Path(out)
    if out.exists() or Path(f"{out}.json").exists():
        raise SelfSupError(f"{out} (or {out}.json) exists; export to a new file (nothing was overwritten)")
    if out.suffix == ".ckpt":
        raise SelfSupError(f"{out}: an export is not a checkpoint; give it its format's suffix (.pt, .safetensors, .onnx)")
    checkpoint = checkpoint_of(run)
    pretrained = load_pretrained(checkpoint)
    cfg, backbone = pretrained.cfg, pretrained.method.backbone.float().to(memory_format=torch.contiguous_format).eval()
    if dataset_info(cfg["dataset"]).modality != "image":
        raise SelfSupError("export handles image backbones; this run's is a series encoder")
    channels, size = cfg["data"]["channels"], cfg["data"]["image_size"]
    takes = backbone.conv1.in_channels if hasattr(backbone, "conv1") else backbone.vit.patch_embed.proj.in_channels
    if takes != channels:
        raise SelfSupError(f"this {cfg['method']} backbone takes {takes}-channel inputs, not the run's {channels}-channel "
                           "images: the method transforms its images before the backbone (DeepCluster's Sobel "
                           "filter, --set params.sobel=false to train without it), and an export holds the backbone alone")
    inputs, described = _sample_inputs(cfg, pretrained.norm, channels, size)
    with torch.no_grad():
        expected = backbone(inputs)
    recipe = torchvision_recipe(cfg, backbone, str(out)) if fmt == "torchvision" else \
        timm_recipe(backbone, str(out)) if fmt == "timm" else ""
    out.parent.mkdir(parents=True, exist_ok=True)
    info = {"format": fmt, "file": str(out), "checkpoint": str(checkpoint), "method": cfg["method"],
            "backbone": cfg["backbone"], "input": {"channels": channels, "image_size": size},
            "normalization": {"mean": list(pretrained.norm.mean), "std": list(pretrained.norm.std)},
            "feature_dim": int(expected.shape[1])}
    try:
        got = _write(fmt, backbone, inputs, out, recipe, info)
    except Exception:
        out.unlink(missing_ok=True)  # no half-written export is left behind
        raise
    difference = float((got - expected).abs().max()) if got is not None else None
    info["check"] = {"inputs": described, "max_abs_difference": difference}
    Path(f"{out}.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def _write(fmt: str, backbone: nn.Module, inputs: torch.Tensor, out: Path, recipe: str, info: dict) -> torch.Tensor | None:
    """Write ``out`` in ``fmt`` (the recipe into ``info``); the features of ``inputs`` computed
    from the file as it reads back (None where ONNX cannot be run here)."""
    from .models.vit import ViTBackbone

    if fmt == "onnx":
        return _export_onnx(backbone, inputs, out, info)
    if fmt in ("torchvision", "timm"):
        torch.save(_portable_state(backbone), out)
        info["recipe"] = recipe
        scope: dict = {}  # the file loaded as a user would: the recipe's lines
        exec(compile(recipe, f"<{fmt} recipe>", "exec"), scope)  # noqa: S102 - our own recipe, as users will run it
        with torch.no_grad():
            return scope["model"](inputs)
    from safetensors.torch import load_file, save_file

    vit = isinstance(backbone, ViTBackbone)
    names = "timm" if vit else "torchvision" if info["backbone"]["name"].startswith("resnet") else "selfsup"
    save_file(_portable_state(backbone), str(out), metadata={
        "selfsup": json.dumps({key: info[key] for key in ("method", "backbone", "input", "normalization")}),
        "names": names})
    info["recipe"] = ("from safetensors.torch import load_file\n"
                      f"state = load_file({str(out)!r})  # tensor names: {names}'s\n")
    copy = deepcopy(backbone)  # read back into the same network: every tensor, under the names written
    copy.load_state_dict({("vit." if vit else "") + name: tensor for name, tensor in load_file(str(out)).items()})
    with torch.no_grad():
        return copy(inputs)

def _export_onnx(backbone: nn.Module, inputs: torch.Tensor, out: Path, info: dict) -> torch.Tensor | None:
    """Write the ONNX graph; the features onnxruntime computes for ``inputs`` (None without onnxruntime)."""
    try:
        torch.onnx.export(backbone, (inputs,), str(out), input_names=["images"], output_names=["features"],
                          dynamic_axes={"images": {0: "batch"}, "features": {0: "batch"}}, dynamo=False)
    except Exception as exc:  # noqa: BLE001 - the exporter fails in many ways; none may leave a half file
        out.unlink(missing_ok=True)
        raise SelfSupError(f"ONNX export failed ({type(exc).__name__}: {exc})") from exc
    info["recipe"] = ("import onnxruntime\n"
                      f"session = onnxruntime.InferenceSession({str(out)!r})\n"
                      "features = session.run(['features'], {'images': images})[0]  # images: float32 [N, C, H, W]\n")
    try:
        import onnxruntime
    except ImportError:
        info["recipe"] += "# (not checked here: onnxruntime is not installed)\n"
        return None
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(["features"], {"images": inputs.numpy()})[0])

"""Vision transformer backbones: sizes, the token contract (kept and masked patches), per-block
features, weight-decay groups, and a run through the CLI that records the network's size."""
import functools
import json

import pytest
import torch
import yaml

from selfsup.config import resolve
from selfsup.errors import SelfSupError
from selfsup.methods import METHODS
from selfsup.methods.base import split_decay
from selfsup.models.backbones import VIT_BACKBONES, build_backbone, vit_size

SMALL = {"name": "vit", "width": 32, "depth": 2, "heads": 2}


def small_vit(channels: int = 1, image_size: int = 28, **changes):
    torch.manual_seed(0)
    return build_backbone({**SMALL, **changes}, channels, image_size).eval()


def test_sizes_named_and_derived():
    assert vit_size({"name": "vit-small", "width": 64}, 224) == {"width": 384, "depth": 12, "heads": 6, "patch_size": 16}
    assert vit_size({"name": "vit-tiny", "width": 64}, 28) == {"width": 192, "depth": 12, "heads": 3, "patch_size": 4}
    assert vit_size({"name": "vit", "width": 256}, 96) == {"width": 256, "depth": 6, "heads": 4, "patch_size": 8}
    assert vit_size({"name": "vit", "width": 32, "patch_size": 7}, 28)["heads"] == 1


def test_outputs_and_per_block_features():
    net = small_vit()
    x = torch.randn(3, 1, 28, 28)
    tokens = net.tokens(x)
    assert tokens.shape == (3, 1 + 49, 32) and net(x).shape == (3, 32) == (3, net.feature_dim)
    stages = net.forward_stages(x)
    assert len(stages) == 2 and net.layer_names == ["block1", "block2"] and net.stage_dims == [32, 32]
    assert torch.allclose(stages[-1], net(x), atol=1e-5)
    assert net(torch.randn(2, 1, 12, 12)).shape == (2, 32)  # a multi-crop local view: 9 patches
    assert net(torch.randn(2, 1, 30, 30)).shape == (2, 32)  # padded to 32 px: 64 patches


def test_kept_patches_carry_their_position_whatever_their_order():
    """Position embeddings are added before patches are dropped (MAE): passing every patch in
    a shuffled order gives the same [CLS] token as the full sequence."""
    net = small_vit()
    x = torch.randn(2, 1, 28, 28)
    shuffled = torch.stack([torch.randperm(49), torch.randperm(49)])
    assert torch.allclose(net.tokens(x, keep=shuffled)[:, 0], net(x), atol=1e-5)
    assert net.tokens(x, keep=shuffled[:, :12]).shape == (2, 13, 32)


def test_masked_patches_are_replaced_by_the_mask_token():
    net = small_vit()
    x = torch.randn(2, 1, 28, 28)
    mask = torch.zeros(2, 49, dtype=torch.bool)
    mask[:, :7] = True  # the first row of patches
    token = torch.randn(32)
    changed = x.clone()
    changed[:, :, :4] += 5.0  # the pixels under the mask only
    masked = net.tokens(x, mask=mask, mask_token=token)
    assert torch.allclose(net.tokens(changed, mask=mask, mask_token=token), masked, atol=1e-5)
    assert not torch.allclose(net.tokens(changed), net.tokens(x), atol=1e-3)
    assert torch.allclose(net.tokens(x, mask=torch.zeros_like(mask), mask_token=token), net.tokens(x), atol=1e-6)


def test_position_embeddings_and_class_token_take_no_weight_decay():
    net = small_vit()
    decay, no_decay = split_decay(net.parameters())
    no_decay_ids = {id(p) for p in no_decay["params"]}
    assert id(net.vit.pos_embed) in no_decay_ids and id(net.vit.cls_token) in no_decay_ids
    assert all(p.ndim >= 2 for p in decay["params"]) and no_decay["weight_decay"] == 0.0


def test_pretrain_on_a_vit_records_its_size_and_probes_each_block(tmp_path):
    from selfsup.config import resolve
    from selfsup.engine.train import pretrain

    cfg = resolve("simclr", flags={"dataset": "synthetic", "epochs": 1, "batch_size": 32,
                                   "backbone": {"name": "vit", "width": 16, "depth": 2}},
                  assignments=["trainer.progress_bar=false", "data.synthetic_size=64", "knn.every_n_epochs=0"])
    metrics = pretrain(cfg, tmp_path, probe_epochs=2, probe_layers=True)
    backbone = yaml.safe_load((tmp_path / "config.yaml").read_text())["backbone"]
    assert {k: backbone[k] for k in ("name", "width", "depth", "heads", "patch_size")} == {
        "name": "vit", "width": 16, "depth": 2, "heads": 1, "patch_size": 4}
    assert set(metrics["linear_layers"]) == {"block1", "block2"}

    from selfsup.cli import main

    out = tmp_path / "finetune.json"
    assert main(["evaluate", "finetune", "--checkpoint", str(tmp_path / "checkpoints" / "last.ckpt"), "--epochs", "1",
                 "--labels-per-class", "4", "--no-baselines", "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["layer_decay"] == 0.75 and 0 <= result["top1"] <= 1


def test_a_method_trains_on_its_default_named_vit_and_its_config_yaml_repeats_the_run(tmp_path):
    # MAE's packaged network is vit-tiny: the run records the size the name fixes (width 192, depth
    # 12, heads 3), which building the network and resolving RUN/config.yaml must accept
    from selfsup.build import load_pretrained
    from selfsup.engine.train import pretrain

    cfg = resolve("mae", flags={"dataset": "synthetic", "epochs": 1, "batch_size": 32},
                  assignments=["trainer.progress_bar=false", "data.synthetic_size=64", "knn.every_n_epochs=0",
                               "knn.final=false"])
    assert cfg["backbone"]["name"] == "vit-tiny"
    pretrain(cfg, tmp_path)
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert {k: saved["backbone"][k] for k in ("width", "depth", "heads")} == {"width": 192, "depth": 12, "heads": 3}
    assert resolve("mae", str(tmp_path / "config.yaml"))["backbone"] == saved["backbone"]
    assert len(load_pretrained(tmp_path / "checkpoints" / "last.ckpt").method.backbone.vit.blocks) == 12
    with pytest.raises(SelfSupError, match=r"backbone.depth \(6\) does not apply to vit-tiny"):
        build_backbone({**saved["backbone"], "depth": 6}, 3, 16)  # another depth than the name's: refused


def test_a_series_backbone_name_is_refused_for_images(tmp_path, capsys):
    from selfsup.cli import main

    assert main(["pretrain", "--method", "simclr", "--dataset", "synthetic", "--epochs", "1", "--backbone", "conv1d",
                 "--out", str(tmp_path / "run")]) != 0
    assert "vit-small" in capsys.readouterr().err  # the image backbones are listed


def test_layer_decay_scales_each_blocks_learning_rate_from_the_top():
    from torch import nn

    from selfsup.eval.finetune import layer_decay_groups

    net = small_vit()
    model = nn.ModuleDict({"backbone": net, "classifier": nn.Linear(32, 3)})
    groups = layer_decay_groups(model, net, "backbone.", 0.5)
    scale_of = {id(p): g["lr_scale"] for g in groups for p in g["params"]}
    assert scale_of[id(model["classifier"].weight)] == 1.0 and scale_of[id(net.vit.norm.weight)] == 1.0
    assert scale_of[id(net.vit.blocks[1].mlp.fc1.weight)] == 0.5  # the last of 2 blocks: one below the top
    assert scale_of[id(net.vit.blocks[0].attn.qkv.weight)] == 0.25
    assert scale_of[id(net.vit.pos_embed)] == scale_of[id(net.vit.patch_embed.proj.weight)] == 0.125
    assert len(scale_of) == sum(1 for p in model.parameters())
    assert [len(g["params"]) for g in layer_decay_groups(model, net, "backbone.", 1.0)] == [len(scale_of)]


@pytest.mark.parametrize("name", sorted(n for n, cls in METHODS.items()
                                        if resolve(n)["backbone"]["name"] in VIT_BACKBONES))
def test_vit_methods_train_a_step_under_bf16_autocast(name):
    """What ``trainer.precision=bf16-mixed`` runs: tokens in bf16 meet parameters in fp32 (MAE's
    decoder once scattered fp32 mask tokens with bf16 patches and crashed at its first step)."""
    from selfsup.data.views import Normalization, make_views
    from support import tiny

    method = tiny(name)
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
    batch = {"image": images, "label": torch.arange(8) % 6, "index": torch.arange(8)}
    method.generator = generator
    views = functools.partial(make_views, norm=Normalization((0.5,) * 3, (0.25,) * 3), generator=generator)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = method.training_step(method.prepare_batch(batch, views), 0)["loss"]
    loss.float().backward()
    assert torch.isfinite(loss)

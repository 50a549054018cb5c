"""iBOT: Zhou et al., "iBOT: Image BERT Pre-Training with Online Tokenizer", ICLR 2022.

DINO (its teacher, centring, sharpening, multi-crop, head and schedules: ``methods/dino.py``)
plus masked image modelling with the teacher as the tokenizer: each global crop reaches the
student with some of its patches replaced by a learned mask token, the teacher sees it whole,
and at every masked patch the student's output distribution must match the teacher's
(``ibot_patch``, with its own centre), added to DINO's [CLS] term (``dino``) with weight 1.  From
the paper (ViT-S/16): half of the images masked, each with a ratio drawn from 0.1-0.5 (the
paper's 0.3 ± 0.2) in BEiT's blocks (``mask_shape: block``; ``random`` draws the patches
uniformly, the paper's ablation), the head shared between [CLS] and patch tokens, its last
layer's row norms trained (``norm_last_layer: false``), global crops of 25-100% and 10 local
crops of 5-25% (its ViT-S/16 command), AdamW lr 5e-4·batch/256, weight decay 0.04 rising to 0.4
along a cosine, the teacher temperatures of DINO for both terms.  Our choice: 4096 outputs (the
paper: 8192).
"""
from __future__ import annotations

import torch

from ..losses import dino, dino_center, ibot_patch
from .dino import DINO
from .helpers import encode_by_resolution
from .masking import learned_token, varying_patch_mask


class IBOT(DINO):
    """iBOT (Zhou et al. 2022): DINO's [CLS] self-distillation plus self-distillation of masked patch tokens."""

    name = "ibot"
    needs_tokens = True
    # 2: blockwise masks (the paper's; 1: patches at random); 3: weight decay 0.04 -> 0.4 (cosine);
    # 4: its own crops (25-100%, 5-25%) and trained last-layer norms, DINO's revision 3
    revision = 4
    defaults = {**DINO.defaults, "local_crops": 10, "local_crop_scale": [0.05, 0.25], "norm_last_layer": False,
                "augment": {**DINO.defaults["augment"], "crop_scale": [0.25, 1.0]}, "mask_ratio": [0.1, 0.5],
                "mask_probability": 0.5, "mask_shape": "block", "patch_weight": 1.0}
    choices = {**DINO.choices, "mask_shape": ("block", "random")}
    limits = {**DINO.limits, "mask_probability": (0, 1), "patch_weight": (0, None)}

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        self.mask_token = learned_token(self.feature_dim)
        self.register_buffer("patch_center", torch.zeros(cfg["out_dim"]))

    def training_step(self, batch, step):
        cfg, crops = self.cfg, batch["views"]
        rows, cols = self.backbone.patch_grid(*crops[0].shape[-2:])
        masks = [varying_patch_mask(view.shape[0], rows, cols, cfg["mask_ratio"], cfg["mask_probability"],
                                    self.generator, view.device, cfg["mask_shape"]) for view in crops[:2]]
        student = [self.head(self.backbone.tokens(view, mask=mask, mask_token=self.mask_token))
                   for view, mask in zip(crops[:2], masks)]
        local = list(self.head(encode_by_resolution(self.backbone, crops[2:])).chunk(len(crops) - 2)) \
            if len(crops) > 2 else []
        with torch.no_grad():
            teacher = self.teacher_head(self.teacher_backbone.tokens(torch.cat(crops[:2]))).chunk(2)
        tau_t, tau_s = self.teacher_temperature(), cfg["student_temperature"]
        loss_cls = dino([s[:, 0] for s in student] + local, [t[:, 0] for t in teacher], self.center, tau_s, tau_t)
        loss_patch = ibot_patch([s[:, 1:] for s in student], [t[:, 1:] for t in teacher], masks, self.patch_center,
                                tau_s, tau_t)
        self.center.copy_(dino_center([t[:, 0] for t in teacher], self.center, cfg["center_momentum"]))
        self.patch_center.copy_(dino_center([t[:, 1:].flatten(0, 1) for t in teacher], self.patch_center,
                                            cfg["center_momentum"]))
        return {"loss": loss_cls + cfg["patch_weight"] * loss_patch, "loss_cls": loss_cls.detach(),
                "loss_patch": loss_patch.detach(), "teacher_temperature": tau_t}

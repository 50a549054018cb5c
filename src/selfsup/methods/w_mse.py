"""W-MSE: Ermolov, Siarohin, Sangineto, Sebe, "Whitening for Self-Supervised Representation
Learning", ICML 2021.

Each of ``positives`` views of an image goes through the backbone and a 2-layer head to a
narrow embedding (64 wide on CIFAR); ``w_mse`` whitens each view's embeddings within random
sub-batches of ``whiten_size`` images (Cholesky) and pulls an image's whitened, normalised
views together: whitening, not negatives, keeps the embeddings from collapsing.  From the
paper's CIFAR setting (official code): 2 views (W-MSE 2; 4 is the option), embedding 64,
sub-batches of 128, one whitening iteration, head hidden width 1024, Adam lr 3e-3 with weight
decay 1e-6, 500 warm-up iterations, crops of 20-100%, colour jitter (0.4, 0.4, 0.4, 0.1) with
p 0.8, greyscale 0.1.  Our choices: the learning rate falls on a cosine (the paper drops it
by 5× twice near the end) and the warm-up is 2 epochs.
"""
from __future__ import annotations

import torch

from ..data.augment import AugmentConfig, views
from ..data.views import ViewSpec
from ..errors import SelfSupError
from ..losses import w_mse
from ..models.heads import mlp
from .base import Method


class WMSE(Method):
    """W-MSE (Ermolov et al. 2021): MSE between views whitened within sub-batches."""

    name = "w-mse"
    defaults = {"positives": 2, "proj_dim": 64, "proj_hidden_dim": 1024, "whiten_size": 128, "whiten_iterations": 1,
                "eps": 0.0, "augment": views(crop_scale=(0.2, 1.0), grayscale_p=0.1, blur_p=0.0)}
    limits = {"positives": (2, None), "proj_dim": (1, None), "proj_hidden_dim": (1, None), "whiten_size": (2, None),
              "whiten_iterations": (1, None), "eps": (0, 1)}

    @classmethod
    def check_params(cls, params, run):
        super().check_params(params, run)
        if run.batch_size % params["whiten_size"] or params["whiten_size"] <= params["proj_dim"]:
            raise SelfSupError(f"w-mse whitens sub-batches of params.whiten_size={params['whiten_size']} images: the "
                               f"batch size ({run.batch_size}) must be a multiple of it and it must exceed "
                               f"params.proj_dim={params['proj_dim']} (the paper uses twice the width)")

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        self.projector = mlp(self.feature_dim, cfg["proj_hidden_dim"], cfg["proj_dim"])
        self.views = [ViewSpec(AugmentConfig(**cfg["augment"]), count=cfg["positives"])]

    def training_step(self, batch, step):
        embeddings = self.projector(self.backbone(torch.cat(batch["views"]))).chunk(self.cfg["positives"])
        return {"loss": w_mse(list(embeddings), self.cfg["whiten_size"], self.generator, self.cfg["whiten_iterations"],
                              self.cfg["eps"])}

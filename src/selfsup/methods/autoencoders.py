"""Autoencoding pretext tasks: the backbone encodes a damaged image and a small decoder
(``ImageDecoder``, from the pooled features) reconstructs what was lost.

Denoising autoencoder: Vincent, Larochelle, Bengio, Manzagol, ICML 2008.  The input is
corrupted by masking noise (a fraction ``noise`` of the pixels, default 0.25, set to 0 —
the dataset mean after normalisation) or by additive Gaussian noise (σ = ``noise`` in
normalised units); the loss is the mean squared error against the clean image over all
pixels.

Context encoder: Pathak, Krähenbühl, Donahue, Darrell, Efros, CVPR 2016.  A central square
of half the image side (a quarter of the area, as the paper's 64 px of 128) — or, with
``region: random``, random blocks covering about as much — is set to 0 and the
reconstruction error counts on the masked pixels only.  ``adversarial`` > 0 adds the
paper's adversarial term with that weight (the paper: 0.001, with 0.999 on the
reconstruction): a small convolutional discriminator learns to tell real masked regions
from reconstructed ones, and the encoder-decoder is trained to fool it; the discriminator's
own loss reaches only its parameters (it is applied with detached parameters in the
generator's term), so one optimiser serves both.
Masks and noise come from the method's generator.  Optimiser: Adam lr 1e-3 (our choice for
both; Pathak used Adam lr 2e-4 with a much larger network).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ..data.augment import AugmentConfig, crops_only
from ..data.views import ViewSpec
from ..errors import SelfSupError
from ..models.heads import ImageDecoder
from .base import Method
from .. import rng

CORRUPTIONS = ("masking", "gaussian")
REGIONS = ("center", "random")


class Autoencoder(Method):
    """Encoder (the backbone), decoder, and a ``damage`` each task defines."""

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        self.decoder = ImageDecoder(self.feature_dim, run.channels, run.image_size)
        self.views = [ViewSpec(AugmentConfig(**cfg["augment"]), count=1)]

    def draw(self, shape, kind: str, device) -> torch.Tensor:
        """Uniform ("rand") or normal ("randn") numbers from the method's generator."""
        return getattr(rng, kind)(shape, self.generator, device=device)

    def reconstruct(self, damaged: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.backbone(damaged))


class DenoisingAE(Autoencoder):
    """Denoising autoencoder (Vincent et al. 2008): reconstruct the clean image from a corrupted one."""

    name = "denoising-ae"
    defaults = {"corruption": "masking", "noise": 0.25, "augment": crops_only(0.6)}
    limits = {"noise": (0, None)}

    choices = {"corruption": CORRUPTIONS}

    @classmethod
    def check_params(cls, params, run):
        super().check_params(params, run)
        if params["corruption"] == "masking" and params["noise"] > 1:
            raise SelfSupError(f"params.noise is the fraction of masked pixels and must be in [0, 1], got {params['noise']}")

    def training_step(self, batch, step):
        (clean,) = batch["views"]
        if self.cfg["corruption"] == "masking":
            keep = self.draw((clean.shape[0], 1, *clean.shape[2:]), "rand", clean.device) >= self.cfg["noise"]
            damaged = clean * keep
        else:
            damaged = clean + self.cfg["noise"] * self.draw(clean.shape, "randn", clean.device)
        return {"loss": F.mse_loss(self.reconstruct(damaged), clean)}


class ContextEncoder(Autoencoder):
    """Context encoder (Pathak et al. 2016): inpaint a masked region, optionally adversarially."""

    name = "context-encoder"
    defaults = {"region": "center", "adversarial": 0.0, "augment": crops_only(0.6)}
    limits = {"adversarial": (0, 1)}
    choices = {"region": REGIONS}

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        if cfg["adversarial"]:
            width = 32
            self.discriminator = nn.Sequential(
                nn.Conv2d(run.channels, width, 3, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True),
                nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, 1))

    def mask(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 1, H, W], 1 where the region is hidden."""
        b, _, h, w = x.shape
        if self.cfg["region"] == "center":
            mask = torch.zeros(b, 1, h, w, device=x.device)
            mask[:, :, h // 4:h // 4 + h // 2, w // 4:w // 4 + w // 2] = 1
            return mask
        block = max(1, h // 4)  # 16 cells of a quarter side, a quarter of them hidden on average
        cells = (self.draw((b, 1, -(-h // block), -(-w // block)), "rand", x.device) < 0.25).float()
        return F.interpolate(cells, scale_factor=block, mode="nearest")[:, :, :h, :w]

    def training_step(self, batch, step):
        (clean,) = batch["views"]
        mask = self.mask(clean)
        filled = self.reconstruct(clean * (1 - mask))
        reconstruction = ((filled - clean) ** 2 * mask).sum() / (mask.sum() * clean.shape[1]).clamp(min=1)
        weight = self.cfg["adversarial"]
        if not weight:
            return {"loss": reconstruction}
        fake, real = filled * mask, clean * mask
        frozen = {name: p.detach() for name, p in self.discriminator.named_parameters()}
        fool = F.binary_cross_entropy_with_logits(functional_call(self.discriminator, frozen, (fake,)),
                                                  torch.ones(clean.shape[0], 1, device=clean.device))
        judge = (F.binary_cross_entropy_with_logits(self.discriminator(real), torch.ones(clean.shape[0], 1, device=clean.device))
                 + F.binary_cross_entropy_with_logits(self.discriminator(fake.detach()),
                                                      torch.zeros(clean.shape[0], 1, device=clean.device))) / 2
        return {"loss": (1 - weight) * reconstruction + weight * fool + judge,
                "reconstruction": reconstruction.detach(), "adversarial": fool.detach(), "discriminator": judge.detach()}

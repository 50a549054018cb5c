"""Contrastive learning with Gaussian view embeddings: DARe and SuperInfo.

Both encode two augmented views, predict a diagonal Gaussian per view with ``GaussianHead``
(μ, log σ², clamped to ±20 and ±10), draw z = μ + ε·σ (reparameterisation, ε from the
method's generator so that a resumed run draws the same noise) and add a divergence between
the two views' Gaussians to a contrastive loss of the samples over the global batch.

DARe (Tomer & Sharma, seed 002; DESIGN's method note): 256-d Gaussians, τ 0.5, loss
L_con + λ·JSD with λ 0.9.  L_con as the report writes it: one direction, the positive left
out of the denominator (``decoupled_nt_xent``); ``contrastive: nt_xent`` is the symmetric
SimCLR loss instead (our option).  The JSD is ``gaussian_jsd`` (moment-matched mixture),
summed over dimensions as the report's KL formula (1) sums.  Whether μ is L2-normalised for
the JSD is not in the report: ``normalize_mean`` (on by default: in benchmarks/ablations
the normalised means gave the better kNN and linear probe at λ 0.9; off is the formula as
written).  The report's optimiser: SGD lr 0.5 Nesterov,
cosine, batch 512 (lr scaled linearly from 512).

SuperInfo (Yu et al. 2024, seed 000): maximise J = I(z1; z2) − λa·I(v1; z1 | v2) −
λb·I(v2; z2 | v1).  The document gives no estimators; we use (DESIGN's method note):
I(z1; z2) ≥ log N − NT-Xent(z1, z2) (InfoNCE on the samples), so −I is NT-Xent up to a
constant; and, as in the multi-view information bottleneck (Federici et al. 2020), the
superfluous term I(v1; z1 | v2) = E[log p(z1|v1)/p(z1|v2)] ≤ KL(p(z1|v1) ‖ p(z2|v2)) when
the encoder of either view can stand in for the posterior given the other view, closed form
for Gaussians (``gaussian_kl``, summed over dimensions); symmetrically for the second term.
Loss = NT-Xent + λa·KL(p1 ‖ p2) + λb·KL(p2 ‖ p1).  λa = λb = 0 is plain SimCLR on Gaussian
samples.  Open in the document and chosen here: λa = λb = 0.01 (with summed KLs of 128
dimensions, about a unit weight on the per-dimension KL), τ 0.5, a 2-layer MLP to 128-d
Gaussians; Adam lr 1e-3 (the document's optimiser for ResNet-18 on CIFAR-10).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.augment import SIMCLR_VIEWS, AugmentConfig
from ..data.views import ViewSpec
from ..losses import decoupled_nt_xent, gaussian_jsd, gaussian_kl, nt_xent
from ..models.heads import GaussianHead
from .base import Method
from .. import rng


class GaussianContrastive(Method):
    """Two views → Gaussian head → reparameterised samples → NT-Xent + ``divergence``."""

    defaults = {"temperature": 0.5, "proj_hidden_dim": None, "proj_dim": 128, "augment": SIMCLR_VIEWS}
    limits = {"temperature": (1e-4, None), "proj_hidden_dim": (1, None), "proj_dim": (1, None)}

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        self.head = GaussianHead(self.feature_dim, cfg["proj_hidden_dim"] or self.feature_dim, cfg["proj_dim"])
        self.views = [ViewSpec(AugmentConfig(**cfg["augment"]), count=2)]

    def divergence(self, mu1, logvar1, mu2, logvar2) -> dict:
        raise NotImplementedError

    def training_step(self, batch, step):
        mu, logvar = self.head(self.backbone(torch.cat(batch["views"])))
        noise = rng.randn(mu.shape, self.generator).to(mu)
        z1, z2 = (mu + noise * (0.5 * logvar).exp()).chunk(2)
        contrastive = self.contrastive(z1, z2)
        (mu1, mu2), (logvar1, logvar2) = mu.chunk(2), logvar.chunk(2)
        terms = self.divergence(mu1, logvar1, mu2, logvar2)
        return {"loss": contrastive + sum(terms.values()), "contrastive": contrastive.detach(),
                **{name: value.detach() for name, value in terms.items()}}

    def contrastive(self, z1, z2) -> torch.Tensor:
        """The contrastive term on the samples (NT-Xent over the global batch)."""
        return nt_xent(z1, z2, self.cfg["temperature"], gather=True)


class DARe(GaussianContrastive):
    """DARe (Tomer & Sharma): decoupled contrastive loss on Gaussian samples + λ·JSD of the views' Gaussians.

    ``contrastive``: the report's one-way decoupled loss (default) or SimCLR's NT-Xent."""

    name = "dare"
    revision = 2  # 2: the report's one-way decoupled L_con, the JSD with the mean term, summed (1: NT-Xent,
                  # the JSD of normalised means without it, averaged over dimensions)
    defaults = {**GaussianContrastive.defaults, "proj_dim": 256, "lambd": 0.9, "contrastive": "decoupled",
                "normalize_mean": True}
    limits = {**GaussianContrastive.limits, "lambd": (0, None)}
    choices = {"contrastive": ("decoupled", "nt_xent"), "normalize_mean": (False, True)}

    def contrastive(self, z1, z2):
        if self.cfg["contrastive"] == "nt_xent":
            return super().contrastive(z1, z2)
        return decoupled_nt_xent(z1, z2, self.cfg["temperature"], gather=True)

    def divergence(self, mu1, logvar1, mu2, logvar2):
        if self.cfg["normalize_mean"]:
            mu1, mu2 = F.normalize(mu1, dim=1), F.normalize(mu2, dim=1)
        return {"jsd": self.cfg["lambd"] * gaussian_jsd(mu1, logvar1, mu2, logvar2)}


class SuperInfo(GaussianContrastive):
    """SuperInfo (Yu et al. 2024): InfoNCE minus λa, λb times KL bounds on superfluous information."""

    name = "superinfo"
    defaults = {**GaussianContrastive.defaults, "lambda_a": 0.01, "lambda_b": 0.01}
    limits = {**GaussianContrastive.limits, "lambda_a": (0, None), "lambda_b": (0, None)}

    def divergence(self, mu1, logvar1, mu2, logvar2):
        return {"kl_a": self.cfg["lambda_a"] * gaussian_kl(mu1, logvar1, mu2, logvar2),
                "kl_b": self.cfg["lambda_b"] * gaussian_kl(mu2, logvar2, mu1, logvar1)}

"""Projection and prediction heads."""
from __future__ import annotations

from torch import nn


def mlp(in_dim: int, hidden_dim: int, out_dim: int, layers: int = 2, batch_norm: bool = True,
        last_batch_norm: bool = False, activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """``layers`` linear layers with BatchNorm and ``activation`` between them (SimCLR/MoCo
    v2/BYOL heads: ReLU; MSN: GELU); ``last_batch_norm`` adds an affine-free BatchNorm on the
    output (SimSiam's and NNCLR's projectors; MoCo v3's, through BYOL's ``projection_batch_norm``)."""
    modules: list[nn.Module] = []
    dim = in_dim
    for _ in range(layers - 1):
        modules += [nn.Linear(dim, hidden_dim, bias=not batch_norm)]
        if batch_norm:
            modules.append(nn.BatchNorm1d(hidden_dim))
        modules.append(activation())
        dim = hidden_dim
    modules.append(nn.Linear(dim, out_dim, bias=not last_batch_norm))
    if last_batch_norm:
        modules.append(nn.BatchNorm1d(out_dim, affine=False))
    return nn.Sequential(*modules)


class GaussianHead(nn.Module):
    """An MLP predicting a diagonal Gaussian: ``(mu, logvar)``, each [B, out_dim], clamped to
    ±``mu_clamp`` and ±``logvar_clamp`` so that exp(logvar) stays finite (DARe, SuperInfo)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, mu_clamp: float = 20.0, logvar_clamp: float = 10.0):
        super().__init__()
        self.net = mlp(in_dim, hidden_dim, 2 * out_dim)
        self.mu_clamp, self.logvar_clamp = mu_clamp, logvar_clamp

    def forward(self, x):
        mu, logvar = self.net(x).chunk(2, dim=1)
        return mu.clamp(-self.mu_clamp, self.mu_clamp), logvar.clamp(-self.logvar_clamp, self.logvar_clamp)


class ImageDecoder(nn.Module):
    """A small decoder from a pooled feature vector back to a [C, size, size] image (the
    autoencoder pretext tasks): a linear layer to a 64-channel map of a quarter of the side,
    two stride-2 transposed convolutions with BatchNorm and ReLU, a 3×3 convolution to the
    image channels, and a final resize when the side is not a multiple of 4."""

    def __init__(self, in_dim: int, channels: int, size: int, width: int = 64):
        super().__init__()
        self.size, self.width, self.start = size, width, max(1, -(-size // 4))
        self.project = nn.Linear(in_dim, width * self.start ** 2)
        self.net = nn.Sequential(
            nn.ConvTranspose2d(width, width, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(width, width // 2, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(width // 2),
            nn.ReLU(inplace=True), nn.Conv2d(width // 2, channels, 3, padding=1))

    def forward(self, features):
        x = self.net(self.project(features).view(-1, self.width, self.start, self.start))
        if x.shape[-1] != self.size:
            x = nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return x

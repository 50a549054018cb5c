"""Backbones and heads."""
from .backbones import BACKBONES, ResNetBackbone, build_backbone
from .heads import mlp

__all__ = ["BACKBONES", "ResNetBackbone", "build_backbone", "mlp"]

"""Evaluation protocols shared by every method."""
from .baselines import encoder_knn, raw_pixel_knn
from .features import extract_features
from .knn import knn_predict, knn_top1
from .linear import train_linear_probe

__all__ = ["encoder_knn", "extract_features", "knn_predict", "knn_top1", "raw_pixel_knn", "train_linear_probe"]

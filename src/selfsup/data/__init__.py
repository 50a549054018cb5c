"""Datasets, batch augmentation and view pipelines."""
from .augment import AugmentConfig
from .datasets import DATASETS, collate_batch, dataset_info, load_split, normalization_for
from .views import Normalization, ViewSpec, clean_view, make_views

__all__ = ["AugmentConfig", "DATASETS", "Normalization", "ViewSpec", "clean_view", "collate_batch",
           "dataset_info", "load_split", "make_views", "normalization_for"]

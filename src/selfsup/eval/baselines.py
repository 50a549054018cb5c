"""Baselines reported beside every method: raw-pixel kNN and random-init backbone kNN."""
from __future__ import annotations

import torch

from ..data.views import Normalization
from ..errors import SelfSupError
from .features import extract_features, method_features
from .knn import knn_top1


def pixel_features(dataset, norm: Normalization, **options):
    """(flattened pixels scaled to [0, 1] and normalised with ``norm``, labels) of ``dataset``:
    the pixel baseline of every protocol; ``options`` go to ``extract_features``."""
    return extract_features(lambda x: x.flatten(1), dataset, norm, **options)


def raw_pixel_knn(bank, test, norm: Normalization, num_classes: int, k: int = 200, temperature: float = 0.1) -> float:
    """kNN top-1 on flattened pixels, scaled to [0, 1] and then normalised with ``norm``."""
    bank_x, bank_y = pixel_features(bank, norm)
    test_x, test_y = pixel_features(test, norm)
    return knn_top1(bank_x, bank_y, test_x, test_y, num_classes, k, temperature)


def encoder_knn(method: torch.nn.Module, bank, test, norm: Normalization, num_classes: int, k: int = 200,
                temperature: float = 0.1, device="cpu", channels_last: bool = False, progress: bool = False,
                batch_size: int = 512) -> float:
    """kNN top-1 of ``method.features`` (eval mode, see ``method_features``): the pretraining
    monitor, the final evaluation, ``selfsup evaluate knn``, the random-init baseline."""
    common = dict(device=device, channels_last=channels_last, progress=progress, batch_size=batch_size)
    bank_x, bank_y = method_features(method, bank, norm, desc="kNN bank", **common)
    test_x, test_y = method_features(method, test, norm, desc="kNN queries", **common)
    return knn_top1(bank_x, bank_y, test_x, test_y, num_classes, k, temperature)


def check_memory_bank(method: torch.nn.Module) -> None:
    """A clear error unless ``method`` keeps a memory bank and the embedding it stores."""
    if not hasattr(method, "memory") or not hasattr(method, "embed"):
        raise SelfSupError(f"{type(method).name} keeps no memory bank; --memory-bank is for instdisc")


def memory_bank_knn(method: torch.nn.Module, pretrain_split, test, norm: Normalization, num_classes: int,
                    k: int = 200, temperature: float = 0.1, **options) -> dict:
    """InstDisc's own evaluation beside the standard one, on the method's embeddings
    (``method.embed``): kNN of the test images against the memory bank (one stored embedding
    per pretraining image, no recomputation) and against fresh embeddings of the same images
    (clean views, eval mode).  ``pretrain_split`` must be the split the bank was filled from."""
    check_memory_bank(method)
    if len(pretrain_split) != method.memory.bank.shape[0]:
        raise SelfSupError(f"the memory bank holds {method.memory.bank.shape[0]} images, the pretraining split "
                           f"{len(pretrain_split)}")
    fresh, labels = method_features(method, pretrain_split, norm, encode=method.embed, desc="fresh embeddings", **options)
    queries, test_labels = method_features(method, test, norm, encode=method.embed, desc="test embeddings", **options)
    bank = method.memory.bank.float().cpu()
    return {"memory_bank_top1": knn_top1(bank, labels, queries, test_labels, num_classes, k, temperature),
            "fresh_embedding_top1": knn_top1(fresh, labels, queries, test_labels, num_classes, k, temperature)}

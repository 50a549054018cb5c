"""Weighted k-nearest-neighbour classification on L2-normalised features.

Protocol of Wu et al., "Unsupervised Feature Learning via Non-Parametric Instance
Discrimination" (CVPR 2018): cosine similarity, the k = 200 nearest training features vote
for their class with weight exp(similarity / T).  T = 0.1 is our default (as lightly's kNN
benchmarks); Wu et al. vote at their NCE temperature, 0.07.  Neighbour search uses faiss
(exact inner product).
"""
from __future__ import annotations

import faiss
import numpy as np
import torch
import torch.nn.functional as F


def knn_predict(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                num_classes: int, k: int = 200, temperature: float = 0.1) -> torch.Tensor:
    """Predicted class of each test feature."""
    bank = F.normalize(train_features.float(), dim=1).numpy()
    queries = F.normalize(test_features.float(), dim=1).numpy()
    k = min(k, bank.shape[0])
    index = faiss.IndexFlatIP(bank.shape[1])
    index.add(np.ascontiguousarray(bank))
    similarity, neighbours = index.search(np.ascontiguousarray(queries), k)
    weights = torch.exp(torch.from_numpy(similarity) / temperature)
    neighbour_labels = train_labels[torch.from_numpy(neighbours)]
    votes = torch.zeros(queries.shape[0], num_classes).scatter_add_(1, neighbour_labels, weights)
    return votes.argmax(1)


def knn_top1(train_features, train_labels, test_features, test_labels, num_classes: int,
             k: int = 200, temperature: float = 0.1) -> float:
    """Top-1 accuracy of the weighted kNN classifier, a fraction in [0, 1]."""
    predicted = knn_predict(train_features, train_labels, test_features, num_classes, k, temperature)
    return (predicted == test_labels).float().mean().item()

"""Image retrieval: each test image queries the training split by cosine similarity of its
features; a retrieved image is relevant when it has the query's class.

* ``precision_at_k``: the share of relevant images among the k nearest (faiss, exact).
* ``mean_average_precision``: the mean over queries of the average precision over the whole
  ranked training split (every relevant image counted), computed exactly in blocks of queries.
"""
from __future__ import annotations

import faiss
import numpy as np
import torch
import torch.nn.functional as F


def precision_at_k(bank: torch.Tensor, bank_labels: torch.Tensor, queries: torch.Tensor, query_labels: torch.Tensor,
                   ks: list[int]) -> tuple[dict, torch.Tensor]:
    """{k: precision@k} and the indices of each query's max(ks) nearest bank images."""
    bank_n = np.ascontiguousarray(F.normalize(bank.float(), dim=1).numpy())
    index = faiss.IndexFlatIP(bank_n.shape[1])
    index.add(bank_n)
    _, neighbours = index.search(np.ascontiguousarray(F.normalize(queries.float(), dim=1).numpy()), max(ks))
    neighbours = torch.from_numpy(neighbours)
    hits = (bank_labels[neighbours] == query_labels[:, None]).float()
    return {k: hits[:, :k].mean().item() for k in ks}, neighbours


def mean_average_precision(bank: torch.Tensor, bank_labels: torch.Tensor, queries: torch.Tensor,
                           query_labels: torch.Tensor, block: int = 256) -> float:
    """Mean over queries of AP = mean over the relevant images of the precision at their rank."""
    bank_n, queries_n = F.normalize(bank.float(), dim=1), F.normalize(queries.float(), dim=1)
    ranks = torch.arange(1, bank.shape[0] + 1, dtype=torch.float32)
    total = 0.0
    for start in range(0, queries.shape[0], block):
        similarity = queries_n[start:start + block] @ bank_n.T
        order = similarity.argsort(dim=1, descending=True)
        relevant = (bank_labels[order] == query_labels[start:start + block, None]).float()
        precision = relevant.cumsum(1) / ranks
        total += ((precision * relevant).sum(1) / relevant.sum(1).clamp_min(1)).sum().item()
    return total / queries.shape[0]


def retrieval_scores(bank, bank_labels, queries, query_labels, ks: list[int]) -> dict:
    """precision@k for each k (keyed by str(k), as in the JSON result) and mAP."""
    precision, _ = precision_at_k(bank, bank_labels, queries, query_labels, ks)
    return {"precision_at_k": {str(k): value for k, value in precision.items()},
            "mean_average_precision": mean_average_precision(bank, bank_labels, queries, query_labels)}


def retrieval_grid(path, query_images: torch.Tensor, neighbour_images: torch.Tensor, relevant: torch.Tensor,
                   title: str) -> None:
    """A PNG grid: one row per query (first column), then its nearest training images, framed
    green when of the query's class and red otherwise (grey where ``relevant`` is None: no labels).  Images are uint8 [N, C, H, W]; series
    [N, C, T] are drawn as curves, one per channel."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = neighbour_images.shape[:2]
    fig, axes = plt.subplots(rows, cols + 1, figsize=(1.1 * (cols + 1), 1.1 * rows + 0.4), squeeze=False)
    for r in range(rows):
        cells = [(query_images[r], "black")] + [
            (neighbour_images[r, c], "grey" if relevant is None else "green" if relevant[r, c] else "red")
            for c in range(cols)]
        for c, (image, colour) in enumerate(cells):
            ax = axes[r, c]
            if image.dim() == 2:
                ax.plot(image.T.numpy(), linewidth=0.8)
            else:
                if image.shape[0] not in (1, 3):  # multi-channel arrays: their channel mean
                    image = image.float().mean(0, keepdim=True)
                picture = image.permute(1, 2, 0).numpy()
                ax.imshow(picture[..., 0] if picture.shape[-1] == 1 else picture, cmap="gray")
            ax.set_xticks([]), ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_color(colour)
                spine.set_linewidth(2.5)
    axes[0, 0].set_title("query", fontsize=8)
    for c in range(1, cols + 1):
        axes[0, c].set_title(f"#{c}", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

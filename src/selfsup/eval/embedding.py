"""2-D maps of features coloured by class: t-SNE (scikit-learn; perplexity 30, PCA
initialisation) and UMAP (umap-learn; 15 neighbours, min_dist 0.1, cosine metric), both
seeded.  Features are L2-normalised first, as every other protocol compares them by cosine.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

PROJECTIONS = ("tsne", "umap")


def project(features: torch.Tensor, how: str, seed: int = 0) -> np.ndarray:
    """[N, 2] coordinates of ``features`` by ``how`` (tsne or umap)."""
    x = F.normalize(features.float(), dim=1).numpy()
    if how == "tsne":
        from sklearn.manifold import TSNE
        return TSNE(n_components=2, perplexity=min(30.0, (len(x) - 1) / 3), init="pca", random_state=seed).fit_transform(x)
    import warnings

    with warnings.catch_warnings():  # umap warns that a fixed seed disables its parallelism
        warnings.simplefilter("ignore")
        import umap
        return umap.UMAP(n_neighbors=min(15, len(x) - 1), min_dist=0.1, metric="cosine",
                         random_state=seed).fit_transform(x)


def embedding_plot(path, coordinates: np.ndarray, labels: np.ndarray, title: str,
                   class_names: tuple[str, ...] = ()) -> None:
    """Scatter plot of ``coordinates`` coloured by ``labels``, with a class legend (a label's
    name beside it where ``class_names`` has one)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    classes = np.unique(labels)  # one class, -1, where the images are unlabelled: one colour, no legend
    colours = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for i, c in enumerate(classes):
        points = coordinates[labels == c]
        ax.scatter(points[:, 0], points[:, 1], s=4, color=colours(i % colours.N), alpha=0.7,
                   label=f"{c}: {class_names[c]}" if 0 <= c < len(class_names) else str(c))
    ax.set_xticks([]), ax.set_yticks([])
    ax.set_title(title, fontsize=10)
    if len(classes) <= 20 and classes.min() >= 0:
        ax.legend(title="class", fontsize=7, markerscale=3, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

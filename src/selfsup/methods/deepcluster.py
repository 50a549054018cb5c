"""DeepCluster: Caron et al., "Deep Clustering for Unsupervised Learning of Visual Features",
ECCV 2018.

At the start of every epoch the whole training set is embedded (clean images, eval mode),
the embeddings are reduced by PCA to 256 dimensions with whitening, L2-normalised and
clustered by k-means (faiss, 20 iterations; faiss re-seeds empty centroids by splitting large
clusters).  The cluster indices become the epoch's pseudo-labels, images are sampled
uniformly over clusters, and the classifier on top is re-initialised (with fresh optimiser
state) because cluster indices carry no meaning from one epoch to the next.  Paper defaults:
Sobel filtering of the input, k = 10 × the number of classes (10000 for ImageNet), SGD lr 0.05,
momentum 0.9, weight decay 1e-5.  Our choices: for a ResNet the clustered features are those
of a 2-layer MLP head (the counterpart of AlexNet's fc6-fc7) over the pooled backbone
features; the augmentation is crop + flip, as in the paper.  Each epoch logs the NMI between
consecutive assignments and against the true labels.
"""
from __future__ import annotations

import dataclasses

import faiss
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import normalized_mutual_info_score
from torch import nn
from torch.utils.data import DataLoader

from ..data.augment import AugmentConfig
from ..data.datasets import collate_batch
from ..data.samplers import UniformLabelBatchSampler
from ..data.views import ViewSpec
from ..errors import SelfSupError
from ..models.heads import mlp
from .base import Method


def kmeans_assign(features: torch.Tensor, k: int, seed: int, pca_dim: int | None = 256, iterations: int = 20,
                  whiten: bool = True) -> torch.Tensor:
    """Cluster index of each row: PCA (whitened, to ``pca_dim``; None: no PCA), L2
    normalisation, then faiss k-means with ``seed``."""
    x = np.ascontiguousarray(features.float().cpu().numpy())
    if pca_dim:
        pca = faiss.PCAMatrix(x.shape[1], min(pca_dim, x.shape[1]), -0.5 if whiten else 0.0)
        pca.epsilon = 1e-5 * float(x.var(0).sum())  # whitening must not divide by the zero variance of dead units
        pca.train(x)
        x = pca.apply(x)
    x = np.ascontiguousarray(x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12), dtype=np.float32)
    kmeans = faiss.Kmeans(x.shape[1], k, niter=iterations, seed=seed, max_points_per_centroid=10_000_000)
    kmeans.train(x)
    _, assignment = kmeans.index.search(x, 1)
    return torch.from_numpy(assignment[:, 0].astype(np.int64))


class Sobel(nn.Module):
    """Fixed Sobel filters on the grey level: [B, C, H, W] -> [B, 2, H, W] (DeepCluster's input)."""

    def __init__(self):
        super().__init__()
        gx = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
        self.register_buffer("kernel", torch.stack([gx, gx.T]).unsqueeze(1), persistent=False)

    def forward(self, x):
        return F.conv2d(x.mean(1, keepdim=True), self.kernel.to(x.dtype), padding=1)


class DeepCluster(Method):
    """DeepCluster (Caron et al. 2018): k-means pseudo-labels each epoch, re-initialised classifier."""

    name = "deepcluster"
    defaults = {"num_clusters": None, "pca_dim": 256, "kmeans_iterations": 20, "sobel": True,
                "head_hidden_dim": None, "augment": {}}
    limits = {"num_clusters": (2, None), "pca_dim": (1, None), "kmeans_iterations": (1, None),
              "head_hidden_dim": (1, None)}

    @classmethod
    def check_params(cls, params, run):
        super().check_params(params, run)
        if params.get("num_clusters") and run.train_size and params["num_clusters"] > run.train_size:
            raise SelfSupError(f"params.num_clusters={params['num_clusters']} is more clusters than the "
                               f"{run.train_size} training images; lower it (null: 10 x the classes)")

    @classmethod
    def build_backbone(cls, cfg, run):
        sobel = cfg["params"]["sobel"]
        return super().build_backbone(cfg, dataclasses.replace(run, channels=2) if sobel else run)

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        self.input_filter = Sobel() if cfg["sobel"] else nn.Identity()
        width = cfg["head_hidden_dim"] or self.feature_dim
        self.head = nn.Sequential(mlp(self.feature_dim, width, width), nn.ReLU())
        self.num_clusters = cfg["num_clusters"] or min(10 * (run.num_classes or 10), run.train_size)
        self.classifier = nn.Linear(width, self.num_clusters)
        self.register_buffer("assignment", torch.zeros(run.train_size, dtype=torch.long))
        self.views = [ViewSpec(AugmentConfig(**cfg["augment"]), count=1)]

    def features(self, x):
        return self.backbone(self.input_filter(x))

    def feature_layers(self, x):
        return self.backbone.forward_stages(self.input_filter(x))

    def train_loader(self, dataset, batch_size, seed):
        sampler = UniformLabelBatchSampler(lambda: self.assignment, len(dataset), batch_size, seed)
        return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_batch)

    def on_epoch_start(self, epoch, embed):
        features, labels = embed(lambda x: self.head(self.features(x)))
        seed = int(torch.randint(2**31 - 1, (1,), generator=self.generator, device=self.generator.device))
        new = kmeans_assign(features, self.num_clusters, seed, self.cfg["pca_dim"], self.cfg["kmeans_iterations"])
        previous = self.assignment.cpu().numpy()
        stats = {"clusters_used": float(len(new.unique())),
                 "nmi_true_labels": normalized_mutual_info_score(labels.numpy(), new.numpy())}
        if epoch > 0:
            stats["nmi_previous"] = normalized_mutual_info_score(previous, new.numpy())
        self.assignment.copy_(new.to(self.assignment.device))
        self.reinitialize(self.classifier)
        return stats

    def training_step(self, batch, step):
        (view,) = batch["views"]
        logits = self.classifier(self.head(self.features(view)))
        return {"loss": F.cross_entropy(logits, self.assignment[batch["index"]])}

"""DeepCluster: Caron et al., "Deep Clustering for Unsupervised Learning of Visual Features",
ECCV 2018.

At the start of every epoch the whole training set is embedded (clean images, eval mode),
the embeddings are reduced by PCA to 256 dimensions with whitening, L2-normalised and
clustered by k-means (faiss, 20 iterations; faiss re-seeds empty centroids by splitting large
clusters).  The cluster indices become the epoch's pseudo-labels, images are sampled
uniformly over clusters, and the classifier on top is re-initialised (weights N(0, 0.01), zero
bias, fresh optimiser state) because cluster indices carry no meaning from one epoch to the
next.  As in the
reference code, the features clustered are the head's before its final ReLU, which training
applies.  Paper defaults:
Sobel filtering of the input, k = 10 × the number of classes (10000 for ImageNet), SGD lr 0.05,
momentum 0.9, weight decay 1e-5.  Our choices: for a ResNet the clustered features are those
of a 2-layer MLP head (the counterpart of AlexNet's fc6-fc7) over the pooled backbone
features; the augmentation is crop + flip, as in the paper.  Each epoch logs the NMI between
consecutive assignments and against the true labels.  The classifier steps with the network's
momentum, where the reference code gives it its own SGD without momentum: on our epochs of a
few hundred steps (the code's: thousands), a classifier without momentum barely fits the new
clusters before they change (the learning test's budget shows it), so we keep the momentum.

DeepCluster-v2 (Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster
Assignments", NeurIPS 2020, appendix): no PCA and no Sobel; k-means (10 iterations) on the
L2-normalised output of a 2-layer MLP projector (128-d), whose centroids become fixed
prototypes; each view's embedding is classified against them (softmax at τ 0.1) with the
image's cluster as the label; ordinary shuffled sampling.  From the paper: LARS (adapting and
decaying every parameter, as the code's LARC), τ 0.1, 128-d
projections, multi-crop and 3 × 3000 prototypes on ImageNet; spherical k-means (centroids
re-normalised at every iteration, as the reference code does), so that the assignment and the
prototypes' softmax agree on which centroid is nearest.  Our choices: one set of k = 10 ×
the classes prototypes, the two global views only, and the epoch's features computed by the
epoch-start pass over clean images (the paper reuses the previous epoch's crop embeddings).
"""
from __future__ import annotations

import dataclasses

import faiss
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import normalized_mutual_info_score
from torch import nn

from ..data.augment import SWAV_VIEWS, AugmentConfig, crops_only
from ..data.samplers import UniformLabelBatchSampler
from ..data.views import ViewSpec
from ..errors import SelfSupError
from ..models.heads import mlp
from .base import Method, one_group
from .. import rng


def kmeans_assign(features: torch.Tensor, k: int, seed: int, pca_dim: int | None = 256, iterations: int = 20,
                  whiten: bool = True, spherical: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(cluster index of each row, [k, d'] centroids): PCA (whitened, to ``pca_dim``; None: no
    PCA), L2 normalisation, then faiss k-means with ``seed``; the centroids live in the space
    that was clustered.  ``spherical`` re-normalises the centroids after every iteration
    (spherical k-means: each point goes to the centroid of highest cosine similarity, the
    rule the prototypes then apply in training)."""
    x = np.ascontiguousarray(features.float().cpu().numpy())
    if pca_dim:
        pca = faiss.PCAMatrix(x.shape[1], min(pca_dim, x.shape[1]), -0.5 if whiten else 0.0)
        pca.epsilon = 1e-5 * float(x.var(0).sum())  # whitening must not divide by the zero variance of dead units
        pca.train(x)
        # faiss's float32 eigen-decomposition can leave those null directions slightly negative:
        # lift every eigenvalue above zero before the whitening is set up
        lowest = float(faiss.vector_to_array(pca.eigenvalues).min())
        if lowest + pca.epsilon <= 0:
            pca.epsilon -= lowest
            pca.prepare_Ab()
        x = pca.apply(x)
    x = np.ascontiguousarray(x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12), dtype=np.float32)
    kmeans = faiss.Kmeans(x.shape[1], k, niter=iterations, seed=seed, max_points_per_centroid=10_000_000,
                          spherical=spherical)
    kmeans.train(x)
    _, assignment = kmeans.index.search(x, 1)
    return torch.from_numpy(assignment[:, 0].astype(np.int64)), torch.from_numpy(kmeans.centroids.copy())


class Sobel(nn.Module):
    """Fixed Sobel filters on the grey level: [B, C, H, W] -> [B, 2, H, W] (DeepCluster's input)."""

    def __init__(self):
        super().__init__()
        gx = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
        self.register_buffer("kernel", torch.stack([gx, gx.T]).unsqueeze(1), persistent=False)

    def forward(self, x):
        return F.conv2d(x.mean(1, keepdim=True), self.kernel.to(x.dtype), padding=1)


class Clustering(Method):
    """What DeepCluster v1 and v2 share: a ``[train_size]`` pseudo-label buffer refreshed at
    every epoch start by k-means on ``cluster_features`` of the whole training set, with the
    statistics (clusters used, NMI against the previous assignment and the true labels)."""

    defaults = {"num_clusters": None, "pca_dim": 256, "kmeans_iterations": 20}
    limits = {"num_clusters": (2, None), "pca_dim": (1, None), "kmeans_iterations": (1, None)}

    @classmethod
    def check_params(cls, params, run):
        super().check_params(params, run)
        if params.get("num_clusters") and run.train_size and params["num_clusters"] > run.train_size:
            raise SelfSupError(f"params.num_clusters={params['num_clusters']} is more clusters than the "
                               f"{run.train_size} training images; lower it (null: 10 x the classes)")

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        self.num_clusters = cfg["num_clusters"] or min(10 * (run.num_classes or 10), run.train_size)
        self.register_buffer("assignment", torch.zeros(run.train_size, dtype=torch.long))

    def cluster_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    #: cluster by cosine similarity with unit centroids (DeepCluster-v2) rather than L2 k-means
    spherical: bool = False

    def recluster(self, epoch: int, embed) -> tuple[dict, torch.Tensor]:
        """New pseudo-labels in ``assignment``; returns (statistics, centroids)."""
        features, labels = embed(self.cluster_features)
        seed = int(rng.randint(0, 2**31 - 1, 1, self.generator)[0])
        new, centroids = kmeans_assign(features, self.num_clusters, seed, self.cfg["pca_dim"],
                                       self.cfg["kmeans_iterations"], spherical=self.spherical)
        stats = {"clusters_used": float(len(new.unique())),
                 "nmi_true_labels": normalized_mutual_info_score(labels.numpy(), new.numpy())}
        if epoch > 0:
            stats["nmi_previous"] = normalized_mutual_info_score(self.assignment.cpu().numpy(), new.numpy())
        self.assignment.copy_(new.to(self.assignment.device))
        return stats, centroids


class TopLayer(nn.Linear):
    """DeepCluster's classifier: weights N(0, 0.01) and a zero bias at every (re)initialisation."""

    def reset_parameters(self):
        nn.init.normal_(self.weight, std=0.01)
        nn.init.zeros_(self.bias)


class DeepCluster(Clustering):
    """DeepCluster (Caron et al. 2018): k-means pseudo-labels each epoch, re-initialised classifier."""

    name = "deepcluster"
    # 2: weight decay on every parameter, as the reference code; 3: constant learning rate, as the paper;
    # 4: clusters the head's output before its final ReLU, classifier reset to N(0, 0.01) (the code)
    revision = 4
    defaults = {**Clustering.defaults, "sobel": True, "head_hidden_dim": None, "augment": crops_only(0.08)}
    limits = {**Clustering.limits, "head_hidden_dim": (1, None)}

    @classmethod
    def build_backbone(cls, cfg, run):
        sobel = cfg["params"]["sobel"]
        return super().build_backbone(cfg, dataclasses.replace(run, channels=2) if sobel else run)

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        self.input_filter = Sobel() if cfg["sobel"] else nn.Identity()
        width = cfg["head_hidden_dim"] or self.feature_dim
        self.head = nn.Sequential(mlp(self.feature_dim, width, width), nn.ReLU())
        self.classifier = TopLayer(width, self.num_clusters)
        self.views = [ViewSpec(AugmentConfig(**cfg["augment"]), count=1)]

    def features(self, x):
        return self.backbone(self.input_filter(x))

    def feature_layers(self, x):
        return self.backbone.forward_stages(self.input_filter(x))

    def cluster_features(self, x):
        return self.head[0](self.features(x))  # before the head's final ReLU

    def train_batches(self, dataset, batch_size, seed):
        return dataset, UniformLabelBatchSampler(lambda: self.assignment, len(dataset), batch_size, seed)

    def on_epoch_start(self, epoch, embed):
        stats, _ = self.recluster(epoch, embed)
        self.reinitialize(self.classifier)
        return stats

    def training_step(self, batch, step):
        (view,) = batch["views"]
        logits = self.classifier(self.head(self.features(view)))
        return {"loss": F.cross_entropy(logits, self.assignment[batch["index"]])}


class DeepClusterV2(Clustering):
    """DeepCluster-v2 (Caron et al. 2020): k-means centroids of projected embeddings as fixed prototypes."""

    name = "deepcluster-v2"
    # 2: spherical k-means (1: L2 k-means on unnormalised centroids); 3: LARS adapts and decays
    # every parameter (the reference code's LARC over all of them; 2: biases and norms left out)
    revision = 3
    spherical = True
    defaults = {**Clustering.defaults, "pca_dim": None, "kmeans_iterations": 10, "temperature": 0.1,
                "proj_hidden_dim": None, "proj_dim": 128, "augment": SWAV_VIEWS}
    limits = {**Clustering.limits, "temperature": (1e-4, None), "proj_hidden_dim": (1, None), "proj_dim": (1, None)}

    def __init__(self, backbone, cfg, run):
        super().__init__(backbone, cfg, run)
        self.projector = mlp(self.feature_dim, cfg["proj_hidden_dim"] or self.feature_dim, cfg["proj_dim"])
        self.register_buffer("prototypes", F.normalize(torch.randn(self.num_clusters, cfg["proj_dim"]), dim=1))
        self.views = [ViewSpec(AugmentConfig(**cfg["augment"]), count=2)]

    def cluster_features(self, x):
        return F.normalize(self.projector(self.features(x)), dim=1)

    def on_epoch_start(self, epoch, embed):
        stats, centroids = self.recluster(epoch, embed)
        self.prototypes.copy_(F.normalize(centroids, dim=1).to(self.prototypes))
        return stats

    def parameter_groups(self):
        return one_group(self)

    def training_step(self, batch, step):
        z = F.normalize(self.projector(self.backbone(torch.cat(batch["views"]))), dim=1)
        logits = z @ self.prototypes.T / self.cfg["temperature"]
        labels = self.assignment[batch["index"]].repeat(len(batch["views"]))
        return {"loss": F.cross_entropy(logits, labels)}

"""SimCLR in your own PyTorch loop, with selfsup's pieces: data, views, backbone, head, loss.

    python examples/own_loop.py                      # Fashion-MNIST, 300 steps (a few minutes on a CPU)
    python examples/own_loop.py --dataset synthetic --steps 20

Prints the kNN top-1 of the backbone's features before and after training.  The same pieces
serve a Lightning module: ``make_views`` and the loss in ``training_step``.
"""
import argparse

import torch

from selfsup.data.augment import AugmentConfig
from selfsup.data.datasets import load_split, normalization_for
from selfsup.data.samplers import ShuffleBatchSampler
from selfsup.data.views import ViewSpec, clean_view, make_views
from selfsup.eval.knn import knn_top1
from selfsup.losses import nt_xent
from selfsup.models.backbones import build_backbone
from selfsup.models.heads import mlp

parser = argparse.ArgumentParser()
parser.add_argument("--dataset", default="fashion-mnist")
parser.add_argument("--steps", type=int, default=300)
parser.add_argument("--batch-size", type=int, default=256)
args = parser.parse_args()
torch.manual_seed(0)

train = load_split(args.dataset, "train", subset=5000 if args.dataset == "fashion-mnist" else None)
test = load_split(args.dataset, "test", subset=2000 if args.dataset == "fashion-mnist" else None)
norm = normalization_for(args.dataset, train.channels)
backbone = build_backbone({"name": "resnet18", "width": 32, "small_stem": True}, train.channels, train.image_size)
head = mlp(backbone.feature_dim, 512, 128)
optimizer = torch.optim.Adam([*backbone.parameters(), *head.parameters()], lr=1e-3)
views = [ViewSpec(AugmentConfig(crop_scale=(0.2, 1.0)), count=2)]
generator = torch.Generator().manual_seed(0)


@torch.no_grad()
def knn() -> float:
    backbone.eval()
    features = [backbone(clean_view(d.images, norm)) for d in (train, test)]
    backbone.train()
    return knn_top1(features[0], train.labels, features[1], test.labels, train.num_classes, k=20)


print(f"kNN top-1 before training: {knn():.3f}")
sampler = ShuffleBatchSampler(len(train), args.batch_size, seed=0)
step = 0
while step < args.steps:
    for indices in sampler:
        x1, x2 = make_views(train.images[indices], views, norm, generator)
        loss = nt_xent(head(backbone(x1)), head(backbone(x2)), temperature=0.2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
        if step % 50 == 0 or step == args.steps:
            print(f"step {step}: loss {loss.item():.3f}")
        if step == args.steps:
            break
    sampler.set_epoch(sampler.epoch + 1)
print(f"kNN top-1 after training: {knn():.3f}")

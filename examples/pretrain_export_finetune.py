"""Pretrain with selfsup, export the backbone, and fine-tune it in plain torchvision.

    python examples/pretrain_export_finetune.py --out runs/example       # Fashion-MNIST, ~10 min on a CPU
    python examples/pretrain_export_finetune.py --out /tmp/ex --dataset synthetic --epochs 1 --labelled 200

The fine-tuning half's model owes nothing to selfsup (only the images come from its loader): it
rebuilds ``torchvision.models.resnet18`` with the small stem the export's recipe describes, loads
the weights, and trains it on labelled images.
"""
import argparse
import json
from pathlib import Path

import torch
from torch import nn

import selfsup
from selfsup.data.datasets import load_split

parser = argparse.ArgumentParser()
parser.add_argument("--out", required=True)
parser.add_argument("--dataset", default="fashion-mnist")
parser.add_argument("--epochs", type=int, default=10)
parser.add_argument("--labelled", type=int, default=1000, help="labelled training images for fine-tuning")
args = parser.parse_args()
torch.manual_seed(0)
out = Path(args.out)

# 1. pretrain (a run directory, as `selfsup pretrain` writes it) and export for torchvision
metrics = selfsup.pretrain("simclr", out=out / "run", dataset=args.dataset, epochs=args.epochs, batch_size=256,
                           subset=10000 if args.dataset == "fashion-mnist" else None)
print(f"pretrained: kNN top-1 {metrics['knn_top1']:.3f}")
info = selfsup.export_backbone(out / "run", "torchvision", out / "resnet18.pt")
print(f"exported, largest difference {info['check']['max_abs_difference']:.1e}; recipe:\n{info['recipe']}")

# 2. fine-tune in torchvision: what the recipe says, written out
import torchvision  # noqa: E402

network = torchvision.models.resnet18(num_classes=10)
network.conv1 = nn.Conv2d(info["input"]["channels"], 64, 3, 1, 1, bias=False)
network.maxpool = nn.Identity()
network.fc = nn.Identity()
network.load_state_dict(torch.load(out / "resnet18.pt", weights_only=True))
network.fc = nn.Linear(info["feature_dim"], 10)
mean = torch.tensor(info["normalization"]["mean"]).view(1, -1, 1, 1)
std = torch.tensor(info["normalization"]["std"]).view(1, -1, 1, 1)


def inputs(images: torch.Tensor) -> torch.Tensor:
    return (images.float() / 255 - mean) / std


train = load_split(args.dataset, "train", subset=args.labelled, seed=1)
test = load_split(args.dataset, "test")
optimizer = torch.optim.Adam(network.parameters(), lr=1e-4)
network.train()
for epoch in range(5):
    for batch in torch.randperm(len(train)).split(64):
        loss = nn.functional.cross_entropy(network(inputs(train.images[batch])), train.labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
network.eval()
with torch.no_grad():
    predicted = torch.cat([network(inputs(images)).argmax(1) for images in test.images.split(500)])
accuracy = (predicted == test.labels).float().mean().item()
print(f"fine-tuned on {len(train)} labels: test top-1 {accuracy:.3f}")
(out / "finetune.json").write_text(json.dumps({"labelled": len(train), "test_top1": accuracy}) + "\n")

"""``selfsup evaluate``: run one protocol on a checkpoint and write its JSON result."""
from __future__ import annotations

import time

import torch
from pathlib import Path

from ..data.datasets import balanced_subset_indices, dataset_info, load_split, normalization_for
from ..errors import SelfSupError
from ..io import write_json
from .baselines import check_memory_bank, encoder_knn, memory_bank_knn
from .diagnostics import embedding_diagnostics
from .linear import linear_probe


def _evaluation_data(args, cfg: dict, labelled: bool = True):
    """Train and test splits of the evaluation dataset (``labelled``: required to have class
    labels), checked against the model."""
    dataset = args.dataset or cfg["dataset"]
    same = dataset == cfg["dataset"]
    data_dir = args.data_dir or (cfg["data_dir"] if same else None)
    options = {"channels": args.channels, "image_size": cfg["data"]["image_size"]}
    train = load_split(dataset, "train", data_dir, args.subset, cfg["seed"], options)
    test = load_split(dataset, "test", data_dir, None, cfg["seed"], options)
    channels = int(train[0]["image"].shape[0])
    if channels != cfg["data"]["channels"]:
        raise SelfSupError(
            f"the checkpoint's backbone takes {cfg['data']['channels']}-channel images but {dataset} has {channels}; "
            f"pass --channels {cfg['data']['channels']} to convert")
    if labelled and train.num_classes < 2:
        raise SelfSupError(f"{dataset} has no class labels to evaluate with")
    norm = normalization_for(dataset, channels)
    return dataset, train, test, norm


def evaluate(args) -> dict:
    from ..engine.checkpoint import load_pretrained

    module = load_pretrained(args.checkpoint)
    cfg = module.cfg
    dataset, train, test, norm = _evaluation_data(args, cfg, labelled=args.protocol != "diagnostics")
    start = time.perf_counter()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    module.to(device)
    common = dict(batch_size=args.batch_size, channels_last=module.channels_last, progress=True, device=device)
    result = {"protocol": args.protocol, "checkpoint": str(args.checkpoint), "method": cfg["method"],
              "pretrain_dataset": cfg["dataset"], "dataset": dataset, "train_images": len(train),
              "test_images": len(test)}
    method = module.method
    if args.protocol == "diagnostics":
        if args.images < 2:
            raise SelfSupError(f"--images must be at least 2, got {args.images}")
        images = test.subset(balanced_subset_indices(test.labels.numpy(), args.images, cfg["seed"])) \
            if args.images < len(test) else test
        result.update(images=len(images), **embedding_diagnostics(method, images, norm, device, cfg["seed"],
                                                                  module.channels_last, args.batch_size))
    elif args.protocol == "knn":
        if args.memory_bank:  # checked before any work
            check_memory_bank(method)
            if dataset != cfg["dataset"]:
                raise SelfSupError("--memory-bank needs the pretraining dataset, whose images the bank holds")
        result.update(k=args.k, temperature=args.temperature,
                      top1=encoder_knn(method, train, test, norm, train.num_classes, args.k, args.temperature, **common))
        if args.memory_bank:
            pretrain_split = load_split(cfg["dataset"], dataset_info(cfg["dataset"]).pretrain_split, cfg["data_dir"],
                                        cfg["subset"], cfg["seed"], cfg["data"])
            result.update(memory_bank_knn(method, pretrain_split, test, norm, train.num_classes, args.k,
                                          args.temperature, **common))
    else:
        probes = linear_probe(method, train, test, norm, train.num_classes, args.layers == "all", epochs=args.epochs, lr=args.lr,
                              weight_decay=args.weight_decay, seed=cfg["seed"], **common)
        result.update(epochs=args.epochs, lr=args.lr, layers=probes, top1=list(probes.values())[-1]["test_top1"])
    result["seconds"] = round(time.perf_counter() - start, 2)
    output = Path(args.output) if args.output else Path(args.checkpoint).resolve().parent.parent / f"eval_{args.protocol}.json"
    try:
        write_json(output, result)
    except OSError as exc:
        raise SelfSupError(f"cannot write {output} ({exc.strerror}); pass --output") from exc
    result["output"] = str(output)
    return result

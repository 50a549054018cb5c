"""``selfsup evaluate``: run one protocol on a checkpoint and write its JSON result.

The protocols on frozen features (knn, linear, svm, transfer, retrieval, embedding) see images
at the pretraining image size (resized when the evaluation dataset differs) through
``Method.features`` in eval mode; finetune and diagnostics take the dataset's images at their
own size.  Unless ``--no-baselines``, knn, linear, svm, transfer and retrieval report the same
protocol on the standardised pixels and on the method's network at its random initialisation,
so that what pretraining adds is visible under each; finetune always fine-tunes the random
network beside the checkpoint, and, unless ``--no-baselines``, adds a linear probe on the pixels.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch

from ..build import run_normalization
from ..data.datasets import balanced_subset_indices, batch_inputs, dataset_info, load_split, normalization_for
from ..precision import training_precision
from ..errors import SelfSupError
from ..rundir import run_of_checkpoint
from ..io import cached_json, content_hash, write_json
from .baselines import check_memory_bank, memory_bank_knn, pixel_features
from .diagnostics import embedding_diagnostics
from .features import evaluated_network, method_features
from .knn import knn_top1
from .linear import linear_probe, train_linear_probe
from .svm import svm_probe

# What every protocol takes, and each protocol's own options, with their defaults (the CLI's).
COMMON_OPTIONS = {"dataset": None, "data_dir": None, "subset": None, "channels": None, "batch_size": 512,
                  "output": None}
_BASELINES = {"baselines": True, "baseline_cache": None}
_PROBE = {"epochs": 100, "lr": 1e-3, "weight_decay": 0.0}
_KNN = {"k": 200, "temperature": 0.1}
PROTOCOL_OPTIONS = {
    "knn": {**_BASELINES, **_KNN, "memory_bank": False},
    "linear": {**_BASELINES, **_PROBE, "layers": "last"},
    "svm": {**_BASELINES},
    "finetune": {**_BASELINES, "label_fraction": None, "labels_per_class": None, "epochs": None, "precision": None,
                 "layer_decay": None},
    "transfer": {**_BASELINES, **_KNN, **_PROBE},
    "retrieval": {**_BASELINES, "k": [1, 5, 10, 100], "grid_queries": 8, "grid_neighbours": 8},
    "embedding": {"images": 2000, "projection": None},
    "diagnostics": {"images": 2000},
}


def protocol_revision(protocol: str) -> int:
    """The revision of ``protocol``'s code, kept in each result it writes (``revision``): a stored
    result with a lower one (or none: 1) was made before a fix changed what the protocol measures."""
    from .finetune import REVISION as finetune_revision
    return {"finetune": finetune_revision}.get(protocol, 1)


def protocol_options(protocol: str) -> dict:
    """Every option ``protocol`` takes, with its default."""
    if protocol not in PROTOCOL_OPTIONS:
        raise SelfSupError(f"unknown evaluation protocol '{protocol}'; choose one of: {', '.join(PROTOCOL_OPTIONS)}")
    return {**COMMON_OPTIONS, **PROTOCOL_OPTIONS[protocol]}


@dataclass(frozen=True)
class EvalRequest:
    """One evaluation: ``protocol`` on ``checkpoint`` with ``options`` (the common ones and the
    protocol's own, ``COMMON_OPTIONS`` and ``PROTOCOL_OPTIONS``; read as attributes).  Build it
    with ``EvalRequest.make``, which fills the defaults and refuses options the protocol lacks."""

    protocol: str
    checkpoint: str
    options: dict = field(default_factory=dict)

    @classmethod
    def make(cls, protocol: str, checkpoint, **options) -> "EvalRequest":
        allowed = protocol_options(protocol)
        foreign = sorted(set(options) - set(allowed))
        if foreign:
            raise SelfSupError(f"the {protocol} protocol has no option '{foreign[0]}'; its options: {', '.join(allowed)}")
        return cls(protocol, str(checkpoint), {**allowed, **options})

    def __getattr__(self, name: str):
        options = self.__dict__.get("options", {})
        if name in options:
            return options[name]
        raise AttributeError(name)


def _evaluation_data(args, cfg: dict, labelled: bool = True, adapt: bool = False):
    """Train and test splits of the evaluation dataset (``labelled``: required to have class
    labels), checked against the model; ``adapt`` converts 1 <-> 3 channels to the model's."""
    dataset = args.dataset or cfg["dataset"]
    same = dataset == cfg["dataset"]
    pretrained_on, given = cfg["data"].get("modality", "image"), dataset_info(dataset).modality
    if given != pretrained_on:
        kinds = {"image": "images", "series": "series"}
        raise SelfSupError(f"the checkpoint was pretrained on {kinds[pretrained_on]} ({cfg['dataset']}) but {dataset} "
                           f"holds {kinds[given]}; evaluate it on a {pretrained_on} dataset")
    if adapt and given == "series" and not same:
        raise SelfSupError("transfer adapts images (size and channels) to the checkpoint; a series checkpoint is "
                           f"evaluated on its own dataset ({cfg['dataset']}) with knn, linear, svm or finetune")
    data_dir = args.data_dir or (cfg["data_dir"] if same else None)
    channels = args.channels or (cfg["data"]["channels"] if adapt else None)
    options = {"channels": channels, "image_size": cfg["data"]["image_size"]}
    train = load_split(dataset, "train", data_dir, args.subset, cfg["seed"], options)
    try:
        test = load_split(dataset, "test", data_dir, None, cfg["seed"], options)
    except SelfSupError as exc:
        if labelled:
            raise
        print(f"note: {exc}; the training images stand in for test images", file=sys.stderr)
        test = train
    channels = int(batch_inputs(train[0]).shape[0])
    if channels != cfg["data"]["channels"]:
        raise SelfSupError(
            f"the checkpoint's backbone takes {cfg['data']['channels']}-channel images but {dataset} has {channels}; "
            f"pass --channels {cfg['data']['channels']} to convert")
    if labelled and train.num_classes < 2:
        raise SelfSupError(f"{dataset} has no class labels to evaluate with")
    # the checkpoint's own normalisation on its own data (an image folder's was measured from it)
    own_data = same and data_dir == cfg["data_dir"]
    norm = run_normalization(cfg) if own_data else normalization_for(dataset, channels, train)
    return dataset, train, test, norm


class Encoders:
    """The feature extractors a protocol compares: the checkpoint's ``features`` and, with
    baselines, the standardised pixels and the same network at its random initialisation.
    With a ``cache`` folder a baseline's score is kept there under a hash of all it depends on,
    and read back for every later checkpoint that shares it (``--baseline-cache``)."""

    def __init__(self, module, norm, size: int, baselines: bool, device: str, batch_size: int,
                 cache: Path | None = None, checkpoint: str | None = None):
        self.module, self.norm, self.size, self.device, self.batch_size = module, norm, size, device, batch_size
        self.cache, self.checkpoint = cache, checkpoint
        self.methods = {"features": module.method}
        if baselines:
            from ..build import build_method

            L.seed_everything(module.cfg["seed"], verbose=False)
            random_init = build_method(module.cfg).to(device)
            if module.channels_last:
                random_init.to(memory_format=torch.channels_last)
            self.methods["random_init"] = random_init
        self.baselines = ["random_init", "pixels"] if baselines else []

    def __call__(self, name: str, dataset, layers: bool = False):
        """(features, labels) of ``dataset`` by encoder ``name``."""
        common = dict(batch_size=self.batch_size, device=self.device, size=self.size)
        if name == "pixels":
            return pixel_features(dataset, self.norm, **common)
        return method_features(self.methods[name], dataset, self.norm, layers=layers,
                               progress=self.module.cfg["trainer"]["progress_bar"],
                               channels_last=self.module.channels_last, desc=f"{name} of {len(dataset)} images",
                               **common)

    def each(self, score, settings: list, *datasets):
        """``score(name)`` of the checkpoint's features, and ``baseline_scores``."""
        return score("features"), self.baseline_scores(score, settings, *datasets)

    def baseline_scores(self, score, settings: list, *datasets) -> dict:
        """{baseline name: ``score(name)``}; with a cache, keyed by a hash of ``settings`` (the
        protocol and whatever of its options the score depends on), the baseline's encoder (the
        evaluated network at its initialisation, or the pixels), the normalisation, image size,
        device, memory format and ``datasets``' samples and labels."""
        scores = {}
        for name in self.baselines:
            where, network = evaluated_network(self.methods[name]) if name != "pixels" else (None, None)
            key = content_hash([name, settings, where, list(self.norm.mean), list(self.norm.std), self.size,
                                self.device, self.module.channels_last], *([network] if network else []),
                               *(part for d in datasets for part in d.content_key())) if self.cache else ""
            scores[name] = cached_json(self.cache, key, lambda: {
                "score": score(name), "baseline": name, "settings": settings, "made_for": self.checkpoint})["score"]
        return scores


def _knn(args, enc, train, test):
    def score(name):
        train_x, train_y = enc(name, train)
        test_x, test_y = enc(name, test)
        return knn_top1(train_x, train_y, test_x, test_y, train.num_classes, args.k, args.temperature)
    return enc.each(score, ["knn", args.k, args.temperature], train, test)


def _svm(args, enc, train, test):
    """(the encoder's SVM probe result, {baseline: its result}), as ``selfsup.eval.svm`` trains it."""
    def score(name):
        train_x, train_y = enc(name, train)
        test_x, test_y = enc(name, test)
        return svm_probe(train_x, train_y, test_x, test_y)
    return enc.each(score, ["svm"], train, test)


def _linear_settings(args, seed: int) -> list:
    return ["linear", args.epochs, args.lr, args.weight_decay, seed]


def _linear_score(args, enc, train, test, seed):
    """score(encoder name): test top-1 of a linear probe on that encoder's features."""
    def score(name):
        train_x, train_y = enc(name, train)
        test_x, test_y = enc(name, test)
        return train_linear_probe(train_x, train_y, test_x, test_y, train.num_classes, epochs=args.epochs, lr=args.lr,
                                  weight_decay=args.weight_decay, seed=seed)["test_top1"]
    return score


def evaluate(args: EvalRequest) -> dict:
    """Run ``args`` and write its JSON result (``args.output``, default RUN/eval_PROTOCOL.json)."""
    from ..build import load_pretrained

    module = load_pretrained(args.checkpoint)
    cfg = module.cfg
    protocol = args.protocol
    dataset, train, test, norm = _evaluation_data(
        args, cfg, labelled=protocol not in ("diagnostics", "embedding", "retrieval"), adapt=protocol == "transfer")
    output = Path(args.output) if args.output else run_of_checkpoint(args.checkpoint) / f"eval_{protocol}.json"
    start = time.perf_counter()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    module.to(device)
    size = cfg["data"]["image_size"]
    cache = Path(args.baseline_cache) if args.options.get("baseline_cache") else None
    enc = Encoders(module, norm, size, args.options.get("baselines", False), device,
                   args.batch_size, cache, str(args.checkpoint))
    result = {"protocol": protocol, "revision": protocol_revision(protocol), "checkpoint": str(args.checkpoint),
              "method": cfg["method"],
              "pretrain_dataset": cfg["dataset"], "dataset": dataset, "train_images": len(train),
              "test_images": len(test), **({"images_from": "train"} if test is train else {})}
    method = module.method
    progress = cfg["trainer"]["progress_bar"]  # progress bars where the run showed them
    if protocol == "diagnostics":
        if args.images < 2:
            raise SelfSupError(f"--images must be at least 2, got {args.images}")
        images = test.subset(balanced_subset_indices(test.labels.numpy(), args.images, cfg["seed"])) \
            if args.images < len(test) else test
        result.update(images=len(images), **embedding_diagnostics(method, images, norm, device, cfg["seed"],
                                                                  module.channels_last, args.batch_size))
    elif protocol == "knn":
        if args.memory_bank:  # checked before any work
            check_memory_bank(method)
            if dataset != cfg["dataset"]:
                raise SelfSupError("--memory-bank needs the pretraining dataset, whose images the bank holds")
        top1, baselines = _knn(args, enc, train, test)
        result.update(k=args.k, temperature=args.temperature, top1=top1, baselines=baselines)
        if args.memory_bank:
            pretrain_split = load_split(cfg["dataset"], dataset_info(cfg["dataset"]).pretrain_split, cfg["data_dir"],
                                        cfg["subset"], cfg["seed"], cfg["data"])
            result.update(memory_bank_knn(method, pretrain_split, test, norm, train.num_classes, args.k,
                                          args.temperature, batch_size=args.batch_size, device=device,
                                          channels_last=module.channels_last, progress=progress))
    elif protocol == "linear":
        probes = linear_probe(method, train, test, norm, train.num_classes, args.layers == "all", epochs=args.epochs,
                              lr=args.lr, weight_decay=args.weight_decay, seed=cfg["seed"], batch_size=args.batch_size,
                              channels_last=module.channels_last, progress=progress, device=device, size=size)
        score = _linear_score(args, enc, train, test, cfg["seed"])
        baselines = enc.baseline_scores(score, _linear_settings(args, cfg["seed"]), train, test)
        result.update(epochs=args.epochs, lr=args.lr, layers=probes, top1=list(probes.values())[-1]["test_top1"],
                      baselines=baselines)
    elif protocol == "svm":
        probe, baselines = _svm(args, enc, train, test)
        result.update(top1=probe["test_top1"], C=probe["C"],
                      baselines={name: value["test_top1"] for name, value in baselines.items()},
                      baseline_C={name: value["C"] for name, value in baselines.items()})
    elif protocol == "transfer":
        (knn, knn_base) = _knn(args, enc, train, test)
        linear, linear_base = enc.each(_linear_score(args, enc, train, test, cfg["seed"]),
                                       _linear_settings(args, cfg["seed"]), train, test)
        native = f"{train.image_size}x{train.image_size}"
        result.update(adaptation=f"{dataset} images ({native}) resized to {size}x{size}, "
                                 f"{cfg['data']['channels']} channel(s) as the pretraining data",
                      knn_top1=knn, linear_top1=linear, k=args.k, temperature=args.temperature, epochs=args.epochs,
                      baselines={name: {"knn_top1": knn_base[name], "linear_top1": linear_base[name]}
                                 for name in knn_base})
    elif protocol == "retrieval":
        result.update(_retrieval(args, enc, train, test, output.parent / "retrieval.png", cfg))
    elif protocol == "embedding":
        result.update(_embedding(args, enc, test, output.parent, cfg, dataset))
    elif protocol == "finetune":
        result.update(_finetune(args, module, train, test, norm, device, cfg))
    result["seconds"] = round(time.perf_counter() - start, 2)
    try:
        write_json(output, result)
    except OSError as exc:
        raise SelfSupError(f"cannot write {output} ({exc.strerror}); pass --output") from exc
    result["output"] = str(output)
    return result


def _retrieval(args, enc, train, test, grid_path: Path, cfg: dict) -> dict:
    """precision@k and mAP of test queries against the training split, and a grid of nearest
    neighbours; without class labels, or with training images as queries (no test split), the
    grid alone, each query's own image left out of its neighbours."""
    from .retrieval import precision_at_k, retrieval_grid, retrieval_scores

    ks = sorted(set(args.k))
    scored = test is not train and bool((train.labels >= 0).any())
    if scored and (ks[0] < 1 or ks[-1] > len(train)):
        raise SelfSupError(f"--k values must be between 1 and the {len(train)} training images, got {args.k}")
    features, result = {}, {}

    def score(name):
        features[name] = enc(name, train), enc(name, test)
        (train_x, train_y), (test_x, test_y) = features[name]
        return retrieval_scores(train_x, train_y, test_x, test_y, ks)
    if scored:
        main, baselines = enc.each(score, ["retrieval", ks], train, test)
        result.update(main, baselines=baselines)
    else:
        features["features"] = enc("features", train), enc("features", test)
    (train_x, train_y), (test_x, test_y) = features["features"]
    queries = torch.from_numpy(balanced_subset_indices(test_y.numpy(), min(args.grid_queries, len(test)), cfg["seed"]))
    wanted = args.grid_neighbours + (test is train)
    _, neighbours = precision_at_k(train_x, train_y, test_x[queries], test_y[queries], [wanted])
    if test is train:  # drop each query itself (or, for a duplicate, the last neighbour)
        neighbours = torch.stack([row[row != q][:args.grid_neighbours] for row, q in zip(neighbours, queries)])
    relevant = train_y[neighbours] == test_y[queries, None] if scored else None
    source = "test queries" if test is not train else "training images"
    retrieval_grid(grid_path, _samples(test, queries), _samples(train, neighbours), relevant,
                   f"{cfg['method']}: nearest training samples of {source}"
                   + (" (green: same class)" if scored else ""))
    if not scored:
        result["note"] = "no class labels or no test split: the grid of neighbours only, no precision or mAP"
    return {**result, "grid": str(grid_path)}


def _samples(dataset, indices: torch.Tensor) -> torch.Tensor:
    """The images (or series) of ``dataset`` at ``indices`` (any shape), stacked in that shape."""
    samples = torch.stack([batch_inputs(dataset[int(i)]) for i in indices.flatten()])
    return samples.view(*indices.shape, *samples.shape[1:])


def _embedding(args, enc, test, folder: Path, cfg: dict, dataset: str) -> dict:
    from .embedding import PROJECTIONS, embedding_plot, project

    if args.images < 10:
        raise SelfSupError(f"--images must be at least 10 for a map, got {args.images}")
    images = test.subset(balanced_subset_indices(test.labels.numpy(), args.images, cfg["seed"])) \
        if args.images < len(test) else test
    features, labels = enc("features", images)
    plots = {}
    for how in args.projection or PROJECTIONS:
        path = folder / f"embedding_{how}.png"
        embedding_plot(path, project(features, how, cfg["seed"]), labels.numpy(),
                       f"{cfg['method']} on {dataset}: {how.upper()} of {len(images)} test images",
                       dataset_info(dataset).class_names)
        plots[how] = str(path)
    return {"images": len(images), "plots": plots}


def _finetune(args, module, train, test, norm, device, cfg: dict) -> dict:
    from ..build import build_method
    from .finetune import default_epochs, default_layer_decay, finetune, label_subset, scratch_fingerprint

    fraction = 0.1 if args.label_fraction is None and args.labels_per_class is None else args.label_fraction
    labelled = label_subset(train, fraction, args.labels_per_class, cfg["seed"])
    epochs = args.epochs or default_epochs(len(labelled), len(train))
    precision = training_precision(args.precision or cfg["trainer"]["precision"], device)
    layer_decay = default_layer_decay(module.method) if args.layer_decay is None else args.layer_decay
    if not 0 < layer_decay <= 1:
        raise SelfSupError(f"--layer-decay must be in (0, 1], got {layer_decay}")
    common = dict(labelled=labelled, test=test, norm=norm, num_classes=train.num_classes, epochs=epochs,
                  seed=cfg["seed"], device=device, channels_last=module.channels_last, progress=cfg["trainer"]["progress_bar"],
                  batch_size=args.batch_size, precision=precision, layer_decay=layer_decay)
    pretrained = finetune(module.method, **common)
    L.seed_everything(cfg["seed"], verbose=False)
    scratch_method = build_method(cfg)
    if module.channels_last:
        scratch_method.to(memory_format=torch.channels_last)
    result = {"labelled_images": len(labelled), "label_fraction": len(labelled) / len(train), "epochs": epochs,
              "precision": precision, "layer_decay": layer_decay}
    key = ""
    if args.baseline_cache:  # the from-scratch run, shared by every checkpoint with the same initial network
        key = scratch_fingerprint(scratch_method, labelled, test, norm, epochs, cfg["seed"], device,
                                  module.channels_last, precision, layer_decay)
        result["scratch_cache"] = str(Path(args.baseline_cache) / f"{key}.json")
    scratch = cached_json(args.baseline_cache, key, lambda: {
        "scratch_top1": finetune(scratch_method, **common), "made_for": str(args.checkpoint), "method": cfg["method"],
        "labelled_images": len(labelled), "epochs": epochs})["scratch_top1"]
    result.update(top1=pretrained, scratch_top1=scratch, gain=pretrained - scratch)
    if args.baselines:  # a linear classifier on the labelled images' standardised pixels
        train_x, train_y = pixel_features(labelled, norm, size=cfg["data"]["image_size"])
        test_x, test_y = pixel_features(test, norm, size=cfg["data"]["image_size"])
        result["baselines"] = {"pixels_linear": train_linear_probe(train_x, train_y, test_x, test_y, train.num_classes,
                                                                   epochs=100, seed=cfg["seed"])["test_top1"]}
    return result

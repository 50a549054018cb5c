"""``pretrain``: resolve data and model, run Lightning, evaluate, write the run directory
(``selfsup.rundir``; ``logs/`` holds the trackers' logs: CSV and TensorBoard, or wandb/MLflow)."""
from __future__ import annotations

import logging
import os
import resource
import sys
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger
from lightning.pytorch.strategies import DDPStrategy
from torch.utils.data import DataLoader

from ..config import RunSettings, expand_hosted
from ..data.datasets import (balanced_subset_indices, batch_inputs, batch_loader, dataset_info, load_split,
                             normalization_for)
from ..data.samplers import ShuffleBatchSampler
from ..errors import SelfSupError
from ..eval.diagnostics import embedding_diagnostics
from ..eval.features import classifier_top1
from ..eval.final import knn_and_probe, run_baselines
from ..io import read_checkpoint
from ..methods import method_class
from ..methods.base import Method
from ..models.backbones import VIT_BACKBONES, default_backbone, vit_size
from ..rundir import RunDirectory, precision_record
from .callbacks import AtomicCheckpointIO, EpochCheckpoint, KNNMonitor, LossHistory, ProgressBar, Throughput
from .cluster import is_launched_worker
from .module import PretrainModule
from ..precision import device_description, note_emulated_bf16, training_precision, uses_gpu


def load_datasets(cfg: dict) -> tuple:
    """(pretraining split, labelled kNN bank, labelled test split or None); fills the data
    facts (channels, size, normalisation, classes) into ``cfg``."""
    s = RunSettings.of(cfg)
    info = dataset_info(s.dataset)
    options = cfg["data"]
    train = load_split(s.dataset, info.pretrain_split, s.data_dir, s.subset, s.seed, options)
    bank = train if info.pretrain_split == "train" else load_split(s.dataset, "train", s.data_dir, None, s.seed, options)
    try:
        test = load_split(s.dataset, "test", s.data_dir, None, s.seed, options)
    except SelfSupError as exc:
        print(f"note: no labelled test split, so no kNN evaluation ({exc})", file=sys.stderr)
        test = None
    record_data_facts(cfg, train, bank, info.modality, lambda channels: normalization_for(s.dataset, channels, train))
    data = cfg["data"]
    if cfg["backbone"]["name"] in VIT_BACKBONES:  # the transformer's size, written down as the run builds it
        cfg["backbone"].update(vit_size(cfg["backbone"], data["image_size"]))
    if s.trainer.strategy == "fsdp" and not trains_on_gpu(s):
        raise SelfSupError("trainer.strategy fsdp needs GPUs (Lightning's FSDP runs on CUDA only); "
                           "use auto or ddp on the CPU")
    if s.knn.target_knn is not None and (test is None or s.trainer.strategy == "fsdp"):
        raise SelfSupError("knn.target_knn needs the kNN monitor, which runs only on a dataset with a labelled test "
                           "split and not under trainer.strategy fsdp")
    labels = torch.as_tensor(getattr(train, "labels", []), dtype=torch.long)
    if s.online_probe.enabled and not ((labels >= 0).any() and data["num_classes"]):
        raise SelfSupError(f"online_probe.enabled needs class labels, and the {s.dataset} training images have none; "
                           "leave the online probe off")
    return train, bank, test


def record_data_facts(cfg: dict, train, bank, modality: str, normalization) -> None:
    """Write into ``cfg`` what a run learns from its training data (``data``: channels, size or
    length, the normalisation ``normalization(channels)`` gives, classes, modality; ``run``:
    training-set size, world size, batches per epoch, smallest class) and resolve the ``auto``
    backbone settings that depend on it."""
    s = RunSettings.of(cfg)
    sample = batch_inputs(train[0])  # images [C, H, W], series [C, T]
    data = cfg["data"]
    data["channels"], data["image_size"] = int(sample.shape[0]), int(sample.shape[-1])
    norm = normalization(data["channels"])
    data["mean"], data["std"] = list(norm.mean), list(norm.std)
    data["num_classes"] = int(getattr(bank, "num_classes", 0) or 0)
    data["modality"] = modality
    if s.backbone.name == "auto":
        cfg["backbone"]["name"] = default_backbone(modality)
    if s.backbone.small_stem == "auto":
        cfg["backbone"]["small_stem"] = data["image_size"] <= 64
    world = s.trainer.devices * s.trainer.num_nodes
    labels = torch.as_tensor(getattr(train, "labels", []), dtype=torch.long)
    labelled = labels[labels >= 0]
    cfg["run"] = {"train_size": len(train), "world_size": world,
                  "batches_per_epoch": len(train) // (s.batch_size * world),
                  "smallest_class": int(labelled.bincount().min()) if len(labelled) and data["num_classes"] else 0}


def train_loader(method: Method, train, s: RunSettings) -> DataLoader:
    """The method's own batches (``Method.train_batches``), else shuffled by (seed, epoch),
    sharded by rank, full batches only; ``data.num_workers`` workers where the data decodes files."""
    batches = method.train_batches(train, s.batch_size, s.seed)
    dataset, sampler = batches or (train, ShuffleBatchSampler(len(train), s.batch_size, s.seed))
    return batch_loader(dataset, sampler, s.data.num_workers)


def _monitor_subset(dataset, n: int, seed: int):
    if n <= 0 or n >= len(dataset):
        return dataset
    return dataset.subset(balanced_subset_indices(dataset.labels.numpy(), n, seed))


def trains_on_gpu(s: RunSettings) -> bool:
    return uses_gpu(s.trainer.accelerator)


def build_trainer(s: RunSettings, out: Path, callbacks: list, module: PretrainModule) -> L.Trainer:
    t = s.trainer
    distributed = t.devices * t.num_nodes > 1 if isinstance(t.devices, int) else True
    # PyTorch's SyncBatchNorm runs on CUDA only; CPU (gloo) DDP keeps per-process statistics.
    on_gpu = trains_on_gpu(s)
    loggers = [make_logger(name, out) for name in t.loggers]
    callbacks = callbacks + [LearningRateMonitor(logging_interval="step")]
    if t.progress_bar:
        callbacks.append(ProgressBar(refresh_rate=5))
    # Our samplers shard by rank themselves; buffers (queues, banks) are kept in step by the
    # methods (gather, then write on every rank), never overwritten by rank 0's copy.
    if t.strategy == "fsdp":
        strategy = fsdp_strategy(module)
    elif distributed or t.strategy == "ddp":
        strategy = DDPStrategy(broadcast_buffers=False)
    else:
        strategy = "auto"
    sync_bn = s.backbone.batchnorm == "sync" and distributed and on_gpu
    note_emulated_bf16(t.precision, t.accelerator)  # pretrain() has already resolved auto
    return L.Trainer(
        max_epochs=s.epochs, accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes,
        strategy=strategy, precision=t.precision, use_distributed_sampler=False,
        accumulate_grad_batches=t.accumulate_grad_batches, sync_batchnorm=sync_bn,
        logger=loggers, callbacks=callbacks, enable_checkpointing=False, plugins=[AtomicCheckpointIO()],
        log_every_n_steps=t.log_every_n_steps, enable_progress_bar=t.progress_bar,
        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0, default_root_dir=out,
    )


def reloaded(module: PretrainModule, checkpoint: Path) -> PretrainModule:
    """A fresh, unwrapped copy of ``module`` holding the weights of ``checkpoint`` (a full one)."""
    fresh = PretrainModule(module.cfg)
    fresh.load_state_dict(read_checkpoint(checkpoint)[0]["state_dict"])
    fresh.train_set, fresh.epoch_history, fresh.loss_history = module.train_set, module.epoch_history, module.loss_history
    return fresh


def fsdp_strategy(module: PretrainModule):
    """Lightning's FSDP, each backbone region (``compile_regions``: a ViT's blocks, a ResNet's
    stages) a sharded unit, full (unsharded) checkpoints on rank 0."""
    from lightning.pytorch.strategies import FSDPStrategy

    units = {type(region) for m in module.modules() if hasattr(m, "compile_regions") for region in m.compile_regions()}
    return FSDPStrategy(auto_wrap_policy=units, state_dict_type="full", use_orig_params=True)


def make_logger(name: str, out: Path):
    """Lightning's logger ``name`` writing under ``out/logs``.  CSV and TensorBoard keep one
    version directory per start (a resumed run never overwrites the attempt before it); W&B
    runs offline unless ``WANDB_MODE=online``; MLflow writes ``logs/mlruns`` unless
    ``MLFLOW_TRACKING_URI`` names a server or store."""
    logs = out / "logs"
    if name == "csv":
        return CSVLogger(logs, name="csv")
    if name == "tensorboard":
        return TensorBoardLogger(logs, name="tensorboard")
    if name == "wandb":
        return WandbLogger(name=out.name, project="selfsup", save_dir=str(logs),
                           offline=os.environ.get("WANDB_MODE", "offline") != "online")
    from lightning.pytorch.loggers import MLFlowLogger
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3's local file store, kept for offline runs
    return MLFlowLogger(experiment_name="selfsup", run_name=out.name,
                        tracking_uri=os.environ.get("MLFLOW_TRACKING_URI", (logs / "mlruns").resolve().as_uri()))


def log_final_metrics(trainer: L.Trainer, metrics: dict) -> None:
    """metrics.json's numbers (nested ones flattened, ``final/`` before each name) to every logger."""
    def numbers(d: dict, prefix: str = "final/"):
        for key, value in d.items():
            if isinstance(value, dict):
                yield from numbers(value, f"{prefix}{key}/")
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                yield f"{prefix}{key}", float(value)
    values = dict(numbers(metrics))
    for logger in trainer.loggers:
        logger.log_metrics(values, step=trainer.global_step)
        logger.finalize("success")
        if isinstance(logger, WandbLogger):  # Lightning leaves the W&B run open: the next run
            logger.experiment.finish()  # of this process (a suite's next row) would log into it


def quiet_lightning() -> None:
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*GPU available but not used.*")
    warnings.filterwarnings("ignore", message=".*tensorboardX.*")
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")


def pretrain(cfg: dict, out: Path, resume: bool = False, baselines: bool = False, probe_epochs: int = 0,
             probe_layers: bool = False, baselines_cache: Path | None = None) -> dict:
    """Pretrain ``cfg['method']`` on ``cfg['dataset']`` into ``out``; returns metrics.json's dict.

    ``baselines`` adds raw-pixel, standardised-pixel and random-init kNN (kept in ``baselines_cache`` if given,
    see ``run_baselines``); ``probe_epochs`` > 0 adds a linear
    probe (``linear_top1``, and in the baselines the pixels' and random-init network's), and
    with ``probe_layers`` one per stage (``linear_layers``, and the random-init network's).
    Only global rank 0 writes the run directory (``engine.cluster``: ranks as Lightning reads them)."""
    quiet_lightning()
    run = RunDirectory(out)
    expand_hosted(cfg)  # a config changed after it was resolved: its hosted methods' params as resolving gives them
    trainer_cfg = cfg["trainer"]  # config.yaml records the precision this machine trains in
    trainer_cfg["precision"] = training_precision(trainer_cfg["precision"], trainer_cfg["accelerator"])
    train, bank, test = load_datasets(cfg)  # checks every setting (RunSettings) before any work
    is_worker = is_launched_worker()
    s = RunSettings.of(cfg)  # with what the dataset filled in
    if s.batch_size > len(train):
        raise SelfSupError(f"batch size {s.batch_size} is larger than the {len(train)} training images; "
                           "lower --batch-size or raise --subset")
    if is_worker:
        ckpt = run.checkpoint if resume and run.checkpoint.exists() else None
    else:
        ckpt = run.start(cfg, resume, earlier=method_class(cfg["method"]).earlier_runs)
    earlier_precision = run.saved_config()["trainer"]["precision"] if ckpt else None
    if earlier_precision and earlier_precision != trainer_cfg["precision"] and not is_worker:
        print(f"note: the run trained in {earlier_precision} so far; its remaining epochs train in "
              f"{trainer_cfg['precision']} (metrics.json's precision names each segment's)", file=sys.stderr)
    L.seed_everything(s.seed, workers=True, verbose=False)
    module = PretrainModule(cfg)  # a method that cannot be built fails before the run directory is touched
    module.train_set = train
    if not is_worker:
        run.write_config(cfg)
    trainer, throughput, monitor = fit(module, s, run, train, bank, test, ckpt, earlier_precision)
    if not trainer.is_global_zero:
        return {}
    if s.trainer.strategy == "fsdp":  # the sharded module stays wrapped: evaluate the full checkpoint's weights
        module = reloaded(module, run.checkpoint)
    module.to(trainer.strategy.root_device)  # Lightning moves the model to the CPU after fit
    metrics = training_metrics(module, trainer, throughput, monitor, s, len(train), ckpt)
    if test is not None:
        metrics.update(final_evaluation(module, cfg, s, bank, test, baselines, probe_epochs, probe_layers,
                                        baselines_cache))
    log_final_metrics(trainer, metrics)
    return run.finish(metrics)


def fit(module: PretrainModule, s: RunSettings, run: RunDirectory, train, bank, test, ckpt: Path | None,
        earlier_precision: str | None = None):
    """Train ``module`` (resuming from ``ckpt``, trained so far in ``earlier_precision``) with the
    kNN monitor and a checkpoint after every epoch; (trainer, throughput callback, monitor or None)."""
    throughput, monitor = Throughput(), None
    knn = s.knn
    if s.trainer.strategy == "fsdp" and test is not None and knn.monitors:
        print("note: no kNN monitor under trainer.strategy fsdp (its ranks would embed unequal shards through "
              "sharded layers); the final evaluation reads the full checkpoint", file=sys.stderr)
    elif test is not None and knn.monitors:
        monitor = KNNMonitor(_monitor_subset(bank, knn.monitor_train_size, s.seed),
                             _monitor_subset(test, knn.monitor_test_size, s.seed),
                             s.data.num_classes, knn, throughput, s.seed)
    callbacks = [throughput, *([monitor] if monitor else []), LossHistory(earlier_precision),
                 EpochCheckpoint(run.checkpoint)]
    trainer = build_trainer(s, run.path, callbacks, module)
    trainer.fit(module, train_dataloaders=train_loader(module.method, train, s),
                ckpt_path=str(ckpt) if ckpt else None, weights_only=True)
    return trainer, throughput, monitor


def training_metrics(module: PretrainModule, trainer: L.Trainer, throughput: Throughput, monitor, s: RunSettings,
                     train_size: int, ckpt: Path | None) -> dict:
    """What the training itself measured: loss, time, throughput, memory, the kNN curve, the
    method's epoch history, the loss per epoch."""
    final_loss = trainer.callback_metrics.get("loss_epoch", trainer.callback_metrics.get("loss"))
    return {
        "method": s.method, "method_revision": type(module.method).revision, "dataset": s.dataset,
        "epochs": s.epochs, "final_loss": float(final_loss) if final_loss is not None else None,
        "knn_top1": None,
        "train_seconds": round(throughput.wall_seconds, 2),  # every segment of a resumed run
        "samples_per_second": round(throughput.images / throughput.train_seconds, 2) if throughput.train_seconds else None,
        "train_images": train_size, "batch_size": s.batch_size, "backbone": s.backbone.name,
        "width": s.backbone.width, "seed": s.seed,
        "peak_memory_mb": round(peak_memory_mb(), 1), "threads": torch.get_num_threads(),
        "device": device_description(trains_on_gpu(s)),
        "knn_history": monitor.history if monitor else [],
        **({"target": {"knn_top1": s.knn.target_knn, "linear_top1": s.knn.target_linear, "reached": monitor.reached}}
           if monitor and s.knn.target_knn is not None else {}),
        "epoch_history": module.epoch_history,
        "loss_history": module.loss_history,
        "precision": precision_record(module.loss_history),
        "resumed_from": str(ckpt) if ckpt else None,
    }


def final_evaluation(module: PretrainModule, cfg: dict, s: RunSettings, bank, test, baselines: bool,
                     probe_epochs: int, probe_layers: bool, baselines_cache: Path | None) -> dict:
    """The trained encoder on the test split: collapse diagnostics, the classifier's top-1 (a
    method with ``predict``), kNN and probes, and the baselines, as ``pretrain`` asks."""
    device, norm, knn = module.device, module.norm, s.knn
    method, channels_last = module.method, module.channels_last
    metrics = {"diagnostics": embedding_diagnostics(method, _monitor_subset(test, knn.monitor_test_size, s.seed),
                                                    norm, device, channels_last=channels_last)}
    if type(method).predict is not Method.predict:  # a method with a classifier
        metrics["test_top1"] = classifier_top1(method, method.predict, test, norm, device=device,
                                               channels_last=channels_last)
    if module.online_probe is not None:
        metrics["online_linear_top1"] = classifier_top1(method, module.online_scores, test, norm, device=device,
                                                        channels_last=channels_last)
    if knn.final or probe_epochs:
        scores = knn_and_probe(method, cfg, bank, test, norm, probe_epochs, probe_layers, device, channels_last,
                               progress=s.trainer.progress_bar)
        if knn.final:
            metrics["knn_top1"] = scores["knn_top1"]
        if probe_epochs:
            metrics["linear_top1"] = scores["linear_top1"]
        if probe_epochs and probe_layers:
            metrics["linear_layers"] = scores["linear_layers"]
    if baselines:
        print("computing the raw-pixel and random-init baselines...", file=sys.stderr)
        metrics["baselines"] = run_baselines(cfg, bank, test, probe_epochs, probe_layers, baselines_cache)
    return metrics


def peak_memory_mb() -> float:
    """Peak resident memory of this process (and peak CUDA memory when a GPU was used)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if torch.cuda.is_available():
        peak += torch.cuda.max_memory_allocated() / 2**20
    return peak

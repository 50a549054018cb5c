"""The ``selfsup`` command line: list, pretrain, evaluate, benchmark, report.

Every problem with the user's input ends in one line on stderr naming the problem and the
fix, and exit code 2; ``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

from .errors import SelfSupError

EXIT_USER_ERROR = 2


class _HelpWithDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: ...)" to an option's help where it says something: not for a default
    of None (the help says what happens then) nor for on/off flags."""

    def _get_help_string(self, action):
        if action.default is None or isinstance(action.default, bool):
            return action.help
        return super()._get_help_string(action)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", help="show full tracebacks and Lightning's messages")


def _add_run_flags(p: argparse.ArgumentParser) -> None:
    """The options of a training run, shared by pretrain and semisup."""
    p.add_argument("--dataset", default=None, help="dataset name (default from the config: fashion-mnist)")
    p.add_argument("--data-dir", default=None, help="directory with the dataset files (default: the dataset's usual place)")
    p.add_argument("--backbone", default=None, help="resnet18 | resnet34 | resnet50 | vit | vit-tiny | vit-small for "
                                                    "images, conv1d for series (default: the method's, else resnet18 or "
                                                    "conv1d by the dataset); a vit's depth, heads and patch size: "
                                                    "--set backbone.depth=N etc.")
    p.add_argument("--width", type=int, default=None, help="base channel width of the ResNet (default 64), token width "
                                                           "of a `vit` (vit-tiny, vit-small and wrn-28-N fix their own)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default from the method's config)")
    p.add_argument("--recipe", choices=["auto", "paper", "short"], default=None,
                   help="paper: the method's settings as its paper trains (hundreds of epochs); short: settings for "
                        "runs of a few epochs laid over them (configs/recipes.yaml); auto (default): short below 100 "
                        "epochs")
    p.add_argument("--batch-size", type=int, default=None, help="images per step per device (default 256)")
    p.add_argument("--subset", type=int, default=None, help="train on a seeded class-balanced subset of N images")
    p.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    p.add_argument("--out", default=None, help="run directory (default runs/METHOD-DATASET)")
    p.add_argument("--config", default=None, help="YAML file with options laid over the method's defaults")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one option, e.g. --set optimizer.lr=0.5 --set params.temperature=0.2 "
                        "(all keys: --print-config, documented in src/selfsup/configs/defaults.yaml and "
                        "src/selfsup/configs/METHOD.yaml)")
    p.add_argument("--print-config", action="store_true", help="print the resolved configuration and exit")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--devices", type=int, default=None, help="devices per node; DDP when more than one (default 1)")
    p.add_argument("--num-nodes", type=int, default=None, help="nodes for multi-node DDP (default 1)")
    p.add_argument("--accelerator", default=None, help="cpu | gpu | auto (default auto)")
    p.add_argument("--logger", action="append", choices=["csv", "tensorboard", "wandb", "mlflow"],
                   help="experiment tracker, repeatable (default csv and tensorboard, under RUN/logs; wandb runs offline "
                        "unless WANDB_MODE=online; mlflow writes RUN/logs/mlruns unless MLFLOW_TRACKING_URI is set)")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="selfsup", description="Self-supervised representation learning: "
                                     "pretrain, evaluate and benchmark methods under one engine.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="methods, datasets, backbones and benchmark suites")
    _add_common(p)

    p = sub.add_parser("pretrain", help="pretrain an encoder; writes config.yaml, checkpoints/last.ckpt, metrics.json",
                       description="Pretrain an encoder. Options not given here come from the method's config "
                                   "(`--print-config` shows them all, with the values this command would use).")
    p.add_argument("--method", required=True, help="pretraining method (see `selfsup list`)")
    _add_run_flags(p)
    p.add_argument("--baselines", action="store_true",
                   help="also report raw-pixel, standardised-pixel and random-init kNN baselines (and linear, with --linear-probe) "
                        "in metrics.json")
    p.add_argument("--linear-probe", action="store_true",
                   help="after pretraining, train a linear probe on frozen features (Adam, 100 epochs) and report "
                        "its test top-1")
    p.add_argument("--online-probe", action="store_true",
                   help="train a linear classifier on the detached features during pretraining (online_probe.*): its "
                        "top-1 per monitored epoch and on the test split; needs labelled data")
    _add_common(p)

    p = sub.add_parser("semisup", help="semi-supervised learning from a few labels per class; writes config.yaml, "
                       "checkpoints/last.ckpt, metrics.json (test_top1)",
                       description="Train a classifier from --labels-per-class labelled images of each class and the "
                                   "rest of the training split unlabelled. Options not given here come from the "
                                   "method's config (`--print-config`).")
    p.add_argument("--method", required=True, help="supervised-only | pseudo-label | self-training | fixmatch | frost | "
                                                   "flexmatch | freematch | softmatch | uda | mean-teacher | mixmatch | "
                                                   "remixmatch")
    p.add_argument("--labels-per-class", type=int, default=None, help="labelled images of each class (default 4)")
    p.add_argument("--label-seed", type=int, default=None, help="which images are labelled (default 0)")
    p.add_argument("--init", default=None, help="start from the backbone of this selfsup checkpoint "
                                                "(RUN/checkpoints/last.ckpt of a pretraining run)")
    p.add_argument("--balance", choices=["none", "data", "loss", "hybrid"], default=None,
                   help="class balancing of the pseudo-labels (BOSS): resampling, loss weights or both (default none)")
    p.add_argument("--iterations", type=int, default=None, help="self-training and frost: rounds of labelling the pool "
                                                                "(default 3)")
    p.add_argument("--protocol", choices=["usb-classic"], default=None,
                   help="lay a published protocol over the method's config before the other options: usb-classic = "
                        "USB's classic CIFAR setting (WRN-28-2 / WRN-28-8, 2^20 steps, SGD 0.03, cos(7πk/16K), EMA "
                        "0.999, the papers' weak and strong views); needs --dataset cifar10|cifar100 --data-dir DIR")
    _add_run_flags(p)
    _add_common(p)

    p = sub.add_parser("evaluate", help="evaluate a checkpoint's backbone")
    eval_sub = p.add_subparsers(dest="protocol", required=True, metavar="PROTOCOL")
    for name, text in [("knn", "weighted kNN on L2-normalised backbone features (k=200, T=0.1)"),
                       ("linear", "linear probe on frozen backbone features"),
                       ("svm", "RBF-kernel SVM on frozen backbone features, C by 5-fold grid search (TS2Vec's "
                               "protocol for series)"),
                       ("finetune", "fine-tune the whole encoder on a fraction of the labels, vs the same from "
                                    "random initialisation"),
                       ("transfer", "kNN and linear probe on another dataset (--dataset), its images adapted to "
                                    "the pretraining size and channels"),
                       ("retrieval", "test images query the training split: precision@k, mAP, a PNG grid"),
                       ("embedding", "t-SNE and UMAP plots of test features coloured by class"),
                       ("diagnostics", "collapse diagnostics of the backbone features on test images: normalised "
                                       "std, effective rank, alignment, uniformity")]:
        q = eval_sub.add_parser(name, help=text, description=text, formatter_class=_HelpWithDefaults)
        q.add_argument("--checkpoint", required=True, help="a selfsup checkpoint (RUN/checkpoints/last.ckpt)")
        q.add_argument("--dataset", required=name == "transfer", default=None,
                       help="dataset to evaluate on" + ("" if name == "transfer" else " (default: the pretraining dataset)"))
        q.add_argument("--data-dir", default=None, help="directory with the dataset files (default: the checkpoint's "
                                                        "for its own dataset, else the dataset's usual place)")
        q.add_argument("--subset", type=int, default=None, help="seeded class-balanced subset of the training split "
                                                                "(default: the whole split)")
        q.add_argument("--channels", type=int, default=None, help="convert images to 1 or 3 channels (default: the "
                                                                  "dataset's own; transfer: the checkpoint's)")
        q.add_argument("--batch-size", type=int, default=512, help="batch size for feature extraction")
        q.add_argument("--output", default=None, help="JSON result file (default: RUN/eval_PROTOCOL.json)")
        if name in ("knn", "linear", "svm", "transfer", "retrieval", "finetune"):
            q.add_argument("--no-baselines", dest="baselines", action="store_false",
                           help=("skip the linear classifier on the labelled images' pixels (the from-scratch run "
                                 "always runs)" if name == "finetune" else
                                 "skip the same protocol on standardised pixels and on the random-init network"))
            q.add_argument("--baseline-cache", default=None, metavar="DIR",
                           help="keep the baselines' results (" + ("the from-scratch run, " if name == "finetune" else "")
                                + "the pixels' and the random-init network's scores) in DIR, keyed by a hash of "
                                  "everything they depend on (initial network, data, settings), and reuse them for "
                                  "every checkpoint that shares it")
        if name in ("diagnostics", "embedding"):
            q.add_argument("--images", type=int, default=2000,
                           help="seeded class-balanced test images to measure on (uniformity compares all pairs)"
                           if name == "diagnostics" else "seeded class-balanced test images to plot")
        if name == "embedding":
            q.add_argument("--projection", action="append", choices=["tsne", "umap"], default=None,
                           help="which map(s) to draw (repeat the flag; default both)")
        if name in ("knn", "transfer"):
            q.add_argument("--k", type=int, default=200, help="neighbours")
            q.add_argument("--temperature", type=float, default=0.1, help="vote weight exp(similarity / T)")
        if name == "knn":
            q.add_argument("--memory-bank", action="store_true",
                           help="instdisc: also kNN of the test embeddings against the memory bank and against "
                                "fresh embeddings of the pretraining images (the paper's evaluation)")
        if name == "retrieval":
            q.add_argument("--k", type=int, nargs="+", default=[1, 5, 10, 100], help="precision@k for these k")
            q.add_argument("--grid-queries", type=int, default=8, help="query rows in retrieval.png")
            q.add_argument("--grid-neighbours", type=int, default=8, help="neighbours per row in retrieval.png")
        if name in ("linear", "transfer"):
            q.add_argument("--epochs", type=int, default=100, help="probe training epochs")
            q.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
            q.add_argument("--weight-decay", type=float, default=0.0, help="weight decay of the probe")
        if name == "linear":
            q.add_argument("--layers", choices=["last", "all"], default="last",
                           help="probe the pooled final features, or every stage (conv1..conv5)")
        if name == "finetune":
            from .config import PRECISIONS

            labels = q.add_mutually_exclusive_group()
            labels.add_argument("--label-fraction", type=float, default=None,
                                help="fraction of the training split used with its labels (default 0.1)")
            labels.add_argument("--labels-per-class", type=int, default=None, help="labelled images per class")
            q.add_argument("--epochs", type=int, default=None,
                           help="fine-tuning epochs (default: 60 below 10%% of the labels, 30 from there; SimCLR's)")
            q.add_argument("--precision", default=None, choices=list(PRECISIONS),
                           help="fine-tuning precision (default: the checkpoint's trainer.precision; auto: "
                                "bf16-mixed where the device computes bfloat16 natively, else 32-true)")
            q.add_argument("--layer-decay", type=float, default=None,
                           help="learning rate of each backbone layer = decay x the layer above's (BEiT, MAE; "
                                "default: 0.75 for a ViT, 1 for the others)")
        _add_common(q)

    p = sub.add_parser("benchmark", help="run a benchmark suite; writes a markdown table, a CSV and plots",
                       formatter_class=_HelpWithDefaults)
    p.add_argument("--suite", required=True, help="suite name (see `selfsup list`)")
    p.add_argument("--out", required=True, help="directory for results")
    p.add_argument("--data-dir", default=None, help="dataset directory, where the suite needs one")
    p.add_argument("--method", action="append", default=None, metavar="M",
                   help="method(s) to run instead of the suite's own list (repeat the flag; `all`: every registered "
                        "method); throughput measures simclr by default")
    p.add_argument("--row", action="append", default=None, metavar="LABEL",
                   help="fmnist-quick, fmnist-long, ablations and multitask suites: train only these rows, named "
                        "by their label in the table or their directory under OUT/runs (repeat the flag); the table "
                        "shows every finished row. speedrun and throughput: these recipes of the leaderboard")
    p.add_argument("--labels-per-class", type=int, action="append", default=None, metavar="N",
                   help="semisup suite: train only these labels per class (repeat the flag; default 1, 4 and 25); "
                        "the table shows every finished run")
    p.add_argument("--label-seed", type=int, action="append", default=None, metavar="S",
                   help="semisup suite: train only these label seeds (repeat the flag; default 0, 1 and 2)")
    _add_common(p)

    p = sub.add_parser("forecast", help="self-boosted time-series forecasting (EEMD, multi-task, multi-view) and "
                       "baselines; writes config.yaml, checkpoints/last.ckpt, metrics.json (test NRMSE, MAE)",
                       description="Forecast a univariate series h steps ahead from its last --lags values "
                                   "(Nguyen et al. 2019). Network models read EEMD components made from the past "
                                   "only (a sliding --window) unless --leaky-decomposition. See docs/forecasting.md.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--series", help="registry series: sunspots | co2 | elnino | nile | macrodata (statsmodels) | "
                                               "airline | lynx | shampoo (aeon)")
    source.add_argument("--csv", metavar="FILE", help="a CSV file with a header row")
    p.add_argument("--column", action="append", default=None, metavar="C",
                   help="with --csv: the target column; repeat the flag for extra input columns of the networks")
    p.add_argument("--date-column", default=None, metavar="D", help="with --csv: sort the rows by this date column")
    p.add_argument("--interpolate", action="store_true", default=None,
                   help="fill missing or non-numeric CSV values linearly (otherwise they are an error)")
    p.add_argument("--model", required=True, metavar="M", help="persistence | seasonal-naive | ar | ets | arima | linear | "
                                                                 "plain | mtl | mtv | self-boosted | ts2vec-ridge")
    p.add_argument("--lags", type=int, default=None, help="input values before each forecast (default 6)")
    p.add_argument("--horizon", type=int, default=None, help="steps ahead (default 1)")
    p.add_argument("--season", type=int, default=None, help="season length for seasonal-naive and ets (default: the series')")
    p.add_argument("--epochs", type=int, default=None, help="network training epochs (default 100)")
    p.add_argument("--seed", type=int, default=None, help="random seed of the network or the TS2Vec encoder (default 0)")
    p.add_argument("--window", type=int, default=None, help="values in each causal EEMD window (default 96)")
    p.add_argument("--eemd-trials", type=int, default=None, help="EEMD ensemble size (default 100)")
    p.add_argument("--noise-width", type=float, default=None, help="EEMD noise width (default 0.05)")
    p.add_argument("--eemd-seed", type=int, default=None, help="EEMD noise seed (default 0)")
    p.add_argument("--max-imfs", type=int, default=None, help="IMFs per decomposition; fewer are zero-padded, the "
                                                                "residue comes last (default 6)")
    p.add_argument("--threshold", type=float, default=None,
                   help="|Pearson r| with the series from which a component is closely related (default 0.3)")
    p.add_argument("--leaky-decomposition", action="store_true",
                   help="decompose the whole series once, as the paper does (sees the future; labelled leaky)")
    p.add_argument("--out", default=None, help="run directory (default runs/forecast-SERIES-MODEL-lagN)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one option, e.g. --set network.lr=0.01 (all keys: --print-config)")
    p.add_argument("--print-config", action="store_true", help="print the resolved configuration and exit")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    _add_common(p)

    p = sub.add_parser("export", help="write a run's backbone alone, loadable without selfsup",
                       description="Write the backbone of RUN (no heads, no optimiser) to FILE and how to load it to "
                                   "FILE.json; the export is loaded back and its features compared with the "
                                   "checkpoint's on the run's test images (the largest difference is printed).")
    p.add_argument("run", metavar="RUN", help="a run directory (its checkpoints/last.ckpt) or a selfsup checkpoint")
    p.add_argument("--format", required=True, choices=["torchvision", "timm", "safetensors", "onnx"],
                   help="torchvision: a ResNet state dict for torchvision.models.resnetNN (width 64); timm: a ViT "
                        "state dict for timm's VisionTransformer; safetensors: the tensors with the input size and "
                        "normalisation in the metadata; onnx: the network as an ONNX graph")
    p.add_argument("--out", required=True, metavar="FILE", help="the file to write (must not exist)")
    _add_common(p)

    p = sub.add_parser("status", help="where runs stand: finished, training, or stopped and resumable",
                       description="One line per run: its state (finished; training, with the suite process that "
                                   "holds it; stopped, resumable from its checkpoint), epochs done, the last "
                                   "monitor kNN, the final kNN, precision, hours trained and, for an unfinished run, "
                                   "hours left at the pace of its last three epochs, read from the run's "
                                   "files (config.yaml, metrics.json, checkpoints/last.ckpt; $SELFSUP_CHECKPOINT_ROOT "
                                   "is honoured); for the --out of a suite with fixed rows (fmnist-quick, fmnist-long, "
                                   "ablations, multitask), then the suite's rows not begun.")
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="a run directory, a suite's --out (its runs/) or a folder of run directories")
    _add_common(p)

    p = sub.add_parser("report", help="an HTML page (and markdown) of one or more run directories",
                       description="Write DIR/index.html and DIR/report.md: each run's settings, headline metrics, "
                                   "loss and kNN curves, evaluations (eval_*.json), diagnostics and images; with "
                                   "several runs also a side-by-side table and overlaid curves.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directory written by `selfsup pretrain`")
    p.add_argument("--out", required=True, metavar="DIR", help="directory for the report (created if needed)")
    _add_common(p)
    return parser


def _cmd_list(args) -> None:
    from .bench import SUITES
    from .data import DATASETS
    from .methods import METHODS
    from .models import BACKBONES

    print("methods (learn from images unless marked):")
    for name, cls in METHODS.items():
        marks = [*(["supervised"] if cls.supervised else []),
                 *([" and ".join(cls.modalities)] if cls.modalities != ("image",) else [])]
        print(f"  {name:14s} {(cls.__doc__ or '').strip().splitlines()[0]}{''.join(f' [{m}]' for m in marks)}")
    print("datasets:")
    for name, info in DATASETS.items():
        print(f"  {name:14s} {info.description}")
    print("backbones:\n  " + ", ".join(BACKBONES))
    print("benchmark suites:")
    for name, suite in SUITES.items():
        print(f"  {name:14s} {suite.description}")


def _run_config(args, params: dict | None = None, backbone: dict | None = None, protocol: str | None = None,
                **sections) -> dict:
    """The resolved configuration of a training command's flags (``sections``: more of them, by config section)."""
    from .api import configure

    return configure(
        args.method, args.config, args.set or (), protocol, dataset=args.dataset, data_dir=args.data_dir, epochs=args.epochs,
        batch_size=args.batch_size, subset=args.subset, seed=args.seed, recipe=args.recipe,
        backbone={k: v for k, v in {"name": args.backbone, "width": args.width, **(backbone or {})}.items()
                  if v is not None},
        trainer={k: v for k, v in {"devices": args.devices, "num_nodes": args.num_nodes,
                                   "accelerator": args.accelerator, "loggers": args.logger}.items() if v is not None},
        params={k: v for k, v in (params or {}).items() if v is not None}, **sections)


def _train(args, cfg: dict, **options) -> None:
    from .api import pretrain

    if args.print_config:
        from .rundir import dump
        print(dump(cfg), end="")
        return
    out = Path(args.out or f"runs/{cfg['method']}-{cfg['dataset']}")
    metrics = pretrain(cfg, out, resume=args.resume, **options)
    if metrics:
        _print_summary(metrics, out, cfg)


def _cmd_pretrain(args) -> None:
    cfg = _run_config(args, online_probe={"enabled": True} if args.online_probe else None)
    _train(args, cfg, baselines=args.baselines, linear_probe=args.linear_probe)


def _cmd_semisup(args) -> None:
    from .methods import method_class

    if not method_class(args.method).semi_supervised:
        from .methods import METHODS
        raise SelfSupError(f"semisup trains a semi-supervised method, not '{args.method}'; choose one of: "
                           + ", ".join(name for name, cls in METHODS.items() if cls.semi_supervised))
    if args.init:
        from .io import read_checkpoint
        read_checkpoint(args.init)  # a clear error for a missing or damaged file, before any work
    params = {"labels_per_class": args.labels_per_class, "label_seed": args.label_seed, "balance": args.balance,
              "iterations": args.iterations}
    _train(args, _run_config(args, params, {"init": args.init}, protocol=args.protocol))


def _print_summary(metrics: dict, out: Path, cfg: dict) -> None:
    def pct(v):
        return "n/a" if v is None else f"{100 * v:.2f}%"
    print(f"\n{metrics['method']} on {metrics['dataset']} ({cfg['recipe']} recipe): {metrics['epochs']} epochs in "
          f"{metrics['train_seconds']:.0f} s "
          f"({metrics['samples_per_second']:.0f} samples/s), final loss {metrics['final_loss']:.4f}")
    if "test_top1" in metrics:
        print(f"  classifier test top-1: {pct(metrics['test_top1'])}")
    print(f"  kNN top-1 (k={cfg['knn']['k']}, T={cfg['knn']['temperature']}, backbone features): {pct(metrics['knn_top1'])}")
    baselines = metrics.get("baselines", {})
    raw = "values" if cfg["data"].get("modality") == "series" else "pixels"
    names = {"raw_pixels": f"raw {raw}", "standardized_pixels": f"standardised {raw}",
             "random_init": "random-init backbone"}
    for key, label in names.items():
        if f"{key}_knn_top1" in baselines:
            print(f"  baseline kNN top-1, {label}: {pct(baselines[f'{key}_knn_top1'])}")
    if metrics.get("online_linear_top1") is not None:
        print(f"  online linear probe top-1 (trained during pretraining): {pct(metrics['online_linear_top1'])}")
    if metrics.get("linear_top1") is not None:
        print(f"  linear probe top-1 (100 epochs, backbone features): {pct(metrics['linear_top1'])}")
        for key, label in names.items():
            if f"{key}_linear_top1" in baselines:
                print(f"  baseline linear probe top-1, {label}: {pct(baselines[f'{key}_linear_top1'])}")
    print(f"  results in {out}/metrics.json, checkpoint in {out}/checkpoints/last.ckpt")


def _cmd_evaluate(args) -> None:
    from .eval.run import EvalRequest, evaluate, protocol_options

    options = {name: getattr(args, name) for name in protocol_options(args.protocol)}
    result = evaluate(EvalRequest.make(args.protocol, args.checkpoint, **options))
    print(json.dumps(result, indent=2))


def _cmd_forecast(args) -> None:
    from .rundir import dump
    from .timeseries.run import default_out, forecast_config, run_forecast, summary

    flags = {"model": args.model, "series": args.series, "csv": args.csv, "columns": args.column,
             "date_column": args.date_column, "interpolate": args.interpolate, "season": args.season,
             "lags": args.lags, "horizon": args.horizon, "seed": args.seed, "network": {"epochs": args.epochs},
             "decomposition": {"window": args.window, "trials": args.eemd_trials, "noise_width": args.noise_width,
                               "seed": args.eemd_seed, "max_imfs": args.max_imfs, "threshold": args.threshold,
                               "mode": "leaky-whole-series" if args.leaky_decomposition else None}}
    cfg = forecast_config(flags, args.set)
    if args.print_config:
        print(dump(cfg), end="")
        return
    out = Path(args.out) if args.out else default_out(cfg)
    print(summary(run_forecast(cfg, out, resume=args.resume), out))


def _cmd_benchmark(args) -> None:
    from .bench import run_suite

    run_suite(args.suite, Path(args.out), data_dir=args.data_dir, methods=args.method, row=args.row,
              labels_per_class=args.labels_per_class, label_seed=args.label_seed)


def _cmd_export(args) -> None:
    from .export import export_backbone

    info = export_backbone(args.run, args.format, args.out)
    check = info["check"]
    difference = "not checked (onnxruntime is not installed)" if check["max_abs_difference"] is None else \
        f"largest difference {check['max_abs_difference']:.2e} on {check['inputs']}"
    print(f"exported the {info['backbone']['name']} backbone of {info['method']} to {info['file']} "
          f"({info['feature_dim']} features; {difference})")
    print(f"how to load it: {info['file']}.json; inputs normalised with mean {info['normalization']['mean']}, "
          f"std {info['normalization']['std']}")
    print(info["recipe"], end="")


def _cmd_status(args) -> None:
    from .rundir import runs_under

    rows = [run.progress() for path in args.paths for run in runs_under(path)]
    shown = [{"run": r["run"], "state": r["state"], "epochs": r["epochs"],
              "monitor kNN": "" if r["monitor_knn"] is None else f"{r['monitor_knn']:.4f}",
              "kNN": "" if r["knn"] is None else f"{r['knn']:.4f}", "precision": r["precision"] or "",
              "hours": "" if r["hours"] is None else f"{r['hours']:.1f}",
              "hours left": "" if r["hours_left"] is None else f"{r['hours_left']:.1f}"} for r in rows]
    widths = {c: max(len(c), *(len(row[c]) for row in shown)) for c in shown[0]}
    for row in [dict(zip(widths, widths)), *shown]:
        print("  ".join(row[c].ljust(widths[c]) for c in widths).rstrip())
    from .bench import rows_not_begun
    from .bench.suites import older_results

    for path in args.paths:
        suite = rows_not_begun(Path(path))
        if suite and suite[2]:
            name, total, waiting = suite
            print(f"{name}: {len(waiting)} of its {total} rows not begun: {'; '.join(waiting)}")
        older = [f"{run.path.name} ({', '.join(names)})" for run in runs_under(path) if (names := older_results(run.path))]
        if older:
            print(f"{path}: results made before a fix of their protocol (a suite makes them again when their row or "
                  f"method is run): {'; '.join(older)}")


def _cmd_report(args) -> None:
    from .report import write_report

    index = write_report(args.runs, Path(args.out))
    print(f"report in {index} (markdown: {index.parent / 'report.md'})")


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    if not args.debug:
        warnings.simplefilter("ignore")  # library deprecation chatter; --debug shows it
        os.environ.setdefault("PYTHONWARNINGS", "ignore")  # and in DDP worker processes
    handlers = {"list": _cmd_list, "pretrain": _cmd_pretrain, "semisup": _cmd_semisup, "evaluate": _cmd_evaluate,
                "benchmark": _cmd_benchmark, "report": _cmd_report, "forecast": _cmd_forecast,
                "export": _cmd_export, "status": _cmd_status}
    try:
        handlers[args.command](args)
    except SelfSupError as exc:
        if args.debug:
            raise
        print(f"selfsup: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("selfsup: interrupted; resume a pretraining run with --resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

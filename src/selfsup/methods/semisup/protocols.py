"""Published training protocols, laid over a semi-supervised method's config before the
user's settings (``selfsup semisup --protocol NAME``; ``selfsup.configure(protocol=NAME)``).

``usb-classic``: the classic computer-vision setting of USB (Wang et al., NeurIPS 2022
datasets track, and its TorchSSL predecessor; FixMatch's CIFAR recipe), under which USB
reports every algorithm on CIFAR-10 with 40, 250 and 4000 labels: WRN-28-2 (CIFAR-10) or
WRN-28-8 (CIFAR-100); 64 labelled images a step and each method's μ (7 for the FixMatch
family, 1 for Pseudo-Label, Mean Teacher, MixMatch and ReMixMatch, as USB's configs; the
protocol sets Pseudo-Label's, whose default is 7); SGD lr 0.03, Nesterov momentum 0.9, weight
decay 5e-4 (1e-3 on CIFAR-100) on weights only; FixMatch's cos(7πk/16K) without warm-up;
2^20 steps (as epochs of one pass over the 50,000-image pool); the EMA network (0.999)
predicts; weak view flip and shifts of up to 12.5% (reflected borders), strong view
RandAugment of 3 operations with random magnitudes and Cutout.  MixMatch takes USB's λu
(75 on CIFAR-10, 150 on CIFAR-100) and MixUp α 0.5 in place of its defaults, the paper's
λu 100 and α 0.75.  UDA keeps the paper's sharpening of its targets (T 0.4), where USB's code
applies none (its UDA asks its pseudo-label hook for no softmax, so the T of its config goes
unused).  USB evaluates every 5120 steps: the kNN monitor runs about as often.  USB
normalises CIFAR-10 with ImageNet's mean and std and CIFAR-100 with its own; we use each data
set's own, as every selfsup run of these data sets (the same as USB on CIFAR-100).
"""
from __future__ import annotations

import math

from ...errors import SelfSupError
from .mixmatch import MixMatch
from .pseudo_label import PseudoLabel

USB_STEPS = 2 ** 20
USB_EVAL_STEPS = 5120
CIFAR_TRAIN_SIZE = 50_000


def usb_method_params(dataset: str, method: str) -> dict:
    """USB's classic-CV settings of ``method`` where its configs differ from our defaults."""
    if method == PseudoLabel.name:
        return {"unlabelled_ratio": 1}
    if method == MixMatch.name:
        return {"lambda_u": 75.0 if dataset == "cifar10" else 150.0, "alpha": 0.5}
    return {}


def usb_classic(dataset: str | None, method: str, params: dict) -> dict:
    """The usb-classic layer for ``dataset`` and ``method``, whose params are ``params``."""
    if dataset not in ("cifar10", "cifar100"):
        raise SelfSupError(f"--protocol usb-classic trains on CIFAR-10 or CIFAR-100 (--dataset cifar10 or cifar100 "
                           f"with --data-dir), not {dataset or 'the default data set'}")
    batch = 64
    usb = usb_method_params(dataset, method)
    steps_per_epoch = CIFAR_TRAIN_SIZE // (batch * usb.get("unlabelled_ratio", params["unlabelled_ratio"]))
    own = {"ema": 0.999, "translate": 0.125, "strong_ops": 3}
    return {"dataset": dataset, "batch_size": batch, "epochs": math.ceil(USB_STEPS / steps_per_epoch),
            "backbone": {"name": "wrn-28-2" if dataset == "cifar10" else "wrn-28-8"},
            "optimizer": {"name": "sgd", "lr": 0.03, "lr_scaling": "none", "momentum": 0.9, "nesterov": True,
                          "weight_decay": 5e-4 if dataset == "cifar10" else 1e-3, "decay_biases_and_norms": False},
            "schedule": {"warmup_epochs": 0, "shape": "fixmatch"},
            "knn": {"every_n_epochs": max(1, round(USB_EVAL_STEPS / steps_per_epoch))},
            "params": {**{k: v for k, v in own.items() if k in params}, **usb}}


PROTOCOLS = {"usb-classic": usb_classic}

"""Published training protocols, laid over a semi-supervised method's config before the
user's settings (``selfsup semisup --protocol NAME``; ``selfsup.configure(protocol=NAME)``).

``usb-classic``: the classic computer-vision setting of USB (Wang et al., NeurIPS 2022
datasets track, and its TorchSSL predecessor; FixMatch's CIFAR recipe), under which USB
reports every algorithm on CIFAR-10 with 40, 250 and 4000 labels: WRN-28-2 (CIFAR-10) or
WRN-28-8 (CIFAR-100); 64 labelled images a step and each method's μ (7 for the FixMatch
family, 1 for Mean Teacher, MixMatch and ReMixMatch, as USB's configs); SGD lr 0.03, Nesterov
momentum 0.9, weight decay 5e-4 (1e-3 on CIFAR-100) on weights only; FixMatch's
cos(7πk/16K) without warm-up; 2^20 steps (as epochs of one pass over the 50,000-image pool);
the EMA network (0.999) predicts; weak view flip and shifts of up to 12.5% (reflected
borders), strong view RandAugment of 3 operations with random magnitudes and Cutout.  USB
evaluates every 5120 steps: the kNN monitor runs about as often.  USB normalises CIFAR with
ImageNet's mean and std; we use CIFAR's own, as every selfsup run of these data sets.
"""
from __future__ import annotations

import math

from ...errors import SelfSupError

USB_STEPS = 2 ** 20
USB_EVAL_STEPS = 5120
CIFAR_TRAIN_SIZE = 50_000


def usb_classic(dataset: str | None, params: dict) -> dict:
    """The usb-classic layer for ``dataset`` and a method whose params are ``params``."""
    if dataset not in ("cifar10", "cifar100"):
        raise SelfSupError(f"--protocol usb-classic trains on CIFAR-10 or CIFAR-100 (--dataset cifar10 or cifar100 "
                           f"with --data-dir), not {dataset or 'the default data set'}")
    batch = 64
    steps_per_epoch = CIFAR_TRAIN_SIZE // (batch * params["unlabelled_ratio"])
    own = {"ema": 0.999, "translate": 0.125, "strong_ops": 3}
    return {"dataset": dataset, "batch_size": batch, "epochs": math.ceil(USB_STEPS / steps_per_epoch),
            "backbone": {"name": "wrn-28-2" if dataset == "cifar10" else "wrn-28-8"},
            "optimizer": {"name": "sgd", "lr": 0.03, "lr_scaling": "none", "momentum": 0.9, "nesterov": True,
                          "weight_decay": 5e-4 if dataset == "cifar10" else 1e-3, "decay_biases_and_norms": False},
            "schedule": {"warmup_epochs": 0, "shape": "fixmatch"},
            "knn": {"every_n_epochs": max(1, round(USB_EVAL_STEPS / steps_per_epoch))},
            "params": {k: v for k, v in own.items() if k in params}}


PROTOCOLS = {"usb-classic": usb_classic}

"""The one Lightning module that trains any ``Method``."""
from __future__ import annotations

import functools

import lightning as L
import torch
import torch.nn.functional as F

from ..config import RunSettings
from ..data.datasets import batch_inputs
from ..data.views import clean_view, make_views
from ..errors import SelfSupError
from ..eval.features import embed_split, eval_mode
from ..distributed import world_info
from ..build import build_method, run_normalization, uses_channels_last
from ..rng import seed_default_generators, seeded_generator
from ..optim import StepSchedule, build_optimizer, warmup_cosine


class NonFiniteLossError(SelfSupError):
    pass


def compile_networks(module: torch.nn.Module) -> int:
    """``torch.compile`` in place (``nn.Module.compile``: parameters, buffers and checkpoint keys
    unchanged) the networks of ``module``: a backbone's ``compile_regions`` (its stages or
    blocks, so that the method's other entry points, such as a ViT's ``tokens``, run compiled
    code too), every other child with parameters whole, and children holding a backbone
    (a momentum encoder's wrapper) by the same rule inside; returns how many were compiled.
    Modules of one class share Dynamo's cache of compiled graphs (a ResNet's stages and the MLP
    heads are all ``nn.Sequential``, each with its own shapes, with and without gradients), so
    its limit is raised to two graphs per compiled module: past it Dynamo runs eager code."""
    compiled = 0
    for child in module.children():
        if hasattr(child, "compile_regions"):
            for region in child.compile_regions():
                region.compile()
                compiled += 1
        elif any(hasattr(m, "compile_regions") for m in child.modules()):
            compiled += compile_networks(child)
        elif next(child.parameters(), None) is not None:
            child.compile()
            compiled += 1
    import torch._dynamo

    dynamo = torch._dynamo.config
    dynamo.recompile_limit = max(dynamo.recompile_limit, 2 * compiled)
    dynamo.accumulated_recompile_limit = max(dynamo.accumulated_recompile_limit, 4 * compiled)
    return compiled


class PretrainModule(L.LightningModule):
    """Makes the method's views on the device, calls its hooks and step, owns optimiser and
    schedule, and the online probe (``online_probe``: a normalised linear classifier on the method's
    detached features of the clean batch, trained by the same optimiser at its own fixed rate;
    its loss is added to the method's, which its gradients cannot reach).  ``train_set`` (set by
    ``pretrain``) is what the epoch-start ``embed`` helper reads."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.save_hyperparameters({"cfg": dict(cfg)})  # a plain dict: checkpoints load with weights_only
        self.cfg = cfg
        self.method = build_method(cfg)
        self.norm = run_normalization(cfg)
        self.channels_last = uses_channels_last(cfg)
        self.train_set = None
        self.epoch_history: list[dict] = []  # what the method's epoch-start hook reported
        self.loss_history: list[dict] = []  # filled by the LossHistory callback
        settings = RunSettings.of(cfg)
        probe = settings.online_probe
        self.online_probe_rate = probe.rate(settings.optimizer.name)
        # BatchNorm without affine parameters before the linear layer, as MAE's linear probe (He et
        # al. 2022, A.2): one rate then serves every method's feature scale
        self.online_probe = (torch.nn.Sequential(torch.nn.BatchNorm1d(self.method.feature_dim, affine=False),
                                                 torch.nn.Linear(self.method.feature_dim, cfg["data"]["num_classes"]))
                             if probe.enabled else None)
        if self.channels_last:
            self.method.to(memory_format=torch.channels_last)
        if settings.trainer.compile:
            compile_networks(self.method)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.method.features(images)

    def training_step(self, batch, batch_idx):
        # Random numbers for the step, a function of (seed, epoch, batch, rank) only: a resumed
        # run draws exactly what the uninterrupted run drew (the device's default generator too).
        rank, _ = world_info()
        key = (self.cfg["seed"], self.current_epoch, batch_idx, rank)
        view_maker = functools.partial(make_views, norm=self.norm, generator=seeded_generator(self.device, *key),
                                       channels_last=self.channels_last)
        self.method.generator = seeded_generator(self.device, *key, "method")
        seed_default_generators(*key)
        batch = self.method.prepare_batch(batch, view_maker)
        out = self.method.training_step(batch, self.global_step)
        loss = out["loss"]
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"the loss became {loss.item()} at epoch {self.current_epoch}, step {self.global_step}; "
                "the last checkpoint (end of the previous epoch) is intact. Lower optimizer.lr, "
                "raise schedule.warmup_epochs, or use precision 32-true")
        size = self.method.batch_size(batch)
        self.log("loss", loss.detach(), prog_bar=True, on_step=True, on_epoch=True, batch_size=size)
        extra = {f"train/{k}": (v.detach() if torch.is_tensor(v) else v) for k, v in out.items() if k != "loss"}
        if extra:
            self.log_dict(extra, on_step=True, on_epoch=False, batch_size=size)
        if self.online_probe is not None:
            loss = loss + self.online_probe_step(batch, size)
        return loss

    def online_probe_step(self, batch: dict, size: int) -> torch.Tensor:
        """The probe's cross-entropy on the clean batch's features (eval mode, no gradient into
        the method; unlabelled images, label -1, are left out), its accuracy logged."""
        if "label" not in batch or not ("image" in batch or "series" in batch):
            raise SelfSupError(f"the online probe needs batches of inputs and labels, and {self.cfg['method']} "
                               "trains on batches of its own structure; leave online_probe off")
        x = clean_view(batch_inputs(batch), self.norm)
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), eval_mode(self.method):
            features = self.method.features(x).float()
        scores, labels = self.online_probe(features), batch["label"]
        known = labels >= 0
        probe_loss = F.cross_entropy(scores[known], labels[known]) if known.any() else scores.sum() * 0
        top1 = (scores[known].argmax(1) == labels[known]).float().mean() if known.any() else None
        self.log("online/loss", probe_loss.detach(), on_step=False, on_epoch=True, batch_size=size)
        if top1 is not None:
            self.log("online/train_top1", top1, on_step=False, on_epoch=True, batch_size=int(known.sum()))
        return probe_loss

    def online_scores(self, x: torch.Tensor) -> torch.Tensor:
        """The online probe's class scores for normalised inputs ``x``, in eval mode."""
        with eval_mode(self.online_probe):
            return self.online_probe(self.method.features(x).float())

    def on_before_optimizer_step(self, optimizer):
        self.method.on_before_optimizer_step(self.current_epoch, self.global_step)

    def on_train_start(self):
        self._steps_seen = self.global_step

    def on_train_batch_end(self, outputs, batch, batch_idx):
        if self.global_step != self._steps_seen:  # an optimiser step happened (not so between accumulated batches)
            self._steps_seen = self.global_step
            self.method.on_step_end(self.global_step, int(self.trainer.estimated_stepping_batches))

    def embed_training_set(self, encode=None):
        """(features, labels) of the whole clean training split on this device, every rank the same."""
        return embed_split(encode or self.method.features, self.method, self.train_set, self.norm, self.device,
                           self.channels_last)

    def on_train_epoch_start(self):
        # Our samplers draw their order lazily at the first batch, i.e. after this hook.
        sampler = self.trainer.train_dataloader.batch_sampler
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self.current_epoch)
        self.method.generator = seeded_generator(self.device, self.cfg["seed"], self.current_epoch, "epoch")
        stats = self.method.on_epoch_start(self.current_epoch, self.embed_training_set)
        if stats:
            self.epoch_history.append({"epoch": self.current_epoch, **stats})
            self.log_dict({f"epoch/{k}": float(v) for k, v in stats.items()}, on_step=False, on_epoch=True)
        reset = self.method.take_reinitialized()
        for optimizer in (self.trainer.optimizers if reset else []):
            for param in reset:
                optimizer.state.pop(param, None)

    def on_save_checkpoint(self, checkpoint):
        checkpoint["epoch_history"] = self.epoch_history
        checkpoint["loss_history"] = self.loss_history

    def on_load_checkpoint(self, checkpoint):
        self.epoch_history = list(checkpoint.get("epoch_history", []))
        self.loss_history = list(checkpoint.get("loss_history", []))

    def configure_optimizers(self):
        t = self.cfg["trainer"]
        effective_batch = self.cfg["batch_size"] * t["accumulate_grad_batches"] * self.trainer.world_size
        groups = self.method.parameter_groups()
        if self.online_probe is not None:
            groups.append({"params": list(self.online_probe.parameters()), "lr": self.online_probe_rate,
                           "weight_decay": 0.0, "lars_exclude": True, "fixed_lr": True})
        optimizer = build_optimizer(groups, self.cfg["optimizer"], effective_batch)
        total = int(self.trainer.estimated_stepping_batches)
        steps_per_epoch = max(1, total // max(1, self.cfg["epochs"]))
        warmup = min(int(self.cfg["schedule"]["warmup_epochs"] * steps_per_epoch), total // 10)
        scheduled = functools.partial(warmup_cosine, total_steps=total, warmup_steps=warmup,
                                      final_ratio=self.cfg["schedule"]["final_lr_ratio"],
                                      shape=self.cfg["schedule"].get("shape", "cosine"))
        # groups marked fixed_lr keep their rate: no warm-up, no decay (SimSiam's predictor)
        rules = [(lambda step: 1.0) if group.get("fixed_lr") else scheduled for group in optimizer.param_groups]
        final_decay = self.cfg["schedule"].get("final_weight_decay")
        if final_decay is None:
            schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, rules)
        else:  # every group's weight decay along a cosine, by the ratio of the final to the configured value
            decay = functools.partial(warmup_cosine, total_steps=total, warmup_steps=0,
                                      final_ratio=final_decay / self.cfg["optimizer"]["weight_decay"])
            schedule = StepSchedule(optimizer, rules, decay)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

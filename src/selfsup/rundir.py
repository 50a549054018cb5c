"""The run directory: one object that every command (``pretrain``, ``semisup``, ``forecast``)
and every benchmark suite uses to start, resume, reuse and finish a run.

A run directory holds ``config.yaml`` (the fully resolved settings, written before training),
``checkpoints/last.ckpt`` (written atomically after every epoch; under ``$SELFSUP_CHECKPOINT_ROOT``
at the run directory's absolute path where that is set), ``logs/`` and, once the run finished,
``metrics.json``.  One rule says whether a run directory holds "the same run" as a
configuration: ``RunDirectory.differences`` (options the run's config.yaml lacks, added to the
library since, count as the configuration's; a setting the configuration leaves ``auto``
matches whatever the run resolved it to; how it computes (progress bar, loggers, precision) never
counts, so a run resumed on another machine may train its remaining epochs in another precision).  A
command compares every setting; a suite may compare only the settings that decide what is
trained (``scope``).
"""
from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import yaml

from .errors import SelfSupError
from .io import atomic_write_text, ensure_writable_dir, read_checkpoint, write_json

CHECKPOINT_ROOT = "SELFSUP_CHECKPOINT_ROOT"  # environment variable: where checkpoints live, if not in the runs
# how a run computes, not what it trains: never makes two runs differ, and a resume may change it
# (a run moved to a machine whose `auto` precision is another; metrics.json names each epoch's)
UNCOMPARED = ("trainer.progress_bar", "trainer.loggers", "trainer.precision")


class ResumeMismatch(SelfSupError):
    """--resume of a run directory whose run was begun with other settings."""


def setting_differences(a, b, where: str = "") -> list[str]:
    """Dotted names of the settings that differ between two resolved configs; ``UNCOMPARED``
    ones do not count."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for key in sorted(set(a) | set(b), key=str)
                for d in setting_differences(a.get(key), b.get(key), f"{where}{key}.")]
    name = where.rstrip(".")
    return [] if a == b or any(name == u or name.startswith(u + ".") for u in UNCOMPARED) else [name]


def dump(cfg: dict) -> str:
    """A resolved configuration as config.yaml writes it (a plain mapping, whatever its class)."""
    return yaml.safe_dump(dict(cfg), sort_keys=False)


def precision_record(loss_history: list[dict]) -> str | None:
    """The precision of a run's epochs, from its ``loss_history``: one name, or each segment's
    with its epochs where a resume changed it ("bf16-mixed (epochs 1-14), 32-true (epochs 15-50)")."""
    segments: list[list] = []  # [precision, first epoch, last epoch], epochs counted from 1
    for entry in loss_history:
        if segments and segments[-1][0] == entry.get("precision"):
            segments[-1][2] = entry["epoch"] + 1
        else:
            segments.append([entry.get("precision"), entry["epoch"] + 1, entry["epoch"] + 1])
    if not segments or any(name is None for name, _, _ in segments):
        return None
    if len(segments) == 1:
        return segments[0][0]
    return ", ".join(f"{name} (epoch{'s' if a != b else ''} {a}{f'-{b}' if a != b else ''})"
                     for name, a, b in segments)


def runs_under(path: str | Path) -> list[RunDirectory]:
    """The run directories ``path`` names: itself where it holds a config.yaml, else the folders
    with one in ``path/runs`` (a suite's output) or in ``path``; a clear error where there are none."""
    path = Path(path)
    if (path / "config.yaml").is_file():
        return [RunDirectory(path)]
    folder = path / "runs" if (path / "runs").is_dir() else path
    runs = sorted(p for p in folder.glob("*/") if (p / "config.yaml").is_file()) if folder.is_dir() else []
    if not runs:
        raise SelfSupError(f"{path}: no run directory (a folder with config.yaml) there, in it or in its runs/")
    return [RunDirectory(p) for p in runs]


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _last_knn(history: list[dict] | None) -> float | None:
    return next((h["knn_top1"] for h in reversed(history or []) if h.get("knn_top1") is not None), None)


def _hours_left(history: list[dict], epochs: int | None, recent: int = 3) -> float | None:
    """The epochs still to train times the mean ``seconds`` of the last ``recent`` epochs'
    entries (those of the machine and precision training now), in hours; None where no entry
    has its seconds (written before entries did) or the epochs asked are unknown."""
    seconds = [entry["seconds"] for entry in history[-recent:] if "seconds" in entry]
    if not seconds or not isinstance(epochs, int):
        return None
    return max(epochs - len(history), 0) * sum(seconds) / len(seconds) / 3600


def _filled(saved, cfg):
    """``saved`` with the options it lacks taken from ``cfg`` and ``cfg``'s ``auto`` values
    replaced by what the run resolved them to (so they compare equal)."""
    if not (isinstance(saved, dict) and isinstance(cfg, dict)):
        return saved
    return {**cfg, **{key: _filled(value, cfg.get(key)) for key, value in saved.items()}}


def _auto_resolved(cfg, saved):
    """``cfg`` with each ``auto`` value replaced by ``saved``'s value at the same place."""
    if isinstance(cfg, dict) and isinstance(saved, dict):
        return {key: _auto_resolved(value, saved.get(key)) for key, value in cfg.items()}
    return saved if cfg == "auto" and saved is not None else cfg


def checkpoint_of(run: str | Path) -> Path:
    """The checkpoint of ``run``: a run directory (its ``checkpoints/last.ckpt``) or a checkpoint file."""
    run = Path(run)
    if run.is_dir():
        return RunDirectory(run).checkpoint
    if not run.exists():
        raise SelfSupError(f"{run}: no such run directory or checkpoint")
    return run


def _checkpoint_root() -> Path | None:
    root = os.environ.get(CHECKPOINT_ROOT)
    return Path(root).resolve() if root else None


def run_of_checkpoint(checkpoint: str | Path) -> Path:
    """The run directory whose checkpoint ``checkpoint`` is (the inverse of ``RunDirectory.checkpoint``)."""
    held = Path(checkpoint).resolve().parent.parent
    root = _checkpoint_root()
    if root is not None and held.is_relative_to(root):
        return Path(held.anchor) / held.relative_to(root)
    return held


def _in_scope(name: str, scope) -> bool:
    return scope is None or any(name == s or name.startswith(s + ".") for s in scope)


def _trained_precision(metrics: dict, saved: dict) -> str:
    """metrics.json's precision record, else config.yaml's precision."""
    return metrics.get("precision") or saved["trainer"]["precision"]


class RunDirectory:
    """One run's folder (see the module docstring for its files and the sameness rule)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def config_file(self) -> Path:
        return self.path / "config.yaml"

    @property
    def checkpoint(self) -> Path:
        """``checkpoints/last.ckpt`` in the run directory or, where ``$SELFSUP_CHECKPOINT_ROOT`` is
        set, in that folder at the run directory's absolute path (a scratch disk; a work tree laid
        anew between jobs on a machine that keeps its other folders)."""
        root = _checkpoint_root()
        held = root / self.path.resolve().relative_to(self.path.resolve().anchor) if root else self.path
        return held / "checkpoints" / "last.ckpt"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.json"

    def saved_config(self) -> dict | None:
        return (yaml.safe_load(self.config_file.read_text()) or {}) if self.config_file.is_file() else None

    def metrics(self) -> dict | None:
        """metrics.json's dict once the run finished, else None."""
        return json.loads(self.metrics_file.read_text()) if self.metrics_file.is_file() else None

    def claim_file(self, work: str = "") -> Path:
        """The file a suite's process holds while it trains the run (``.NAME.claim`` beside the
        folder; ``.NAME.WORK.claim`` for other ``work`` on it, such as its evaluations)."""
        return self.path.parent / f".{self.path.name}{'.' + work if work else ''}.claim"

    def _claimant(self, work: str) -> str | None:
        """The claim file's text (its owner's process id; empty while the owner writes it), None
        without a claim."""
        try:
            return self.claim_file(work).read_text().strip()
        except FileNotFoundError:
            return None

    def holder(self, work: str = "") -> int | None:
        """The process id of the live process on this machine that holds the run's claim, else None."""
        held = self._claimant(work)
        return int(held) if held and held.isdigit() and process_alive(int(held)) else None

    @contextmanager
    def claim(self, work: str = ""):
        """Claim the run for this process while it trains (or does other ``work`` on it, such as
        its evaluations), so that the same suite command started in several processes (say one
        per core, each with ``OMP_NUM_THREADS=1``) shares out its rows: yields False while another
        live process on this machine holds the claim.  The claim is ``claim_file(work)``, holding
        the owner's process id; a claim left by a process that died is taken over."""
        path = self.claim_file(work)
        path.parent.mkdir(parents=True, exist_ok=True)
        ours = False
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                held = self._claimant(work)
                if held is None:  # released meanwhile: try again, without touching a newer claim
                    continue
                if not held.isdigit() or process_alive(int(held)):  # "": its owner is writing it
                    break
                path.unlink(missing_ok=True)  # its owner died
                continue
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            ours = True
            break
        try:
            yield ours
        finally:
            if ours:
                path.unlink(missing_ok=True)

    def progress(self) -> dict:
        """Where the run stands, from its files alone: ``state`` (finished; training, with the
        claim's process; stopped, resumable from its checkpoint; begun, with no checkpoint yet),
        epochs done and asked for, the last monitor kNN, the final kNN, precision and hours trained
        and, for a run stopped or training, the hours left at its recent epochs' pace (a checkpoint
        that cannot be read is a state, not an error)."""
        saved, metrics = self.saved_config() or {}, self.metrics()
        row = {"run": str(self.path), "state": "", "epochs": "", "monitor_knn": None, "knn": None,
               "precision": None, "hours": None, "hours_left": None}
        if metrics is not None:
            return {**row, "state": "finished", "epochs": str(metrics.get("epochs", "")), "knn": metrics.get("knn_top1"),
                    "monitor_knn": _last_knn(metrics.get("knn_history")), "precision": _trained_precision(metrics, saved),
                    "hours": metrics.get("train_seconds", 0) / 3600}
        holder = self.holder()
        if not self.checkpoint.is_file():
            state = f"training (process {holder}), first epoch" if holder else "begun, no checkpoint yet"
            return {**row, "state": state, "epochs": f"0/{saved.get('epochs', '?')}"}
        try:
            checkpoint, _ = read_checkpoint(self.checkpoint)
        except SelfSupError:  # one damaged run does not hide where the others stand
            return {**row, "state": "stopped, checkpoint unreadable", "epochs": f"?/{saved.get('epochs', '?')}"}
        callbacks = checkpoint.get("callbacks", {})
        history = checkpoint.get("loss_history", [])
        state = f"training (process {holder})" if holder else "stopped, resumable"
        return {**row, "state": state, "epochs": f"{len(history)}/{saved.get('epochs', '?')}",
                "monitor_knn": _last_knn(callbacks.get("KNNMonitor", {}).get("history")),
                "precision": precision_record(history) or saved.get("trainer", {}).get("precision"),
                "hours": callbacks.get("Throughput", {}).get("wall_seconds", 0) / 3600,
                "hours_left": _hours_left(history, saved.get("epochs"))}

    def precision(self) -> str:
        """The precision the run trained in: metrics.json's record of its segments (``precision_record``),
        else config.yaml's (a run finished before metrics.json recorded it)."""
        return _trained_precision(self.metrics() or {}, self.saved_config())

    def differences(self, cfg: dict, scope: tuple[str, ...] | None = None, earlier: dict | None = None) -> list[str]:
        """The settings (dotted names, among ``scope``: top-level sections or dotted settings;
        None: all) in which the run here was made otherwise than ``cfg`` says.  ``earlier``: the
        values of params the run's config.yaml may lack because they were added since, as such
        runs trained (the method's ``earlier_runs``); any other missing option counts as ``cfg``'s."""
        saved = self.saved_config() or {}
        if earlier and isinstance(saved.get("params"), dict):
            saved = {**saved, "params": {**earlier, **saved["params"]}}
        names = setting_differences(_filled(saved, cfg), _auto_resolved(cfg, saved))
        return [name for name in names if _in_scope(name, scope)]

    def start(self, cfg: dict, resume: bool, earlier: dict | None = None) -> Path | None:
        """Make ready to run ``cfg`` here; the checkpoint to resume from (None: from the start).
        Refuses, with a clear message, anything that would damage a run: a finished run (unless
        ``resume`` extends it to more epochs: its metrics.json is kept as
        ``metrics-<epochs>-epochs.json``), a folder holding other files without ``resume``, a
        resume with other settings."""
        out = self.path
        if out.exists() and not out.is_dir():
            raise SelfSupError(f"{out} is a file, not a run directory; choose another --out")
        extends = False
        if out.is_dir() and any(out.iterdir()):
            if not self.config_file.is_file():
                raise SelfSupError(f"{out} is not empty and holds no run (no config.yaml); choose another --out")
            if not resume:
                finished = "a finished run (metrics.json)" if self.metrics_file.exists() else "a run"
                raise SelfSupError(f"{out} already holds {finished}; pass --resume to continue it (with a larger "
                                   "--epochs to extend a finished one) or choose another --out")
            changed = self.differences(cfg, earlier=earlier)
            saved_epochs = (self.saved_config() or {}).get("epochs", 0)
            extends = self.metrics_file.exists() and changed == ["epochs"] and cfg["epochs"] > saved_epochs
            if self.metrics_file.exists() and not extends:
                raise SelfSupError(f"{out} already holds a finished run of {saved_epochs} epochs; to extend it, "
                                   "--resume with the same settings and a larger --epochs")
            if changed and not extends:
                raise ResumeMismatch(f"--resume must repeat the run's settings; these differ from "
                                     f"{self.config_file}: {', '.join(changed)}")
        if not self.checkpoint.is_file():
            if extends:
                raise SelfSupError(f"{out} holds a finished run but no checkpoint to extend it from")
            return None
        read_checkpoint(self.checkpoint)  # a clear error for a damaged checkpoint, before anything reads it
        if extends:  # the earlier result is kept, never overwritten
            self.metrics_file.rename(out / f"metrics-{saved_epochs}-epochs.json")
        return self.checkpoint

    def write_config(self, cfg: dict) -> None:
        """Write the resolved settings, after proving the folder writable."""
        ensure_writable_dir(self.path)
        atomic_write_text(self.config_file, dump(cfg))

    def finish(self, metrics: dict) -> dict:
        write_json(self.metrics_file, metrics)
        return metrics

    def remove(self) -> None:
        """Delete the run directory and its checkpoint; under ``$SELFSUP_CHECKPOINT_ROOT`` the
        folders left empty on the way up to the root go too."""
        mirror = self.checkpoint.parent.parent  # the run directory itself where no root is set
        shutil.rmtree(mirror, ignore_errors=True)
        shutil.rmtree(self.path, ignore_errors=True)
        root, folder = _checkpoint_root(), mirror.parent
        while root is not None and folder != root and folder.is_relative_to(root) and folder.is_dir() \
                and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent

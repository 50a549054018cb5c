"""Accuracy suites: pretrain methods on equal budgets, then kNN, linear probe and baselines."""
from __future__ import annotations

import copy
import json
import re
from contextlib import nullcontext
from pathlib import Path

from ..config import merge, resolve
from ..build import load_pretrained
from ..engine.train import load_datasets, pretrain
from ..eval.final import layer_probes, run_baselines
from ..errors import SelfSupError
from ..methods import method_class
from ..plots import curve_plot
from ..rundir import ResumeMismatch, RunDirectory
from .report import bar_plot, bf16_views_notes, finetune_revision_notes, write_table

DIAGNOSTICS = ("normalized_std", "effective_rank", "alignment", "uniformity")


# What a finished run must share with the suite's configuration to be reused: the settings that
# decide what is trained (a change of precision, logging or data loading keeps a run; the
# tables' precision column says how each was made).
SUITE_SCOPE = ("dataset", "subset", "seed", "epochs", "batch_size", "optimizer", "schedule", "params",
               "backbone.name", "backbone.width")


def run_slug(label: str) -> str:
    """The run folder name of a suite row's label: lower case, runs of other characters as one hyphen."""
    return re.sub(r"[^a-z0-9.]+", "-", label.lower()).strip("-")


def made_before_a_fix(metrics: dict, method: str) -> bool:
    """Whether a finished run predates a fix of its method (its ``Method.revision``)."""
    return metrics.get("method_revision", 1) < method_class(method).revision


BEFORE_FIX = " [before fix]"
def before_fix_note(what: str = "the run") -> str:
    """The tables' note on the ``BEFORE_FIX`` mark (``what``: what the mark stands on)."""
    return (f"`{BEFORE_FIX.strip()}`: {what} was made before a fix changed what its method trains (the method's "
            "`revision` in its source file says which fix); `--method M` makes it again.")


def finished_run(run_dir: Path, cfg: dict, redo: bool = True) -> dict | None:
    """metrics.json of the run in ``run_dir`` if it finished with ``cfg``'s settings (those of
    ``SUITE_SCOPE``); a run made with other settings is deleted when ``redo`` (to be run again),
    else ignored.  A run made before a fix of its method (``made_before_a_fix``; the fix may have
    changed the method's default settings too) is deleted when ``redo``, else returned with
    ``before_fix`` set, for the table to mark it until it is made again."""
    run = RunDirectory(run_dir)
    metrics = run.metrics()
    if metrics is None:
        return None
    if made_before_a_fix(metrics, cfg["method"]):
        if not redo:
            return {**metrics, "before_fix": True}
        print(f"{run_dir.name}: made before a fix of {cfg['method']} (revision {metrics.get('method_revision', 1)} < "
              f"{method_class(cfg['method']).revision}); running it again")
        run.remove()
        return None
    if run.differences(cfg, SUITE_SCOPE):
        if not redo:
            print(f"{run_dir.name}: the finished run in {run_dir} has other settings than the suite's; not shown "
                  f"(run the suite with --method {cfg['method']} to redo it)")
            return None
        print(f"{run_dir.name}: the suite's settings changed since the run in {run_dir}; running it again")
        run.remove()
        return None
    return metrics


def run_checkpoint(run_dir: Path) -> Path:
    """The checkpoint of the finished run in ``run_dir``.  Checkpoints are not committed, so
    where it is missing the run is pretrained again from its own ``config.yaml`` (same
    settings and seed, laid over the method's defaults as ``--config RUN/config.yaml`` does, so
    that options added since the run take their defaults) in ``run_dir/remade`` (resumable),
    whose ``metrics.json`` says how close the remade run came to the original; the original's
    metrics.json is left as it was."""
    run, remade = RunDirectory(run_dir), RunDirectory(run_dir / "remade")
    if run.checkpoint.exists():
        return run.checkpoint
    if not remade.checkpoint.exists() or remade.metrics() is None:
        print(f"{run_dir.name}: no checkpoint here (checkpoints are not committed); pretraining the run again from "
              f"its config.yaml in {remade.path}")
        remade.metrics_file.unlink(missing_ok=True)  # a remade run of another machine, its checkpoint gone
        pretrain(resolve(run.saved_config()["method"], str(run.config_file)), remade.path, resume=True)
    return remade.checkpoint


def made_by_current_code(result: dict, protocol: str) -> bool:
    """Whether an evaluation ``result`` was made by ``protocol``'s current code (``protocol_revision``)."""
    from ..eval.run import protocol_revision

    return result.get("revision", 1) >= protocol_revision(protocol)


def current_result(run_dir: Path, name: str, protocol: str) -> bool:
    """Whether ``RUN/eval_NAME.json`` exists and was made by ``protocol``'s current code."""
    output = run_dir / f"eval_{name}.json"
    return output.exists() and made_by_current_code(json.loads(output.read_text()), protocol)


def checkpoint_kind(result: dict) -> str:
    """"remade" where the evaluation ``result`` used a run pretrained again (``run_checkpoint``), else "original"."""
    return "remade" if Path(result["checkpoint"]).parent.parent.name == "remade" else "original"


def older_results(run_dir: Path) -> list[str]:
    """The names of the evaluation results in ``run_dir`` made before a fix of their protocol."""
    results = {p.stem.removeprefix("eval_"): json.loads(p.read_text()) for p in run_dir.glob("eval_*.json")}
    return sorted(name for name, result in results.items()
                  if result.get("protocol") and not made_by_current_code(result, result["protocol"]))


def evaluate_run(run_dir: Path, name: str, protocol: str, options: dict, remake_older: bool = False) -> dict:
    """``protocol`` on the run in ``run_dir``, kept as ``RUN/eval_NAME.json`` (read back when it
    exists; when ``remake_older``, made again if it predates a fix of the protocol, the old file
    replaced only once the new result is written)."""
    from ..eval.run import EvalRequest, evaluate

    output = run_dir / f"eval_{name}.json"
    if output.exists():
        stored = json.loads(output.read_text())
        if not remake_older or made_by_current_code(stored, protocol):
            return stored
        print(f"{run_dir.name}: {name} was made before a fix of the {protocol} protocol (revision "
              f"{stored.get('revision', 1)}); making it again")
    checkpoint = run_checkpoint(run_dir)
    print(f"{run_dir.name}: {name}")
    return evaluate(EvalRequest.make(protocol, checkpoint, output=str(output), **options))


def claimed_run(run_dir: Path, cfg: dict, label: str, train) -> dict | None:
    """metrics.json of ``run_dir``'s run finished with ``cfg``'s settings, else ``train()``'s
    (it trains the run and returns its metrics) under this process's claim; None while another
    live process of the suite holds the row."""
    metrics = finished_run(run_dir, cfg)
    if metrics is not None:
        return metrics
    with RunDirectory(run_dir).claim() as ours:
        if not ours:
            print(f"{label}: being trained by another process of this suite; left to it")
            return None
        return finished_run(run_dir, cfg) or train()  # finished by another process meanwhile


def pretrain_row(label: str, cfg: dict, run_dir: Path, **options) -> dict:
    """Pretrain (or resume) a suite's run; an unfinished run begun with other settings (the
    suite's changed since) is started over instead of resumed."""
    try:
        return pretrain(cfg, run_dir, resume=True, **options)
    except ResumeMismatch as exc:
        print(f"{label}: the unfinished run was begun with other settings; starting it again ({exc})")
        RunDirectory(run_dir).remove()
        return pretrain(cfg, run_dir, resume=True, **options)


def _add_layer_probes(run_dir: Path, metrics: dict, probe_epochs: int) -> dict:
    """Per-stage probes for a run finished before the suite asked for them, from its
    checkpoint (none: the run's row leaves those columns empty)."""
    run = RunDirectory(run_dir)
    if not run.checkpoint.exists():
        return metrics
    print(f"{run_dir.name}: adding per-stage linear probes from {run.checkpoint}")
    module = load_pretrained(run.checkpoint)
    _, bank, test = load_datasets(module.cfg)
    metrics["linear_layers"] = layer_probes(module.method, module.cfg, bank, test, probe_epochs)
    metrics["baselines"] = run_baselines(module.cfg, bank, test, probe_epochs, layers=True,
                                         cache=run_dir.parent.parent / "baselines")
    return run.finish(metrics)


def _finetune_columns(run_dir: Path, fraction: float, out: Path, remake_older: bool = False) -> dict:
    """``finetune_Npct`` and ``scratch_Npct`` of the run in ``run_dir`` (``evaluate_run``; a
    result older than the protocol's fix is made again when ``remake_older``, else shown with
    its ``finetune_revision``), empty while another process of the suite computes them."""
    name = f"finetune-{fraction * 100:g}pct"
    done = current_result(run_dir, name, "finetune") or (
        not remake_older and (run_dir / f"eval_{name}.json").exists())
    with nullcontext(True) if done else RunDirectory(run_dir).claim(name) as ours:
        result = evaluate_run(run_dir, name, "finetune", {"label_fraction": fraction,
                                                          "baseline_cache": str(out / "baseline-cache")},
                              remake_older) if ours else {}
    return {f"finetune_{fraction * 100:g}pct": result.get("top1"), f"scratch_{fraction * 100:g}pct": result.get("scratch_top1"),
            "finetune_revision": result.get("revision", 1) if result else None,
            "finetune_checkpoint": checkpoint_kind(result) if result else None}


def suite_config(overrides: dict, settings: dict, method: str, data_dir: str | None = None) -> dict:
    """A suite row's configuration: ``method``'s, then the suite's ``overrides``, then the row's ``settings``."""
    layer = copy.deepcopy(overrides)
    if data_dir:
        layer["data_dir"] = data_dir
    return resolve(method, flags=merge(layer, settings, strict=False))  # as the CLI resolves it (its recipe included)


def _layer_columns(layers: dict | None, wanted: bool) -> dict:
    """``linear_conv1..5`` columns (empty when the run has no per-stage probes)."""
    if not wanted:
        return {}
    return {f"linear_conv{i}": (layers or {}).get(f"conv{i}") for i in range(1, 6)}


def accuracy_suite(out: Path, name: str, title: str, runs: list[tuple[str, str, dict]], overrides: dict,
                   probe_epochs: int, data_dir: str | None = None, selected: list[str] | None = None,
                   probe_layers: bool = False, findings=None, selected_rows: list[str] | None = None,
                   finetune_fraction: float | None = None) -> list[dict]:
    """Pretrain the suite's runs ``(label, method, settings)`` whose method is in ``selected``
    (None: all) and whose label or run directory name is in ``selected_rows`` (None: all) with ``overrides`` then ``settings`` laid over the method's defaults, into
    ``out/runs/LABEL`` (as a slug), and evaluate them with the shared protocol (``probe_layers``:
    a linear probe per backbone stage too; ``findings``: lines for the notes from the finished
    ``(label, method, row)`` triples; ``finetune_fraction``: the evaluations suite's fine-tuning on
    that fraction of the labels, from each run's checkpoint, beside training from scratch).  A run that finished in an earlier call is not re-run.  ``{name}.md``/``.csv`` and the plots in ``out``
    then show every finished run of the suite, in the suite's order, so that suites run one
    method at a time build one table."""
    unknown = [row for row in selected_rows or [] if row not in {name for label, _, _ in runs
                                                                 for name in (label, run_slug(label))}]
    if unknown:
        raise SelfSupError(f"the {name} suite has no row '{unknown[0]}'; its rows: "
                           + ", ".join(run_slug(label) for label, _, _ in runs))
    methods = list(dict.fromkeys(method for _, method, _ in runs))
    if selected is not None and not set(selected) & set(methods):
        raise SelfSupError(f"the {name} suite has no row of {', '.join(selected)}; its methods: {', '.join(methods)}")
    for label, method, settings in runs:  # train the selected rows not yet finished
        if (selected is not None and method not in selected) or (
                selected_rows is not None and not {label, run_slug(label)} & set(selected_rows)):
            continue
        cfg, run_dir = suite_config(overrides, settings, method, data_dir), out / "runs" / run_slug(label)
        try:
            trained = claimed_run(run_dir, cfg, label, lambda: pretrain_row(
                label, cfg, run_dir, baselines=True, baselines_cache=out / "baselines",
                probe_epochs=probe_epochs, probe_layers=probe_layers))
            if trained is not None and finetune_fraction:  # a selected row's result older than a fix: made again
                _finetune_columns(run_dir, finetune_fraction, out, remake_older=True)
        except SelfSupError as exc:  # e.g. a colour-only task on a grey dataset: nothing was written
            if selected is not None or selected_rows is not None:
                raise
            print(f"{label}: skipped ({exc})")
    rows, curves, finals, baselines, done, network_baselines = [], {}, {}, {}, [], {}
    for label, method, settings in runs:  # the table: every finished row, in the suite's order
        cfg, run_dir = suite_config(overrides, settings, method, data_dir), out / "runs" / run_slug(label)
        metrics = finished_run(run_dir, cfg, redo=False)
        if metrics is None:
            continue
        if probe_layers and "linear_layers" not in metrics:
            metrics = _add_layer_probes(run_dir, metrics, probe_epochs)
        done.append((label, method, settings))
        baselines = baselines or metrics.get("baselines", {})
        network = cfg["backbone"]["name"]  # a random-init row for each kind of network the suite trains
        if network not in network_baselines and metrics.get("baselines"):
            network_baselines[network] = (label, metrics["baselines"])
        supervised = " (supervised)" if method_class(method).supervised else ""
        precision = RunDirectory(run_dir).precision()
        rows.append({"method": label + supervised + (BEFORE_FIX if metrics.get("before_fix") else ""), "epochs": cfg["epochs"], "precision": precision,
                     "knn_top1": metrics["knn_top1"],
                     "linear_top1": metrics["linear_top1"], "final_loss": metrics["final_loss"],
                     "train_seconds": metrics["train_seconds"], "samples_per_second": metrics["samples_per_second"],
                     "peak_memory_mb": metrics["peak_memory_mb"],
                     # the same architecture at its random initialisation (e.g. DeepCluster's Sobel input)
                     "random_init_knn_top1": metrics.get("baselines", {}).get("random_init_knn_top1"),
                     **{name: metrics.get("diagnostics", {}).get(name) for name in DIAGNOSTICS},
                     **_layer_columns(metrics.get("linear_layers"), probe_layers),
                     **(_finetune_columns(run_dir, finetune_fraction, out) if finetune_fraction else {})})
        history = metrics["knn_history"]
        curves[label] = ([h["epoch"] for h in history], [h["knn_top1"] for h in history])
        finals[label] = (cfg["epochs"], metrics["knn_top1"])
    for label, key in [("raw pixels", "raw_pixels"), ("standardised pixels", "standardized_pixels"),
                       (f"random-init backbone ({done[0][1]}'s network)", "random_init")]:
        rows.append({"method": f"baseline: {label}", "knn_top1": baselines.get(f"{key}_knn_top1"),
                     "linear_top1": baselines.get(f"{key}_linear_top1")})
    rows[-1].update(_layer_columns(baselines.get("random_init_linear_layers"), probe_layers))
    for network, (label, other) in list(network_baselines.items())[1:]:
        rows.append({"method": f"baseline: random-init {network} ({label}'s network)",
                     "knn_top1": other.get("random_init_knn_top1"), "linear_top1": other.get("random_init_linear_top1")})
    suite = suite_config(overrides, {}, runs[0][1], data_dir)  # the suite's own settings, not a row's
    knn, precision = suite["knn"], suite["trainer"]["precision"]
    per_run = "; ".join(f"{label}: `{settings}`" for label, _, settings in done if settings)
    notes = [f"Settings laid over each method's defaults: `{overrides}`" + (f"; then, per run: {per_run}." if per_run
                                                                            else "."),
             f"kNN: k={knn['k']}, T={knn['temperature']}, cosine, weighted vote, on backbone features of the full test "
             "split (bank: the pretraining training split). The monitor in the curve plot uses at most "
             f"{knn['monitor_train_size']} bank images and {knn['monitor_test_size']} test queries.",
             f"Linear: one linear layer on frozen, standardised backbone features of clean images, Adam, "
             f"{probe_epochs} epochs. The raw pixels have no linear entry: the probe standardises its features, "
             "so theirs is the standardised pixels' row.",
             "samples_per_second counts each training image once per epoch, however many views it yields; "
             f"precision: the run's training precision (the suite asks for `{precision}`"
             + (": bf16-mixed, autocast to bfloat16, on a GPU or a CPU with AVX-512 BF16 or AMX, else 32-true"
                if precision == "auto" else "") + "; the evaluations on frozen features run in fp32, fine-tuning "
             "trains at the run's precision).",
             "random_init_knn_top1 in a method's row: kNN of that method's own network (its input filter and "
             "BatchNorm policy included) at its random initialisation, the bar its pretraining must clear.",
             "Collapse diagnostics of the final backbone features on the monitor's test images "
             "(`selfsup.eval.diagnostics`): normalized_std (per-dimension std of L2-normalised features; "
             "1/sqrt(d) when spread, 0 when collapsed), effective_rank (of the feature covariance, 1..d), "
             "alignment and uniformity (Wang & Isola 2020; lower is better for both)."]
    if finetune_fraction:
        notes.append(f"finetune_{finetune_fraction * 100:g}pct: the whole encoder and a linear layer fine-tuned on "
                     f"{finetune_fraction:.0%} of the training labels (the evaluations suite's protocol, `eval_finetune-"
                     f"{finetune_fraction * 100:g}pct.json` in each run); scratch_{finetune_fraction * 100:g}pct: the same "
                     "from the method's random initialisation. finetune_checkpoint: original (the row's own run) or "
                     "remade (its checkpoint was gone: the run was pretrained again from its config.yaml in "
                     "`RUN/remade/`, whose metrics.json has that run's kNN, and fine-tuned there).")
    if probe_layers:
        notes.append("linear_convN: the same probe on the globally pooled output of the stem (conv1) and of each "
                     "ResNet stage (conv2..conv5), as in the survey's per-layer tables; the random-init row probes "
                     "the first run's network at its initialisation.")
    notes.append("Each row is the run in `runs/LABEL/` (its `config.yaml` and `metrics.json` are committed); "
                 "`--method M` runs only M's rows, the command above runs every row not yet finished.")
    if any(row["method"].endswith(BEFORE_FIX) for row in rows):
        notes.append(before_fix_note())
    notes += bf16_views_notes(row.get("precision") for row in rows)
    notes += finetune_revision_notes(row.get("finetune_revision") for row in rows)
    if findings:  # e.g. the ablations' comparison with each paper
        notes.extend(findings([(label, method, row) for (label, method, _), row in zip(done, rows)]))
    write_table(out, name, title, rows, notes, command=f"selfsup benchmark --suite {name} --out {out}")
    bar_plot(out / f"{name}_knn.png", [r["method"].replace("baseline: ", "") for r in rows],
             [r["knn_top1"] or 0.0 for r in rows], "kNN top-1", title)
    panel = "kNN monitor during training (held-out subset)"
    curve_plot(out / f"{name}_knn_curve.png", {panel: curves}, "epoch", "kNN top-1", title,
               {"raw pixels (full test)": baselines.get("raw_pixels_knn_top1"),
                "standardised pixels (full test)": baselines.get("standardized_pixels_knn_top1"),
                "random init (full test)": baselines.get("random_init_knn_top1")}, {panel: finals})
    return rows

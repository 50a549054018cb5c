"""The suites' definitions: budgets, per-method settings and the rows of each accuracy suite
(data only; the code that runs them is in ``selfsup.bench`` and ``selfsup.bench.suites``)."""
from __future__ import annotations

from ..config import merge, packaged_config


# The fixed budget every method gets on Fashion-MNIST.  Training in the precision ``auto`` picks:
# bf16 mixed precision on a CPU with AVX-512 BF16 or AMX (every bf16 row was made on one with
# AVX-512 BF16, since 2026-11-29), fp32 where bfloat16 would be emulated; rows made before ran in
# fp32. The tables' precision column says which (the ablations' SimCLR group measures the difference).
FMNIST_QUICK = {"dataset": "fashion-mnist", "epochs": 5, "batch_size": 256,
                "backbone": {"name": "resnet18", "width": 16, "small_stem": True},
                "trainer": {"progress_bar": False, "precision": "auto"}}
# Beyond it, each method's short recipe (configs/recipes.yaml, which says why each setting), laid
# explicitly so that a row's settings do not depend on the ``recipe: auto`` rule, and two settings
# that fit this data set only: Exemplar's 1000 seed images (the default would be 7500) and EMP-SSL's
# 20 patches at their native 14 px, half the image's side, not resized to 28 (a step costs what a
# 5-view step costs instead of a 20-view one).
FMNIST_SETTINGS = {"exemplar": {"params": {"surrogate_classes": 1000}}, "emp-ssl": {"params": {"patch_size": 14}}}
FMNIST_QUICK_TUNED = {**packaged_config("recipes")["short"], **FMNIST_SETTINGS}


# Params with which a method fits the seconds-long runs (batches of 32 to 64) of the tests and
# scripts/gpu-check.sh: W-MSE whitens sub-batches that must fit the batch; DINO's head and crops
# and EMP-SSL's 20 patches at their paper sizes would make their runs five to ten times the others'.
TINY_RUN_PARAMS = {"w-mse": {"whiten_size": 32, "proj_dim": 16},
                   "dino": {"out_dim": 256, "proj_hidden_dim": 64, "local_crops": 2},
                   "ibot": {"out_dim": 256, "proj_hidden_dim": 64, "local_crops": 2},
                   "emp-ssl": {"patches": 4},
                   "msn": {"prototypes": 64, "proj_hidden_dim": 64, "focal_views": 2},
                   "lejepa": {"proj_hidden_dim": 64, "directions": 64, "local_views": 2}}


# The run-to-run spread of a suite: its reference row again with other training seeds (network
# initialisation, data order, augmentations); differences between rows inside it are ties.
SPREAD_SEEDS = (1, 2)


def spread_rows(label: str, method: str, settings: dict) -> list[tuple[str, str, dict]]:
    return [(f"{label}, training seed {seed}", method, {**settings, "seed": seed}) for seed in SPREAD_SEEDS]


# The vision transformer of fmnist-quick's ViT rows: about the ResNet's parameters (0.68M against
# 0.70M), 49 tokens of 96 values through 6 blocks of 3 heads.
FMNIST_QUICK_VIT = {"backbone": {"name": "vit", "width": 96, "depth": 6, "heads": 3, "patch_size": 4}}
# Methods with a row on the ViT beside their ResNet row (the supervised one: the ViT's supervised bar;
# LeJEPA's packaged network is a ViT, but it reads no tokens, so its first row is on the ResNet).
VIT_ROWS = ("dino", "lejepa", "supervised")


def fmnist_quick_settings(method: str, vit: bool = False, tuned: dict | None = None) -> dict:
    """``method``'s settings over a suite's budget: its tuned ones (or ``tuned``), on fmnist-quick's ViT if ``vit``."""
    tuned = FMNIST_QUICK_TUNED.get(method, {}) if tuned is None else tuned
    return merge(FMNIST_QUICK_VIT, tuned, strict=False) if vit else tuned


def fmnist_quick_runs() -> list[tuple[str, str, dict]]:
    """fmnist-quick's rows: every registered method that learns from grey images without labels or
    with all of them (those that read patch tokens on the ViT), the ViT rows of ``VIT_ROWS``, then
    SimCLR's spread rows."""
    from ..methods import METHODS

    rows = [(m, m, fmnist_quick_settings(m, cls.needs_tokens)) for m, cls in METHODS.items()
            if not (cls.semi_supervised or cls.colour_only or "image" not in cls.modalities)]
    rows += [(f"{m}, vit", m, fmnist_quick_settings(m, True)) for m in VIT_ROWS]
    return rows + spread_rows("simclr", "simclr", FMNIST_QUICK_TUNED["simclr"])


# fmnist-quick's network, batch and per-method settings at 50 epochs (11,700 steps), where the
# methods separate from their random-init networks and from each other; then the ablations whose
# papers' effects did not show at 3-10 epochs, again at this budget.
FMNIST_LONG = dict(FMNIST_QUICK, epochs=50)
FMNIST_LONG_METHODS = ("simclr", "moco-v2", "byol", "simsiam", "barlow-twins", "swav", "deepcluster-v2", "dare",
                       "vicreg", "dino", "supervised")
FMNIST_LONG_ABLATIONS = [
    ("moco-v2, queue 65536 (the paper's)", "moco-v2", {"params": {"queue_size": 65536}}),
    ("moco-v2, queue 1024", "moco-v2", {"params": {"queue_size": 1024}}),
    ("swav, multi-crop 2 + 6", "swav", {"params": {"small_crops": 6}}),
    ("byol, frozen target (tau 1)", "byol", {"params": {"base_momentum": 1.0, "final_momentum": 1.0}}),
]


def fmnist_long_runs() -> list[tuple[str, str, dict]]:
    """fmnist-long's rows: each method of ``FMNIST_LONG_METHODS`` with its fmnist-quick settings,
    then the ablation rows laid over their method's."""
    return [(m, m, fmnist_quick_settings(m)) for m in FMNIST_LONG_METHODS] + [
        (label, m, merge(fmnist_quick_settings(m), change, strict=False)) for label, m, change in FMNIST_LONG_ABLATIONS]


# A method's fmnist-quick settings when its ablation groups were made, where they have changed since: MoCo
# v2's short recipe until 2026-12-06 (then the symmetric loss and a 4,096-key queue replaced them).
ABLATION_BASES = {"moco-v2": {"optimizer": {"lr": 0.3}, "params": {"key_momentum": 0.99, "queue_size": 32768,
                                                                   "head_batch_norm": True, "symmetric": False}}}


def ablation_runs() -> list[tuple[str, str, dict]]:
    """The ablations' rows, each laid over its method's fmnist-quick settings (the token methods' on the
    ViT), or over ``ABLATION_BASES``' settings where its group was made with others."""
    from ..methods import METHODS

    return [(label, m, merge(fmnist_quick_settings(m, METHODS[m].needs_tokens, ABLATION_BASES.get(m)), change,
                             strict=False)) for label, m, change in ABLATIONS]


# Ablations on a smaller budget than fmnist-quick (3 epochs over a class-balanced 20k subset
# of the training split: 234 steps), each row changing one setting of its method's
# fmnist-quick configuration; the first row of each group is the reference.
# BYOL's group (and MoCo's second) gets 10 epochs (780 steps): at 234 steps its reference had not yet left the
# random-init network's kNN behind (0.659 against 0.716), so no row of it could show anything.
# Its groups begun before bf16 ran in fp32 (the budget's precision); those begun after the SimCLR
# group's bf16 row (which measures what it changes) run in bf16, every row of a group alike but
# SimCLR's, whose batch rows (DCL's comparison) train in bf16 beside its fp32 rows: the findings
# set each row against the group's first row of its own precision (``ablation_findings``).
ABLATION_BUDGET = dict(FMNIST_QUICK, epochs=3, subset=20000, trainer={"progress_bar": False, "precision": "32-true"})
TEN_EPOCHS = {"epochs": 10}  # the longer budget of BYOL's group, MoCo's second group and an InstDisc row
BF16 = {"trainer": {"precision": "bf16-mixed"}}


def _bf16(rows: list[tuple[str, str, dict]]) -> list[tuple[str, str, dict]]:
    return [(label, method, merge(BF16, change, strict=False)) for label, method, change in rows]


ABLATIONS = [
    # non-contrastive and clustering methods (BYOL Table 5, SimSiam Fig. 2, SwAV Table 3, DeepCluster Fig. 4, Barlow Twins Fig. 4)
    ("byol", "byol", TEN_EPOCHS),
    ("byol, no predictor", "byol", {**TEN_EPOCHS, "params": {"use_predictor": False}}),
    ("byol, frozen target (tau 1)", "byol", {**TEN_EPOCHS, "params": {"base_momentum": 1.0, "final_momentum": 1.0}}),
    ("simsiam", "simsiam", {}),
    ("simsiam, no stop-gradient", "simsiam", {"params": {"stop_gradient": False}}),
    ("swav", "swav", {}),
    ("swav, multi-crop 2 + 6", "swav", {"params": {"small_crops": 6}}),
    ("swav, 100 prototypes", "swav", {"params": {"num_prototypes": 100}}),
    ("deepcluster, k 100", "deepcluster", {}),
    ("deepcluster, k 30", "deepcluster", {"params": {"num_clusters": 30}}),
    ("deepcluster, k 300", "deepcluster", {"params": {"num_clusters": 300}}),
    ("barlow-twins, lambda 0.0051", "barlow-twins", {}),
    ("barlow-twins, lambda 0.0005", "barlow-twins", {"params": {"lambd": 0.0005}}),
    ("barlow-twins, lambda 0.05", "barlow-twins", {"params": {"lambd": 0.05}}),
    # contrastive methods (SimCLR Table 5, MoCo Fig. 3 and Table 1, InstDisc Table 2)
    ("simclr, T 0.2", "simclr", {}),
    ("simclr, T 0.1", "simclr", {"params": {"temperature": 0.1}}),
    ("simclr, T 0.5", "simclr", {"params": {"temperature": 0.5}}),
    ("simclr, T 0.2, bf16-mixed precision", "simclr", BF16),
    *spread_rows("simclr, T 0.2", "simclr", {}),
    *_bf16([
    ("moco-v2, T 0.2, queue 32768, m 0.99", "moco-v2", {}),
    ("moco-v2, T 0.07", "moco-v2", {"params": {"temperature": 0.07}}),
    ("moco-v2, T 0.5", "moco-v2", {"params": {"temperature": 0.5}}),
    ("moco-v2, queue 1024", "moco-v2", {"params": {"queue_size": 1024}}),
    ("moco-v2, queue 4096", "moco-v2", {"params": {"queue_size": 4096}}),
    ("moco-v2, key momentum 0.9", "moco-v2", {"params": {"key_momentum": 0.9}}),
    ("moco-v2, key momentum 0.999", "moco-v2", {"params": {"key_momentum": 0.999}}),
    ("moco-v2, negatives: batch (end-to-end)", "moco-v2", {"params": {"negatives": "batch"}}),
    ("moco-v2, negatives: memory bank", "moco-v2", {"params": {"negatives": "bank"}}),
    # the paper's NCE (fmnist-quick computes the softmax exactly, as the paper does on CIFAR-10)
    ("instdisc, 4096 noise samples", "instdisc", {"params": {"loss": "nce"}}),
    ("instdisc, 256 noise samples", "instdisc", {"params": {"loss": "nce", "noise_samples": 256}}),
    ("instdisc, 1024 noise samples", "instdisc", {"params": {"loss": "nce", "noise_samples": 1024}}),
    ("instdisc, exact softmax over the bank", "instdisc", {}),
    # each bank entry is refreshed once per epoch: the reference again with 10 refreshes (780 steps)
    ("instdisc, 4096 noise samples, 10 epochs", "instdisc", {**TEN_EPOCHS, "params": {"loss": "nce"}}),
    ("cpc, 2 prediction steps", "cpc", {}),
    ("cpc, 1 prediction step", "cpc", {"params": {"prediction_steps": 1}}),
    ("cpc, 4 prediction steps", "cpc", {"params": {"prediction_steps": 4}}),
    ]),
    # DARe's group in fp32: its first three rows were made in bf16 on an AVX-512 machine; the other two were
    # never made again after the DARe fix, and where bf16 is emulated (AVX2) the group was remade whole in fp32
    ("dare, lambda 0.9", "dare", {}),
    # the JSD term off: whether its means are normalised changes nothing (the row was made without)
    ("dare, lambda 0", "dare", {"params": {"lambd": 0.0, "normalize_mean": False}}),
    ("dare, lambda 3", "dare", {"params": {"lambd": 3.0}}),
    # where the report is silent: the JSD on the raw means (our default normalises them, which this
    # pair of rows decided); its L_con against SimCLR's symmetric NT-Xent
    ("dare, lambda 0.9, unnormalised means", "dare", {"params": {"normalize_mean": False}}),
    ("dare, lambda 0.9, symmetric NT-Xent", "dare", {"params": {"contrastive": "nt_xent"}}),
    *_bf16([
    ("superinfo, lambda_a = lambda_b = 0.01", "superinfo", {}),
    ("superinfo, lambda_a = lambda_b = 0 (InfoNCE)", "superinfo", {"params": {"lambda_a": 0.0, "lambda_b": 0.0}}),
    ("superinfo, lambda_a 0.1, lambda_b 0", "superinfo", {"params": {"lambda_a": 0.1, "lambda_b": 0.0}}),
    ("superinfo, lambda_a 0, lambda_b 0.1", "superinfo", {"params": {"lambda_a": 0.0, "lambda_b": 0.1}}),
    # MoCo again at BYOL's 10 epochs: at 234 steps its reference had not left the random-init
    # network behind (0.695 against 0.716), so the group above cannot resolve its settings.
    # Ordered by what the comparison needs most, since a row takes 15 minutes on one core.
    *[(f"moco-v2 10 ep, {label}", "moco-v2", {**TEN_EPOCHS, **change}) for label, change in [
        ("T 0.2, queue 32768, m 0.99", {}),
        ("negatives: batch (end-to-end)", {"params": {"negatives": "batch"}}),
        ("negatives: memory bank", {"params": {"negatives": "bank"}}),
        ("T 0.07", {"params": {"temperature": 0.07}}),
        ("queue 4096", {"params": {"queue_size": 4096}}),
        ("key momentum 0.9", {"params": {"key_momentum": 0.9}}),
        ("key momentum 0.999", {"params": {"key_momentum": 0.999}}),
        ("T 0.5", {"params": {"temperature": 0.5}}),
        ("queue 1024", {"params": {"queue_size": 1024}}),
    ]],
    ]),
    # the methods peers ship (VICReg Sec. 4.5, NNCLR Sec. 4.4, MoCo v3 Sec. 4, DCL Sec. 5)
    *_bf16([
    ("vicreg", "vicreg", {}),
    ("vicreg, no variance term", "vicreg", {"params": {"variance_weight": 0.0}}),
    ("nnclr", "nnclr", {}),
    ("nnclr, support set 1024", "nnclr", {"params": {"support_size": 1024}}),
    ("nnclr, support set 65536", "nnclr", {"params": {"support_size": 65536}}),
    ("moco-v3", "moco-v3", {}),
    ("moco-v3, no predictor", "moco-v3", {"params": {"use_predictor": False}}),
    # DCL with SimCLR's fmnist-quick lr and temperature, so that only the loss differs from the SimCLR rows
    *[(f"dcl, T 0.2, batch {batch}", "dcl", {"batch_size": batch, **FMNIST_QUICK_TUNED["simclr"]}) for batch in (256, 64, 32)],
    ("simclr, T 0.2, batch 64", "simclr", {"batch_size": 64}),
    ("simclr, T 0.2, batch 32", "simclr", {"batch_size": 32}),
    ]),
    # self-distillation and masked modelling (DINO Sec. 5.3, MAE Fig. 5, I-JEPA Table 6); the token
    # methods on fmnist-quick's ViT
    *_bf16([
    ("dino", "dino", {}),
    ("dino, no centering", "dino", {"params": {"center_momentum": 1.0}}),  # the centre stays at 0
    ("mae, mask 0.75", "mae", {}),
    ("mae, mask 0.5", "mae", {"params": {"mask_ratio": 0.5}}),
    ("mae, mask 0.9", "mae", {"params": {"mask_ratio": 0.9}}),
    ("i-jepa, targets 15-20%", "i-jepa", {}),
    ("i-jepa, targets 5-10%", "i-jepa", {"params": {"target_scale": [0.05, 0.1]}}),
    ("i-jepa, targets 25-30%", "i-jepa", {"params": {"target_scale": [0.25, 0.3]}}),
    ]),
]


# What each paper found for the setting its group varies (the ablations' notes set ours beside it).
PAPER_FINDINGS = {
    "byol": "BYOL (Grill et al. 2020, Sec. 3 and Table 5): without the predictor the representation collapses; a "
            "fixed random target (tau 1) still lifts ImageNet linear accuracy from 1.4% (the random network) to 18.8%, "
            "far below BYOL's",
    "simsiam": "SimSiam (Chen & He 2021, Fig. 2): without stop-gradient the output collapses (the std of the "
               "normalised output goes to 0) and kNN accuracy falls to chance",
    "swav": "SwAV (Caron et al. 2020): multi-crop (2 x 224 + 6 x 96 px) adds about 2 points of ImageNet top-1 to "
            "SwAV; the number of prototypes matters little as long as it is large enough",
    "deepcluster": "DeepCluster (Caron et al. 2018, Sec. 5): over-segmenting helps: k = 10,000 clusters works best on "
                   "ImageNet's 1,000 classes",
    "barlow-twins": "Barlow Twins (Zbontar et al. 2021, ablations): accuracy is robust to lambda over two orders of "
                    "magnitude around 0.0051",
    "simclr": "SimCLR (Chen et al. 2020, Table 5): with L2-normalised embeddings, T 0.1 gives the best linear accuracy "
              "of {0.05, 0.1, 0.5, 1}",
    "moco-v2": "MoCo (He et al. 2020, Fig. 3 and the momentum ablation of Sec. 4.1): accuracy grows with the dictionary size; key momentum "
               "0.99-0.9999 works, 0.9 loses about 4 points and 0 fails; the momentum queue beats both the "
               "end-to-end (batch) dictionary and the memory bank",
    "instdisc": "InstDisc (Wu et al. 2018): accuracy rises with the number of NCE noise samples m, the paper uses 4096",
    "cpc": "CPC (van den Oord et al. 2018, Table 2, audio): predicting further ahead helps up to 12 steps "
           "(2 steps 28.5, 4 steps 57.6, 12 steps 64.6% phone accuracy)",
    "dare": "DARe (Table 1): the Gaussian term (lambda 0.9) improves on plain NT-Xent (lambda 0 is SimCLR with a "
            "Gaussian head)",
    "superinfo": "SuperInfo: lambda_a = lambda_b = 0 is InfoNCE; the paper's small positive lambdas keep "
                 "predictive information and drop superfluous information",
    "vicreg": "VICReg (Bardes et al. 2022, Sec. 4.5): without the variance term the embeddings collapse (see the "
              "collapse diagnostics of these rows: effective rank and per-dimension spread)",
    "nnclr": "NNCLR (Dwibedi et al. 2021, Sec. 4.4): accuracy rises with the support-set size up to the 98304 projections it keeps",
    "moco-v3": "MoCo v3 (Chen et al. 2021): the predictor on the query side (from BYOL) adds accuracy; without it the "
               "contrastive loss still keeps the embeddings from collapsing",
    "dcl": "DCL (Yeh et al. 2022, Sec. 5): NT-Xent (SimCLR) loses accuracy as the batch shrinks from 256 to 32, DCL "
           "much less; here the DCL rows use SimCLR's lr and temperature, so compare each DCL row's drop from its batch-256 "
           "row with the SimCLR rows' drop at the same batch from SimCLR's bf16-mixed row (the precision of all of "
           "these rows)",
    "dino": "DINO (Caron et al. 2021, Sec. 5.3 and Fig. 7): without centring, sharpening alone collapses the teacher's "
            "output to one dimension (the entropy of its distribution falls to 0) and k-NN accuracy to chance",
    "mae": "MAE (He et al. 2022, Fig. 5): a high masking ratio works best, 75% for both fine-tuning and linear probing; "
           "linear probing degrades faster than fine-tuning below it",
    "i-jepa": "I-JEPA (Assran et al. 2023, Table 6): target blocks must be large enough (15-20% of the image) for "
              "semantic representations; smaller targets lower linear-probe accuracy",
}


def ablation_findings(done: list[tuple[str, str, dict]]) -> list[str]:
    """Per group (a method at one number of epochs): the paper's finding, then ours: each row's
    kNN against the group's reference, its first row, or, for a row trained in another precision
    than the reference, against the group's first row of that precision (named), so that no
    difference mixes a change with the precision's."""
    lines = []
    for method, epochs in dict.fromkeys((m, row.get("epochs")) for _, m, row in done):
        group = [(label, row) for label, m, row in done if (m, row.get("epochs")) == (method, epochs)]
        first = {}
        for label, row in group:
            first.setdefault(row.get("precision"), (label, row["knn_top1"]))
        parts = []
        for i, (label, row) in enumerate(group):
            own = first[row.get("precision")]  # the first row of a precision measures the precision's change
            against_label, against = own if own[0] != label else (group[0][0], group[0][1]["knn_top1"])
            named = "" if against_label == group[0][0] else f" against {against_label}"
            parts.append(f"{label} {row['knn_top1']:.3f}" + ("" if i == 0 else f" ({row['knn_top1'] - against:+.3f}{named})"))
        lines.append(f"{PAPER_FINDINGS.get(method, method)}. Here (kNN): {'; '.join(parts)}.")
    return lines


# Caruana's question for pretext tasks: does one shared trunk trained on several tasks give
# better features than each task alone?  Same budget as the ablations, per-stage probes, and
# every row with the multitask config's optimiser (SGD lr 0.1 x batch/256), so that only the
# tasks differ.
MULTITASK_BUDGET = merge(ABLATION_BUDGET, BF16)
SAME_OPTIMIZER = {"optimizer": {"lr": 0.1}}
MULTITASK = [
    ("rotation alone", "rotation", SAME_OPTIMIZER),
    ("jigsaw alone", "jigsaw", SAME_OPTIMIZER),
    ("multitask: rotation + jigsaw", "multitask", {}),
    ("multitask: rotation + jigsaw, uncertainty weights", "multitask", {"params": {"uncertainty": True}}),
]


# The speedrun (``selfsup.bench.speedrun``): targets on the full Fashion-MNIST test split, seeds,
# and the recipes, each a config layer over its method's defaults with ``method``, a budget
# (``epochs``: where a recipe gives up) and its check interval; benchmarks/tuning-speedrun.md says
# how they were found.
SPEEDRUN_TARGETS = (0.85, 0.88)  # kNN, linear probe
SPEEDRUN_SEEDS = (0, 1, 2)


def _speedrun_recipe(method: str, batch_size: int, epochs: int, **settings) -> dict:
    """A recipe on fmnist-quick's network at its precision (bf16 where native), the monitor checking once an epoch."""
    return merge({"method": method, "epochs": epochs, "batch_size": batch_size, "backbone": FMNIST_QUICK["backbone"],
                  "trainer": {"precision": FMNIST_QUICK["trainer"]["precision"]}, "knn": {"every_n_steps": 60000 // batch_size}},
                 settings, strict=False)


SPEEDRUN_RECIPES = [
    # RotNet, all four rotations of each image in a batch of 128 (512 rotated images a step)
    ("rotation, batch 128", _speedrun_recipe("rotation", 128, 4)),
    # fmnist-quick's SimCLR row (its short recipe: LARS 0.15 x sqrt(256), T 0.2)
    ("simclr, fmnist-quick settings", _speedrun_recipe("simclr", 256, 4, **FMNIST_QUICK_TUNED["simclr"])),
]
QUICKSTART_RECIPE = "rotation, batch 128"  # configs/quickstart.yaml: this recipe at the quickstart's epochs


# The recipes suite: every method that learns without labels at 1 and 5 epochs of fmnist-quick's
# budget under its paper recipe and its short one (configs/recipes.yaml); a method without a short
# entry trains once per budget (its two recipes are the same settings).  The 5-epoch runs with
# fmnist-quick's settings (short, or a method's one run) are fmnist-quick's own where that run has them.
# SimCLR's short 1-epoch run is also trained with other seeds (right after it): the spread of a 1-epoch cell.
# Every 1-epoch run comes before the 5-epoch ones: they say first which methods need a better short recipe.
RECIPE_EPOCHS = (1, 5)
RECIPE_SPREAD_ROW = "simclr, short, 1 ep"


def recipe_runs() -> list[tuple[str, str, dict]]:
    from ..methods import METHODS

    short = packaged_config("recipes")["short"]
    learners = [(m, cls) for m, cls in METHODS.items()
                if not (cls.semi_supervised or cls.supervised or "image" not in cls.modalities or cls.colour_only)]
    rows = []
    for epochs in RECIPE_EPOCHS:
        for m, cls in learners:
            for recipe in ("paper", "short") if m in short else ("paper",):
                rows.append((f"{m}, {recipe}, {epochs} ep", m, fmnist_quick_settings(
                    m, cls.needs_tokens, merge(FMNIST_SETTINGS.get(m, {}), {"recipe": recipe, "epochs": epochs},
                                               strict=False))))
                if rows[-1][0] == RECIPE_SPREAD_ROW:
                    rows += spread_rows(*rows[-1])
    return rows

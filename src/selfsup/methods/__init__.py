"""Method registry: one file per method, imported when the method is first asked for (the
registry itself imports no method, so a method may look others up without an import circle)."""
from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping

from ..errors import SelfSupError
from .base import Method, RunContext

# name -> (module in selfsup.methods, class), in the order `selfsup list` shows them
_PLACES = {
    "simclr": ("simclr", "SimCLR"),
    "moco-v2": ("moco", "MoCoV2"),
    "moco-v1": ("moco", "MoCoV1"),
    "moco-v3": ("moco_v3", "MoCoV3"),
    "swav": ("swav", "SwAV"),
    "deepcluster": ("deepcluster", "DeepCluster"),
    "deepcluster-v2": ("deepcluster", "DeepClusterV2"),
    "byol": ("byol", "BYOL"),
    "simsiam": ("simsiam", "SimSiam"),
    "nnclr": ("nnclr", "NNCLR"),
    "barlow-twins": ("barlow_twins", "BarlowTwins"),
    "vicreg": ("vicreg", "VICReg"),
    "dcl": ("dcl", "DCL"),
    "dclw": ("dcl", "DCLW"),
    "w-mse": ("w_mse", "WMSE"),
    "tico": ("tico", "TiCo"),
    "emp-ssl": ("emp_ssl", "EMPSSL"),
    "dino": ("dino", "DINO"),
    "ibot": ("ibot", "IBOT"),
    "mae": ("mae", "MAE"),
    "simmim": ("simmim", "SimMIM"),
    "i-jepa": ("ijepa", "IJEPA"),
    "msn": ("msn", "MSN"),
    "lejepa": ("lejepa", "LeJEPA"),
    "supcon": ("supervised", "SupCon"),
    "triplet": ("supervised", "Triplet"),
    "dare": ("gaussian", "DARe"),
    "superinfo": ("gaussian", "SuperInfo"),
    "instdisc": ("instdisc", "InstDisc"),
    "cpc": ("cpc", "CPC"),
    "ts2vec": ("ts2vec", "TS2Vec"),
    "t-loss": ("t_loss", "TLoss"),
    "ts-tcc": ("ts_tcc", "TSTCC"),
    "supervised": ("supervised", "Supervised"),
    "rotation": ("rotation", "Rotation"),
    "jigsaw": ("jigsaw", "Jigsaw"),
    "relative-patch": ("relative_patch", "RelativePatch"),
    "denoising-ae": ("autoencoders", "DenoisingAE"),
    "context-encoder": ("autoencoders", "ContextEncoder"),
    "count": ("count", "Count"),
    "exemplar": ("exemplar", "Exemplar"),
    "multitask": ("multitask", "Multitask"),
    "colorization": ("colorization", "Colorization"),
    "split-brain": ("split_brain", "SplitBrain"),
    "supervised-only": ("semisup.base", "SupervisedOnly"),
    "pseudo-label": ("semisup.pseudo_label", "PseudoLabel"),
    "self-training": ("semisup.self_training", "SelfTraining"),
    "fixmatch": ("semisup.fixmatch", "FixMatch"),
    "flexmatch": ("semisup.flexmatch", "FlexMatch"),
    "freematch": ("semisup.freematch", "FreeMatch"),
    "softmatch": ("semisup.softmatch", "SoftMatch"),
    "uda": ("semisup.uda", "UDA"),
    "mean-teacher": ("semisup.mean_teacher", "MeanTeacher"),
    "mixmatch": ("semisup.mixmatch", "MixMatch"),
    "remixmatch": ("semisup.remixmatch", "ReMixMatch"),
    "frost": ("semisup.frost", "Frost"),
}


class _Registry(MutableMapping):
    """``{name: Method subclass}``: each lookup of a built-in method imports its module once;
    a class registered at run time (``METHODS[name] = cls``: a plug-in, the tests' toy
    methods) is kept as given."""

    def __init__(self):
        self._added: dict[str, type[Method]] = {}

    def __getitem__(self, name: str) -> type[Method]:
        if name in self._added:
            return self._added[name]
        module, cls = _PLACES[name]
        return getattr(importlib.import_module(f"{__name__}.{module}"), cls)

    def __setitem__(self, name: str, cls: type[Method]) -> None:
        if name in _PLACES:
            raise SelfSupError(f"method '{name}' is built in and cannot be replaced")
        self._added[name] = cls

    def __delitem__(self, name: str) -> None:
        del self._added[name]

    def __iter__(self) -> Iterator[str]:
        yield from _PLACES
        yield from self._added

    def __len__(self) -> int:
        return len(_PLACES) + len(self._added)


METHODS: MutableMapping[str, type[Method]] = _Registry()


def method_class(name: str) -> type[Method]:
    if name not in METHODS:
        raise SelfSupError(f"unknown method '{name}'; choose one of: {', '.join(METHODS)} (see `selfsup list`)")
    return METHODS[name]


__all__ = ["METHODS", "Method", "RunContext", "method_class"]

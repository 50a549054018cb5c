"""Method registry: one file per method."""
from ..errors import SelfSupError
from .autoencoders import ContextEncoder, DenoisingAE
from .barlow_twins import BarlowTwins
from .base import Method, RunContext
from .byol import BYOL
from .colorization import Colorization
from .count import Count
from .cpc import CPC
from .deepcluster import DeepCluster, DeepClusterV2
from .exemplar import Exemplar
from .gaussian import DARe, SuperInfo
from .instdisc import InstDisc
from .jigsaw import Jigsaw
from .moco import MoCoV1, MoCoV2
from .multitask import Multitask
from .relative_patch import RelativePatch
from .rotation import Rotation
from .semisup import FixMatch, Frost, PseudoLabel, SelfTraining, SupervisedOnly
from .simclr import SimCLR
from .simsiam import SimSiam
from .split_brain import SplitBrain
from .supervised import SupCon, Supervised, Triplet
from .swav import SwAV

METHODS: dict[str, type[Method]] = {cls.name: cls for cls in [SimCLR, MoCoV2, MoCoV1, SwAV, DeepCluster, DeepClusterV2, BYOL,
                                                              SimSiam, BarlowTwins, SupCon, Triplet, DARe, SuperInfo,
                                                              InstDisc, CPC, Supervised, Rotation,
                                                              Jigsaw, RelativePatch, DenoisingAE, ContextEncoder,
                                                              Count, Exemplar, Multitask, Colorization,
                                                              SplitBrain, SupervisedOnly, PseudoLabel, SelfTraining,
                                                              FixMatch, Frost]}


def method_class(name: str) -> type[Method]:
    if name not in METHODS:
        raise SelfSupError(f"unknown method '{name}'; choose one of: {', '.join(METHODS)} (see `selfsup list`)")
    return METHODS[name]


__all__ = ["METHODS", "Method", "RunContext", "method_class"]

"""Method registry: one file per method."""
from ..errors import SelfSupError
from .base import Method, RunContext
from .simclr import SimCLR

METHODS: dict[str, type[Method]] = {cls.name: cls for cls in [SimCLR]}


def method_class(name: str) -> type[Method]:
    if name not in METHODS:
        raise SelfSupError(f"unknown method '{name}'; choose one of: {', '.join(METHODS)} (see `selfsup list`)")
    return METHODS[name]


__all__ = ["METHODS", "Method", "RunContext", "method_class"]

"""The one way selfsup draws random numbers from a ``torch.Generator``.

PyTorch refuses to draw with a generator into a tensor on another device (a CUDA generator
cannot fill a CPU tensor, the default device of ``torch.rand``).  The engine creates a
method's generator on the training device, so every draw goes through these helpers: each
creates its tensor on the generator's own device, then moves it to ``device`` (default: the
generator's device).  On a CPU generator the numbers are exactly those of the plain
``torch`` call.  ``tests/test_rng.py`` fails on any other call that passes a generator to a
PyTorch random function.
"""
from __future__ import annotations

import weakref
import zlib

import torch


def _place(x: torch.Tensor, device) -> torch.Tensor:
    return x if device is None else x.to(device)


def _size(size) -> tuple:
    return (size,) if isinstance(size, int) else tuple(size)


def rand(size, generator: torch.Generator, device=None, dtype=None) -> torch.Tensor:
    """Uniform [0, 1) numbers of ``size``."""
    return _place(torch.rand(_size(size), generator=generator, device=generator.device, dtype=dtype), device)


def randn(size, generator: torch.Generator, device=None, dtype=None) -> torch.Tensor:
    """Standard normal numbers of ``size``."""
    return _place(torch.randn(_size(size), generator=generator, device=generator.device, dtype=dtype), device)


def randint(low: int, high: int, size, generator: torch.Generator, device=None) -> torch.Tensor:
    """Integers in [low, high) of ``size`` (int64)."""
    return _place(torch.randint(low, high, _size(size), generator=generator, device=generator.device), device)


def integers(low: int, high: int, size, generator: torch.Generator) -> torch.Tensor:
    """Integers in [low, high], both ends included, of ``size`` (int64, on the CPU: crop lengths
    and positions, read as Python ints or moved to the data's device by the caller), drawn from
    ``host_twin(generator)``."""
    return randint(low, high + 1, size, host_twin(generator))


_twins: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def host_twin(generator: torch.Generator) -> torch.Generator:
    """The generator for numbers the host reads (sizes, orders, Python loops): ``generator``
    itself when it is a CPU one, so a CPU run draws exactly as before; for a GPU generator, a
    CPU generator seeded with its seed (a host value: reading it needs no device sync) and kept
    while ``generator`` lives, so every caller of one step draws from one host stream."""
    if generator.device.type == "cpu":
        return generator
    if generator not in _twins:
        _twins[generator] = torch.Generator().manual_seed(generator.initial_seed())
    return _twins[generator]


def onto(x: torch.Tensor, device) -> torch.Tensor:
    """Host-drawn numbers ``x`` (masks, crop offsets) on ``device``: onto a GPU through pinned
    memory without waiting (a copy from ordinary memory waits for the GPU's queue first)."""
    device = torch.device(device)
    return x.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else x.to(device)


def randperm(n: int, generator: torch.Generator, device=None) -> torch.Tensor:
    """A random permutation of 0..n−1."""
    return _place(torch.randperm(n, generator=generator, device=generator.device), device)


def seed_from(generator: torch.Generator) -> int:
    """A Python integer drawn from ``generator`` (seeds for faiss, ``fork_rng``, CPU generators)."""
    return int(randint(0, 2**62, 1, generator)[0])


def cpu_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed`` (orders and tables that must not depend on the device)."""
    return torch.Generator().manual_seed(seed)


def _key_seed(key) -> int:
    return zlib.crc32("/".join(map(str, key)).encode())


def seeded_generator(device, *key) -> torch.Generator:
    """A generator on ``device`` seeded by a hash of ``key`` (e.g. seed, epoch, batch, rank)."""
    return torch.Generator(device=device).manual_seed(_key_seed(key))


def seed_default_generators(*key) -> None:
    """Seed PyTorch's default generators (the CPU's and every accelerator's: what modules draw
    from without a generator, as dropout and timm's stochastic depth) by a hash of ``key``, a
    stream apart from ``seeded_generator``'s; set on the host, without a device sync."""
    torch.manual_seed(_key_seed((*key, "default")))

"""The training precision a machine runs fast: ``trainer.precision: auto`` picks bfloat16 mixed
precision where the hardware computes in bfloat16 and full precision elsewhere.

On a CPU, oneDNN has fast bfloat16 convolutions and matmuls only with AMX tiles or AVX-512
BF16; without them PyTorch emulates bfloat16, and ``bf16-mixed`` trains far slower than
``32-true``, so such a request gets a note on stderr.  On CUDA, ``auto`` is bf16-mixed where the device supports it."""
from __future__ import annotations

import platform
import sys
from pathlib import Path

import torch


def uses_gpu(accelerator: str) -> bool:
    """Whether a run with ``trainer.accelerator`` = ``accelerator`` trains on a CUDA device."""
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def native_bf16(gpu: bool) -> bool:
    """Whether the device computes bfloat16 natively (CUDA with bf16 support; a CPU with AMX or AVX-512 BF16)."""
    if gpu:
        return torch.cuda.is_bf16_supported()
    return any(bool(getattr(torch.cpu, probe, lambda: False)())  # private probes: absent ones read as "no"
               for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))


def device_description(gpu: bool) -> str:
    """The device a run trains on, as the tables name it: the GPU's name, or the CPU's model and
    whether it computes bfloat16 natively (timings differ several-fold between the two kinds)."""
    if gpu:
        return torch.cuda.get_device_name()
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
                 platform.processor() or "CPU")
    return f"{model}, {'native' if native_bf16(False) else 'emulated'} bfloat16"


def training_precision(precision: str, accelerator: str) -> str:
    """Lightning's precision for ``trainer.precision``: ``auto`` becomes bf16-mixed where
    bfloat16 is native (``native_bf16``), else 32-true; any other value is kept."""
    if precision != "auto":
        return precision
    return "bf16-mixed" if native_bf16(uses_gpu(accelerator)) else "32-true"


def note_emulated_bf16(precision: str, accelerator: str) -> None:
    """Say on stderr when ``precision`` is bf16-mixed on a CPU that only emulates bfloat16."""
    if precision == "bf16-mixed" and not uses_gpu(accelerator) and not native_bf16(False):
        print("note: bf16-mixed precision on this CPU is emulated (it has neither AMX nor AVX-512 BF16) and trains "
              "far slower than 32-true; choose precision auto or 32-true", file=sys.stderr)

"""Every random draw in selfsup works on a CUDA generator: an AST rule over the package.

PyTorch refuses ``torch.rand(n, generator=g)`` when ``g`` lives on a GPU (the tensor would
be created on the CPU), so the package draws only through ``selfsup.rng``, whose helpers
create each tensor on the generator's device.  This test fails on any other call that hands
a generator to a PyTorch random function, and checks the helpers themselves.
"""
import ast
from pathlib import Path

import pytest
import torch

from selfsup import rng

PACKAGE = Path(rng.__file__).parent
RANDOM_FUNCTIONS = {"rand", "randn", "randint", "randperm", "rand_like", "randn_like", "randint_like", "bernoulli",
                    "multinomial", "normal", "poisson", "uniform_", "normal_", "bernoulli_", "random_",
                    "exponential_", "geometric_", "log_normal_", "cauchy_"}


def is_torch_random_function(func: ast.expr) -> bool:
    """``torch.rand``, ``x.uniform_``..., or ``getattr(torch, name)``."""
    if isinstance(func, ast.Attribute):
        return func.attr in RANDOM_FUNCTIONS
    return (isinstance(func, ast.Call) and isinstance(func.func, ast.Name) and func.func.id == "getattr"
            and isinstance(func.args[0], ast.Name) and func.args[0].id == "torch")


def draws_with_a_generator(source: str) -> list[int]:
    """Lines of calls to a PyTorch random function that pass a generator (by keyword)."""
    return [node.lineno for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Call) and is_torch_random_function(node.func)
            and any(k.arg == "generator" for k in node.keywords)]


def test_the_rule_catches_a_draw_that_a_cuda_generator_refuses():
    assert draws_with_a_generator("x = torch.randint(8, (4,), generator=self.generator)") == [1]
    assert draws_with_a_generator("x = torch.rand(4, generator=g,\n device=d)") == [1]
    assert draws_with_a_generator("x.uniform_(generator=g)") == [1]
    assert draws_with_a_generator("x = getattr(torch, kind)(shape, generator=g)") == [1]
    assert draws_with_a_generator("x = rng.randint(0, 8, 4, self.generator)") == []


def test_no_module_draws_outside_the_rng_helpers():
    offenders = {str(path.relative_to(PACKAGE)): draws_with_a_generator(path.read_text())
                 for path in PACKAGE.rglob("*.py") if path.name != "rng.py"}
    offenders = {path: lines for path, lines in offenders.items() if lines}
    assert not offenders, f"draw through selfsup.rng (these calls fail on a CUDA generator): {offenders}"


@pytest.mark.parametrize("draw, plain", [
    (lambda g: rng.rand((3, 2), g), lambda g: torch.rand((3, 2), generator=g)),
    (lambda g: rng.randn(5, g), lambda g: torch.randn(5, generator=g)),
    (lambda g: rng.randint(2, 9, (4,), g), lambda g: torch.randint(2, 9, (4,), generator=g)),
    (lambda g: rng.randperm(7, g), lambda g: torch.randperm(7, generator=g)),
])
def test_helpers_draw_the_plain_numbers_on_the_generators_device(draw, plain):
    ours, theirs = draw(torch.Generator().manual_seed(3)), plain(torch.Generator().manual_seed(3))
    assert torch.equal(ours, theirs) and ours.device == torch.device("cpu")


def test_helpers_move_the_draw_where_asked():
    x = rng.rand(4, torch.Generator().manual_seed(0), device="meta", dtype=torch.float64)
    assert x.device.type == "meta" and x.dtype == torch.float64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_helpers_draw_with_a_cuda_generator_into_cpu_tensors():
    g = torch.Generator(device="cuda").manual_seed(0)
    assert rng.randperm(5, g, device="cpu").device.type == "cpu"
    assert rng.randint(0, 3, 2, g).device.type == "cuda"


def test_host_twin_of_a_cpu_generator_is_the_generator_itself():
    """A CPU run draws its host-read numbers (sizes, orders) from the one stream, as before."""
    g = torch.Generator().manual_seed(5)
    assert rng.host_twin(g) is g
    assert torch.equal(rng.integers(2, 9, 6, torch.Generator().manual_seed(5)), torch.randint(2, 10, (6,), generator=g))


class DeviceGenerator:
    """Stands in for a CUDA generator on a machine without one: a device and a seed."""
    device = torch.device("cuda")

    def __init__(self, seed):
        self.seed = seed

    def initial_seed(self):
        return self.seed


def test_host_twin_of_a_device_generator_is_one_cpu_stream_per_generator():
    first, second = DeviceGenerator(11), DeviceGenerator(11)
    twin = rng.host_twin(first)
    assert twin.device.type == "cpu" and rng.host_twin(first) is twin  # every caller of a step shares it
    assert rng.host_twin(second) is not twin  # a new step's generator: a new stream from its own seed
    assert torch.equal(rng.randperm(9, twin), torch.randperm(9, generator=torch.Generator().manual_seed(11)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_host_read_draws_wait_on_no_device():
    """The draws the host reads come from the twin: no device synchronisation (CUDA's sync debug
    mode turns one into an error) in block masks, I-JEPA's masks, the jitter order, integer
    crops, TS-TCC's permutations and RandAugment's choice of operations."""
    from selfsup.data.augment import color_jitter
    from selfsup.data.randaugment import rand_augment
    from selfsup.methods.ijepa import multi_block_masks
    from selfsup.methods.masking import varying_patch_mask
    from selfsup.methods.ts_tcc import permute_segments

    g = torch.Generator(device="cuda").manual_seed(0)
    images, series = torch.rand(4, 3, 8, 8, device="cuda"), torch.randn(4, 2, 32, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        varying_patch_mask(4, 4, 4, (0.1, 0.5), 0.5, g)
        multi_block_masks(4, 4, 4, g)
        color_jitter(images, 0.5, 0.8, g)
        rng.integers(0, 9, 3, g)
        permute_segments(series, 5, g)
        rand_augment(images, g)
    finally:
        torch.cuda.set_sync_debug_mode(0)


def test_seeding_the_default_generators_repeats_what_modules_draw_without_one():
    """Dropout and stochastic depth draw from PyTorch's default generators, which the engine seeds
    each step from the step's key: the same key, the same mask; another key, another mask."""
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        x = torch.ones(1000, device=device)
        masks = []
        for key in ((0, 1, 2), (0, 1, 2), (0, 1, 3)):
            rng.seed_default_generators(*key)
            masks.append(torch.nn.functional.dropout(x, 0.5, training=True))
        assert torch.equal(masks[0], masks[1]) and not torch.equal(masks[0], masks[2]), device

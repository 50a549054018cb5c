import os
import shutil

import pytest
import torch

from support import TINY

if os.environ.get("PYTEST_XDIST_WORKER"):
    # one thread per pytest-xdist worker (``-n 2`` on two cores): idle OpenMP threads of two
    # two-thread processes spin and slow each other down far beyond a factor of two
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"  # and in the processes the tests start


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def private_eemd_cache(tmp_path, monkeypatch):
    """The forecasting tests' EEMD cache in the test's own folder (``SELFSUP_CACHE``)."""
    monkeypatch.setenv("SELFSUP_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def tiny_args():
    """Options for a seconds-long SimCLR run on the synthetic dataset."""
    return list(TINY)


@pytest.fixture(scope="session")
def tiny_simclr_run(tmp_path_factory):
    """A finished 2-epoch SimCLR run of TINY's settings, pretrained once per test session;
    tests that write into a run take a copy (``simclr_run``)."""
    from selfsup.cli import main

    out = tmp_path_factory.mktemp("session-runs") / "simclr"
    assert main(["pretrain", "--method", "simclr", "--epochs", "2", "--out", str(out), *TINY]) == 0
    return out


@pytest.fixture
def simclr_run(tiny_simclr_run, tmp_path):
    """A copy of the session's tiny SimCLR run, this test's to change."""
    return shutil.copytree(tiny_simclr_run, tmp_path / "simclr")


def pytest_collection_modifyitems(items):
    """The long tests first (slow ones where selected, then the learning tests): pytest-xdist's
    workers then end on short tests, not one idle behind the other's last long test."""
    items.sort(key=lambda item: (item.get_closest_marker("slow") is None, "test_learning.py" not in item.nodeid))

import json
import os
import shutil
from pathlib import Path

if os.environ.get("PYTEST_XDIST_WORKER"):
    # one thread per pytest-xdist worker (``-n 2`` on two cores), in every thread pool: idle
    # threads of two two-thread processes spin and slow each other down far beyond a factor of
    # two (OpenBLAS under NumPy, SciPy and faiss, faiss's OpenMP and torch's).  Set before they
    # load, and for the processes the tests start; threadpoolctl for any loaded already.
    for _pool in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_pool] = "1"

import pytest
import torch
from threadpoolctl import threadpool_limits

from support import TINY

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
    threadpool_limits(1)


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


# Each test's seconds (setup, call and teardown) as one pytest-xdist worker of scripts/test.sh ran it
# on the slowest CPU kind we test on; those over SLOW_SECONDS are marked ``slow``, so that the
# suite CI runs stays under 20 minutes there.  ``SELFSUP_RECORD_DURATIONS=JSON bash scripts/test.sh``
# writes each test's seconds into JSON (DURATIONS, for this record), keeping the entries of tests the run left out.
DURATIONS = Path(__file__).resolve().parents[1] / "benchmarks" / "test-suite" / "durations.json"
SLOW_SECONDS = 25


def read_record(path: Path = DURATIONS) -> dict:
    """The durations record at ``path`` (``cpu``, ``command``, ``seconds``), empty where there is none."""
    return json.loads(path.read_text()) if path.is_file() else {}


def recorded_seconds(path: Path = DURATIONS) -> dict[str, float]:
    return read_record(path).get("seconds", {})


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(items):
    """Tests recorded over SLOW_SECONDS marked ``slow``; then the long tests first (slow ones
    where selected, then the learning tests): pytest-xdist's workers then end on short tests,
    not one idle behind the other's last long test."""
    seconds = recorded_seconds()
    for item in items:
        if seconds.get(item.nodeid, 0) > SLOW_SECONDS:
            item.add_marker(pytest.mark.slow)
    items.sort(key=lambda item: (item.get_closest_marker("slow") is None, "test_learning.py" not in item.nodeid))


_measured: dict[str, float] = {}


def pytest_runtest_logreport(report):
    _measured[report.nodeid] = _measured.get(report.nodeid, 0.0) + report.duration


def pytest_sessionfinish(session):
    target = os.environ.get("SELFSUP_RECORD_DURATIONS")
    if not target or os.environ.get("PYTEST_XDIST_WORKER"):  # the controller has every worker's reports
        return
    path = Path(target)
    record = read_record(path)
    seconds = {**record.get("seconds", {}), **{name: round(value, 1) for name, value in _measured.items()}}
    from selfsup.precision import device_description

    record = {"cpu": device_description(gpu=False), "command": "SELFSUP_RECORD_DURATIONS=JSON bash scripts/test.sh",
              **{key: value for key, value in record.items() if key not in ("cpu", "command")},
              "seconds": dict(sorted(seconds.items(), key=lambda item: -item[1]))}
    path.write_text(json.dumps(record, indent=1) + "\n")

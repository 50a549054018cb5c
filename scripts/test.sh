#!/usr/bin/env bash
# Installs what the tests need into .venv and runs them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh dev,timeseries
# The report's browser test needs Chromium; install it where we can, never fail over it.
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null && ! command -v google-chrome >/dev/null \
    && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }; } >/dev/null 2>&1 \
    || echo "test.sh: could not install chromium; the report's browser test will be skipped" >&2
fi
# The learning tests (tests/test_learning.py) train on Fashion-MNIST: install it where we can; under
# CI=true those tests fail rather than skip without it.
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && [ "$(id -u)" = 0 ] \
    && command -v apt-get >/dev/null; then
  { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; }; } \
    >/dev/null 2>&1 || echo "test.sh: could not install dataset-fashion-mnist" >&2
fi
# One pytest-xdist worker per core, one thread each (tests/conftest.py): on two cores about 1.3x
# the throughput of one two-thread process on the training-heavy tests; the learning tests go first
# (conftest) and an idle worker takes queued tests from the busy one (worksteal).  Tests marked slow
# (over about 25 seconds on one core of the slowest CPU kind: tests/conftest.py) are left out: `bash scripts/test.sh -m slow` runs them, and
# `-m ""` runs everything (a later -m replaces this one).
exec .venv/bin/python -m pytest -q -n auto --dist worksteal --durations=25 -m "not slow" "$@"

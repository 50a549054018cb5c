#!/usr/bin/env bash
# Creates .venv (if missing) and installs selfsup with its pinned dependencies into it.
# Usage: bash scripts/install.sh [extras]   e.g. `dev` for the test tools, `dev,timeseries` for tests and series.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "selfsup needs Python 3.10 or newer (found: $("$PYTHON" --version 2>&1)); set PYTHON=/path/to/python3" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
target="."
if [ -n "${1:-}" ]; then target=".[$1]"; fi
# torch==2.14.1 and torchvision==0.29.1 are pinned in pyproject.toml.
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$target"

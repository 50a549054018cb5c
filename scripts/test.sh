#!/usr/bin/env bash
# Installs what the tests need into .venv and runs them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh dev
exec .venv/bin/python -m pytest -q "$@"

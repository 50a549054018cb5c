#!/usr/bin/env bash
# Every registered method on a CUDA device in bf16 (the semi-supervised ones through `selfsup semisup`), a
# checkpoint killed and resumed, the kNN monitor, `evaluate knn`, one forecast, MAE under FSDP and the CUDA tests: one line per
# item. Exits 0 with a message where no CUDA device exists. Uses .venv when there is one (bash scripts/install.sh dev,timeseries).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; fi
exec "$PYTHON" scripts/gpu_check.py "$@"

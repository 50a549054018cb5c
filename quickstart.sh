#!/usr/bin/env bash
# Sets everything up on a fresh machine and runs the default job: RotNet pretraining on
# Fashion-MNIST (about 10 minutes on 2 CPU cores, configs/quickstart.yaml), printing its kNN and
# linear-probe accuracy beside the pixel and random-init baselines.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/install.sh timeseries
FMNIST=/usr/share/datasets/fashion-mnist
if [ ! -f "$FMNIST/train-images-idx3-ubyte.gz" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "Installing Fashion-MNIST (Debian package dataset-fashion-mnist)..."
    apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null
  else
    echo "Fashion-MNIST is missing from $FMNIST. Install it with" >&2
    echo "  sudo apt-get install dataset-fashion-mnist" >&2
    echo "or put the four *-ubyte.gz files in a directory and run" >&2
    echo "  .venv/bin/selfsup pretrain --method rotation --config configs/quickstart.yaml --data-dir DIR --baselines --linear-probe" >&2
    exit 1
  fi
fi
out="runs/quickstart-$(date +%Y%m%d-%H%M%S)"
exec .venv/bin/selfsup pretrain --method rotation --dataset fashion-mnist --config configs/quickstart.yaml \
  --baselines --linear-probe --out "$out" "$@"

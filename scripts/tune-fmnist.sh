#!/usr/bin/env bash
# 1-epoch Fashion-MNIST tuning runs for the fmnist-quick settings of one method:
#   bash scripts/tune-fmnist.sh METHOD LABEL [--set key=value ...]
# prints "METHOD LABEL settings: kNN monitor after 1 epoch"; runs go to runs/tuning/METHOD-LABEL.
set -euo pipefail
cd "$(dirname "$0")/.."
method=$1; label=$2; shift 2
out=runs/tuning/$method-$label
if [ ! -f "$out/metrics.json" ]; then
  .venv/bin/selfsup pretrain --method "$method" --epochs 1 --width 16 --set backbone.small_stem=true \
    --set trainer.progress_bar=false --set knn.final=false --out "$out" --resume "$@" >/dev/null
fi
knn=$(.venv/bin/python -c "import json,sys; print(round(json.load(open('$out/metrics.json'))['knn_history'][-1]['knn_top1'], 3))")
echo "$method $label $*: $knn"

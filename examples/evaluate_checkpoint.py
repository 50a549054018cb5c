"""Evaluate a run (or checkpoint) from Python: kNN, a linear probe and the embedding's health.

    python examples/evaluate_checkpoint.py runs/simclr-fashion-mnist
    python examples/evaluate_checkpoint.py runs/simclr-fashion-mnist --probe-epochs 10

Each protocol writes eval_<protocol>.json in the run directory, as `selfsup evaluate` does.
"""
import argparse

import selfsup

parser = argparse.ArgumentParser()
parser.add_argument("run", help="a run directory or a .ckpt file")
parser.add_argument("--probe-epochs", type=int, default=100)
args = parser.parse_args()

knn = selfsup.evaluate("knn", args.run, k=20)
print(f"kNN top-1 {knn['top1']:.3f} (standardised pixels {knn['baselines']['pixels']:.3f}, random-init network "
      f"{knn['baselines']['random_init']:.3f})")
linear = selfsup.evaluate("linear", args.run, epochs=args.probe_epochs, baselines=False)
print(f"linear probe top-1 {linear['top1']:.3f}")
health = selfsup.evaluate("diagnostics", args.run, images=500)
print(f"effective rank {health['effective_rank']:.1f} of {health['feature_dim']} dimensions; normalised std "
      f"{health['normalized_std']:.4f} (healthy about {health['normalized_std_healthy']:.4f}); alignment "
      f"{health['alignment']:.3f}, uniformity {health['uniformity']:.3f}")

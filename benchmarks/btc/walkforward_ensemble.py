"""Pooled walk-forward scores of several seeds' runs (`reformer train --walk-forward N --out WORK/run<k>`) and of
their mean forecast (a seed ensemble), beside ridge, over the same out-of-sample windows.

    python benchmarks/btc/walkforward_ensemble.py WORK SEED [SEED ...]

Reads WORK/run<k>/predictions.csv (timestamp, fold, realised, prediction, zero, momentum, ridge) and prints, per seed
and for the mean of the seeds: the pooled IC with its 95% moving-block bootstrap interval (blocks of 2 x 24
windows), the IC minus ridge's with its paired interval, MSE skill against zero, directional accuracy, and the IC
per fold.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from reformer.training.metrics import ic_difference_interval, ic_interval, information_coefficient, regression_metrics

BLOCK = 48


def line(name: str, pred: np.ndarray, table: pd.DataFrame) -> str:
    y, ridge = table["realised"].to_numpy(), table["ridge"].to_numpy()
    metrics = regression_metrics(pred, y)
    low, high = ic_interval(pred, y, BLOCK)
    diff, d_low, d_high = ic_difference_interval(pred, ridge, y, BLOCK)
    folds = " ".join(f"{information_coefficient(pred[table['fold'] == k], y[table['fold'] == k]):+.3f}"
                     for k in sorted(table["fold"].unique()))
    return (f"{name:<14} IC {metrics['ic']:+.4f} [{low:+.3f}, {high:+.3f}]  minus ridge {diff:+.4f} "
            f"[{d_low:+.3f}, {d_high:+.3f}]  skill {metrics['mse_skill']:+.4f}  "
            f"dir.acc {metrics['directional_accuracy']:.3f}  per fold {folds}")


def model(table: pd.DataFrame) -> np.ndarray:
    """The model's forecast column (`prediction`; `model` in files written before 2026-12-03 17:00 UTC)."""
    return table["prediction" if "prediction" in table else "model"].to_numpy()


def main() -> None:
    work, seeds = Path(sys.argv[1]), [int(s) for s in sys.argv[2:]]
    tables = [pd.read_csv(work / f"run{s}" / "predictions.csv") for s in seeds]
    base = tables[0]
    for seed, table in zip(seeds, tables, strict=True):
        if not (table["timestamp"].equals(base["timestamp"]) and np.allclose(table["ridge"], base["ridge"])):
            raise SystemExit(f"run{seed}: other windows or another ridge forecast than run{seeds[0]}")
    first, last = (pd.to_datetime(base["timestamp"].iloc[i], unit="ms", utc=True) for i in (0, -1))
    print(f"{len(base)} out-of-sample windows, {first:%Y-%m-%d} .. {last:%Y-%m-%d}, "
          f"{base['fold'].nunique()} folds")
    for seed, table in zip(seeds, tables, strict=True):
        print(line(f"seed {seed}", model(table), base))
    mean = np.mean([model(t) for t in tables], axis=0)
    print(line(f"mean of {len(seeds)}", mean, base))
    print(line("ridge", base["ridge"].to_numpy(), base))
    print(line("momentum", base["momentum"].to_numpy(), base))


if __name__ == "__main__":
    main()

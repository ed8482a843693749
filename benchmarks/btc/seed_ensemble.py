"""Spearman IC of each seed's predictions and of their mean, on the validation and test windows of the 70/10/20 split.

    python benchmarks/btc/seed_ensemble.py CSV WORK_DIR SEED [SEED ...]

Reads WORK_DIR/pred{seed}.csv (`reformer predict --all`) and the split ranges from benchmarks/btc/seeds/
evaluation_seed{first}.json; the target is the 24-bar forward log return from each window's last close.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd


def spearman(a: pd.Series, b: pd.Series) -> float:
    return float(a.rank().corr(b.rank()))


def main() -> None:
    csv, work, seeds = sys.argv[1], Path(sys.argv[2]), [int(s) for s in sys.argv[3:]]
    candles = pd.read_csv(csv)
    log_close = np.log(candles["close"].to_numpy())
    horizon = 24
    forward = pd.Series(np.r_[log_close[horizon:] - log_close[:-horizon], [np.nan] * horizon],
                        index=candles["timestamp"].to_numpy())
    here = Path(__file__).parent / "seeds"
    splits = json.loads((here / f"evaluation_seed{seeds[0]}.json").read_text())["splits"]
    for name in ("val", "test"):
        first, last = splits[name]["first_timestamp"], splits[name]["last_timestamp"]
        preds = []
        for seed in seeds:
            table = pd.read_csv(work / f"pred{seed}.csv").set_index("timestamp")["prediction"]
            preds.append(table[(table.index >= first) & (table.index <= last)])
        ics = [spearman(p, forward.loc[p.index]) for p in preds]
        mean = pd.concat(preds, axis=1).mean(axis=1)
        by_seed = " ".join(f"{s}:{ic:+.4f}" for s, ic in zip(seeds, ics, strict=True))
        print(f"{name}: {len(mean)} windows; IC by seed {by_seed}"
              f"; mean of the ICs {np.mean(ics):+.4f}; IC of the mean prediction "
              f"{spearman(mean, forward.loc[mean.index]):+.4f}")


if __name__ == "__main__":
    main()

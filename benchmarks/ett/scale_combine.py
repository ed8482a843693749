"""Score the members saved by `scale_members.py`, alone and as mean-forecast ensembles across patch scales, beside
the closed-form linear baseline: validation MSE, test MSE on every window, and test MSE on the leading windows a
drop_last=True loader of batch 128 keeps (PatchTST's published rows).

    python benchmarks/ett/scale_combine.py OUT_DIR H [H ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from reformer.data.timeseries import load_timeseries_csv, lstf_splits
from reformer.training.forecast import LinearForecaster
from reformer.training.lstf_scoring import WindowSet, drop_last_windows

SEQ_LEN = 336


def main() -> None:
    out = Path(sys.argv[1])
    series = load_timeseries_csv("/work/shared/data/ett/ETTh1.csv", target="OT", features="M")
    for horizon in (int(a) for a in sys.argv[2:]):
        splits = lstf_splits(series, SEQ_LEN, horizon, protocol="ett_hour")
        train, val, test = (WindowSet(part, SEQ_LEN, horizon) for part in (splits.train, splits.val, splits.test))
        (x_val, y_val), (x_test, y_test) = val.arrays(), test.arrays()
        lead = drop_last_windows(len(x_test), 128)

        def score(pred_val: np.ndarray, pred_test: np.ndarray, y_val: np.ndarray = y_val,
                  y_test: np.ndarray = y_test, lead: int = lead) -> str:
            parts = (((pred_val - y_val) ** 2).mean(), ((pred_test - y_test) ** 2).mean(),
                     ((pred_test[:lead] - y_test[:lead]) ** 2).mean())
            return " / ".join(f"{float(v):.4f}" for v in parts)

        preds = {path.name[: -len("_val.npy")]: (np.load(path), np.load(str(path).replace("_val.npy", "_test.npy")))
                 for path in sorted(out.glob(f"H{horizon}_*_val.npy"))}
        print(f"H={horizon}: {len(preds)} members; validation / test, every window / test, PatchTST's windows")
        linear = LinearForecaster().fit(*train.arrays())
        print(f"  {'linear (closed form)':<34} {score(linear.predict(x_val), linear.predict(x_test))}")
        for tag, (pred_val, pred_test) in preds.items():
            print(f"  {tag[len(f'H{horizon}_'):]:<34} {score(pred_val, pred_test)}")
        groups = {f"mean of {scale} members": [t for t in preds if f"_{scale}_" in t]
                  for scale in ("p16s8", "p24s12", "p32s16")}
        groups["mean of all members"] = list(preds)
        for name, tags in groups.items():
            if tags:
                mean_val = np.mean([preds[t][0] for t in tags], axis=0)
                mean_test = np.mean([preds[t][1] for t in tags], axis=0)
                print(f"  {name + f' ({len(tags)})':<34} {score(mean_val, mean_test)}")


if __name__ == "__main__":
    main()

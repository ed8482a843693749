"""Train ETTh1 members with the README table's recipe at one patch scale and several seeds, and save each member's
validation and test forecasts (float32 .npy), so that ensembles across scales can be scored afterwards
(`scale_combine.py`). Each member is exactly the model `reformer evaluate ... --patch-len P --stride S --seed K`
trains (the table's flags otherwise).

    python benchmarks/ett/scale_members.py H PATCH STRIDE SEEDS OUT_DIR [CSV]
    e.g. python benchmarks/ett/scale_members.py 96 24 12 0,1,2 /tmp/scales

Shapes saved: <OUT_DIR>/H<h>_p<P>s<S>_seed<K>_{val,test}.npy, (windows, h, 7).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from reformer.data.timeseries import load_timeseries_csv, lstf_splits
from reformer.training.forecast import ForecastConfig
from reformer.training.loop import TrainConfig
from reformer.training.lstf import _fit_member
from reformer.training.lstf_scoring import WindowSet

SEQ_LEN = 336


def main() -> None:
    horizon, patch, stride = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    seeds = [int(s) for s in sys.argv[4].split(",")]
    out = Path(sys.argv[5])
    csv = sys.argv[6] if len(sys.argv) > 6 else "/work/shared/data/ett/ETTh1.csv"
    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    series = load_timeseries_csv(csv, target="OT", features="M")
    splits = lstf_splits(series, SEQ_LEN, horizon, protocol="ett_hour")
    train, val, test = (WindowSet(part, SEQ_LEN, horizon) for part in (splits.train, splits.val, splits.test))
    for seed in seeds:
        began = time.time()
        config = ForecastConfig(seq_len=SEQ_LEN, horizon=horizon, n_channels=7, patch_len=patch, stride=stride,
                                d_model=64, n_heads=4, n_layers=2, d_ff=128, attention_type="full", dropout=0.1,
                                seed=seed)
        train_config = TrainConfig(epochs=3, max_batches_per_epoch=32, batch_size=128, lr=1e-3, weight_decay=1e-4,
                                   patience=2, seed=seed)
        member = _fit_member(config, train_config, train, val, target_only=False, progress=False, log=None,
                             out_dir=None, meta=None, resume=False)
        tag = f"H{horizon}_p{patch}s{stride}_seed{seed}"
        with torch.no_grad():
            for name, windows in (("val", val), ("test", test)):
                x, _ = windows.batch(slice(None))
                pred = torch.cat([member.predict(x[i: i + 512]) for i in range(0, len(x), 512)])  # (w, h, 7)
                np.save(out / f"{tag}_{name}.npy", pred.numpy().astype(np.float32))
        print(tag, "val_mse by epoch", json.dumps(member.info()["val_mse"]), f"{time.time() - began:.0f} s",
              flush=True)


if __name__ == "__main__":
    main()

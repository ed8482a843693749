"""Training throughput of one data-parallel job against one process: `fit` on synthetic windows, the same global
batch, windows per second over the epochs after the first (its warm-up left out). Run by run.sh, once in one
process and once under torchrun; each run prints one JSON line (rank 0 only).

    python benchmarks/distributed/bench.py LABEL
"""

from __future__ import annotations

import json
import sys

import torch

from reformer.data.dataset import WindowDataset
from reformer.model import ReformerConfig, ReformerModel
from reformer.training import TrainConfig, distributed, fit

SEQ_LEN, FEATURES, BATCH, BATCHES, EPOCHS = 256, 8, 32, 8, 4


def main(label: str) -> None:
    joined = distributed.init_from_env()
    gen = torch.Generator().manual_seed(0)
    n = BATCH * BATCHES
    features = torch.randn(n + 64, SEQ_LEN, FEATURES, generator=gen)
    targets = torch.randn(n + 64, generator=gen)
    train = WindowDataset(features, targets, torch.arange(n).numpy())
    val = WindowDataset(features, targets, torch.arange(n, n + 64).numpy())
    model = ReformerModel(ReformerConfig(seq_len=SEQ_LEN, d_model=64, n_heads=4, n_layers=2, chunk_size=32,
                                         n_buckets=8, n_features=FEATURES, dropout=0.0, seed=0))
    config = TrainConfig(epochs=EPOCHS, batch_size=BATCH, eval_batch_size=64, patience=0, device="cpu", seed=0)
    history = fit(model, train, val, config, progress=False).history
    seconds = sum(record["seconds"] for record in history[1:])
    if distributed.is_main():
        print(json.dumps({"run": label, "processes": distributed.world_size(), "threads": torch.get_num_threads(),
                          "global_batch": BATCH, "seq_len": SEQ_LEN, "windows_per_s": n * (EPOCHS - 1) / seconds}))
    distributed.barrier()
    if joined:
        distributed.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])

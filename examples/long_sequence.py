"""One year of hourly candles in one window: seq_len = 8760 with LSH attention and reversible layers."""

from __future__ import annotations

import resource
import time

import torch

from reformer import ReformerConfig, ReformerModel

config = ReformerConfig(seq_len=8760, d_model=256, n_heads=8, n_layers=6, n_hash_rounds=8, n_buckets=64,
                        chunk_size=64, use_reversible_layers=True, n_features=8, ff_chunks=8)
model = ReformerModel(config)
x = torch.randn(1, config.seq_len, config.n_features)
model.eval()
with torch.no_grad():
    start = time.perf_counter()
    y = model(x)
    print(f"forward, batch 1, L = {config.seq_len}: {time.perf_counter() - start:.2f} s -> {tuple(y.shape)}")
print(f"peak resident memory so far: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GB")

"""Peak memory of one training step of the one-year hourly configuration (seq_len 8760), batch 1.

The target: it trains at batch 1 in under 2 GB of peak memory. One process: build `bench.targets.LONG_CONFIG`
(d_model 256, 8 heads, 6 layers, 8 rounds, 64 buckets, chunk 64, reversible), one forward + backward + AdamW
step on a (1, 8760, 1) input, then report the process's peak RSS (`ru_maxrss`, imports included) and the step
time. Run it the way the CLI runs (`tune_malloc`, huge-page allocation):

    THP_MEM_ALLOC_ENABLE=1 python benchmarks/targets/long_config_memory.py [--threads 2]
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from reformer.bench.targets import LONG_CONFIG
from reformer.model import ReformerModel
from reformer.runtime import tune_malloc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    tune_malloc()
    torch.set_num_threads(args.threads)
    after_imports = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    model = ReformerModel(LONG_CONFIG).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(1, LONG_CONFIG.seq_len, LONG_CONFIG.n_features)  # (1, 8760, 1)
    start = time.perf_counter()
    model(x).sum().backward()
    optimizer.step()
    optimizer.zero_grad()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"seq_len {LONG_CONFIG.seq_len}, batch 1, {args.threads} thread(s): peak RSS {peak:,.0f} MB "
          f"({after_imports:,.0f} MB after imports), training step {seconds:.1f} s")


if __name__ == "__main__":
    main()

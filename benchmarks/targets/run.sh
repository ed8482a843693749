#!/usr/bin/env bash
# The default configuration's targets (`reformer bench targets`) on one and on two threads, and the one-year
# configuration's training memory (long_config_memory.py).
#   OUT=dir bash benchmarks/targets/run.sh        (default OUT: runs/bench/targets; about 4 min on 2 cores)
# Copy OUT/result_*.json over the files beside this script to update them.
set -euo pipefail
out=${OUT:-runs/bench/targets}
mkdir -p "$out"
reformer bench targets --threads 1 --out "$out/result_1thread.json" --force
reformer bench targets --threads 2 --train-steps 4 --latency-calls 50 --long-calls 5 --out "$out/result_2threads.json" --force
THP_MEM_ALLOC_ENABLE=1 python "$(dirname "$0")/long_config_memory.py" --threads 2 | tee "$out/long_config_memory.txt"

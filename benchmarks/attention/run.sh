#!/usr/bin/env bash
# Attention alone, forward + backward, CPU:
# 1. `bench attention`: naive full, SDPA full, local and LSH attention at a few lengths (each cell its own process);
# 2. `bench attention-scaling`: our LSH attention layer from L = 2,048 to 131,072, with a log-log plot.
#   OUT=dir bash benchmarks/attention/run.sh      (default OUT: runs/bench/attention; about 3 min, 4 GB at most)
# Copy OUT/result.json and OUT/scaling.json over the files beside this script, and OUT/scaling.png over
# docs/assets/attention_scaling.png (the plot's one copy), to update them.
set -euo pipefail
out=${OUT:-runs/bench/attention}
mkdir -p "$out"
reformer bench attention --lengths 512,2048,8192 --repeats 3 --out "$out/result.json" --force
reformer bench attention-scaling --lengths 2048,4096,8192,16384,32768,65536,131072 --steps 1 --threads 1 \
  --budget-gb 16 --step-timeout 1200 --out "$out/scaling.json" --force

#!/usr/bin/env bash
# Peer comparison: one training step (forward + backward) of the same model shape in our Reformer, HF transformers'
# Reformer, reformer-pytorch and a full-attention (SDPA) Transformer, each in its own subprocess, interleaved.
# Needs the `bench` extra (pip install -e '.[bench]'). About 10 min for 2,048/8,192 and 35 min for 32,768 on 2 cores.
#   OUT=dir bash benchmarks/compare/run.sh        (default OUT: runs/bench/compare)
# Each command writes OUT/<name>.json (and a .md table of it); copy the .json over result_*.json to update.
set -euo pipefail
out=${OUT:-runs/bench/compare}
mkdir -p "$out"
reformer bench compare --lengths 2048,8192 --repeats 1 --threads 1 --out "$out/result_2048_8192.json" --force
reformer bench compare --lengths 32768 --impls ours,hf,lucidrains --repeats 2 --steps 3 --threads 2 \
  --out "$out/result_32768_2threads.json" --force
reformer bench compare --lengths 32768 --impls ours,hf,lucidrains --repeats 2 --steps 3 --threads 1 \
  --out "$out/result_32768_1thread.json" --force

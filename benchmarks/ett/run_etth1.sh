#!/usr/bin/env bash
# ETTh1, features M, input 336, horizons 96/192/336/720: patched Reformer (RevIN, channel independence,
# 42 patches of 16 steps, stride 8; full attention, reversible layers) beside Repeat and the closed-form linear map.
# CPU (2 cores shared with other jobs; two chains of one thread each run side by side); each run writes benchmarks/ett/etth1_M_L336_H<h>.json and a .log.
set -euo pipefail
cd "$(dirname "$0")/../.."
for h in ${HORIZONS:-96 192 336 720}; do
  .venv/bin/reformer evaluate --csv /work/shared/data/ett/ETTh1.csv --protocol ett-hourly --features M \
    --seq-len 336 --horizon "$h" --epochs 3 --max-batches 32 --threads 1 --batch-size 128 --lr 1e-3 --patience 2 \
    --d-model 64 --n-heads 4 --n-layers 2 --d-ff 128 --attention full --dropout 0.1 --seed 0 \
    --out "benchmarks/ett/etth1_M_L336_H${h}.json" ${EXTRA:-} > "benchmarks/ett/etth1_M_L336_H${h}.log" 2>&1
done

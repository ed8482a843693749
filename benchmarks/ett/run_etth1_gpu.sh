#!/usr/bin/env bash
# ETTh1 (features M, input 336) under PatchTST's schedule on one GPU: learning rate 1e-4, up to 100 epochs over
# every training window, early stopping with patience 20, the best validation epoch kept; every
# (encoder, horizon, seed) is its own `reformer evaluate` process, all side by side.
#   patchtst: the PatchTST/42 ETTh1 encoder size (width 16, 3 layers, FFN 128, dropout 0.3)
#   table:    the CPU table's encoder (width 64, 2 layers, FFN 128, dropout 0.1)
# Usage: CSV=.../ETTh1.csv OUTDIR=dir SEEDS="0 1" HORIZONS="96 192 336 720" CONFIGS="patchtst table" \
#        MAX_MINUTES=5 PYTHON=python3 bash benchmarks/ett/run_etth1_gpu.sh
set -uo pipefail
CSV=${CSV:-../shared/data/ett/ETTh1.csv}
OUTDIR=${OUTDIR:-benchmarks/ett/gpu}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUTDIR"
declare -A ENCODER=(
  [patchtst]="--d-model 16 --n-heads 4 --n-layers 3 --d-ff 128 --dropout 0.3"
  [table]="--d-model 64 --n-heads 4 --n-layers 2 --d-ff 128 --dropout 0.1"
)
for seed in ${SEEDS:-0}; do
  for h in ${HORIZONS:-96 192 336 720}; do
    for name in ${CONFIGS:-patchtst table}; do
      tag="etth1_M_L336_H${h}_${name}_seed${seed}"
      # shellcheck disable=SC2086
      "$PYTHON" -m reformer.cli evaluate --csv "$CSV" --protocol ett-hourly --features M --seq-len 336 \
        --horizon "$h" --epochs ${EPOCHS:-100} --patience 20 --batch-size 128 --lr 1e-4 --max-batches 0 \
        --attention full --threads 1 --device "${DEVICE:-cuda}" --max-minutes "${MAX_MINUTES:-5}" --seed "$seed" \
        ${ENCODER[$name]} --out "$OUTDIR/$tag.json" > "$OUTDIR/$tag.log" 2>&1 &
    done
  done
done
wait

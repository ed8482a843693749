#!/usr/bin/env bash
# ETTh1, features M, input 336, horizons 96/192/336/720: the patched Reformer (RevIN, channel independence, 42
# patches of 16 steps, stride 8; full attention over the patches, reversible layers) beside Repeat and the
# closed-form linear map. Each horizon trains N models (seeds 0 .. N-1; N=5 unless set) and scores each member
# and their mean forecast. Two chains of one thread each run side by side (96 then 192, 336 then 720).
#   bash benchmarks/ett/run.sh [ETTh1.csv]   (default: $REFORMER_SHARED_DATA/ett/ETTh1.csv)
#   OUT=dir N=5 ...                                 (default OUT: runs/bench/ett; ~8 min a horizon at N=5)
# Writes OUT/etth1_M_L336_H<h>.json and a .log; copy the JSON files beside this script to update them.
set -euo pipefail
if [ $# -ge 1 ]; then
  csv=$1
elif [ -n "${REFORMER_SHARED_DATA:-}" ]; then
  csv=$REFORMER_SHARED_DATA/ett/ETTh1.csv
else
  echo "give the ETTh1 CSV as an argument, or set REFORMER_SHARED_DATA to the folder holding ett/ETTh1.csv" >&2
  exit 2
fi
[ -f "$csv" ] || { echo "no such file: $csv" >&2; exit 2; }
out=${OUT:-runs/bench/ett}
n=${N:-5}
mkdir -p "$out"
run() {
  for h in "$@"; do
    reformer evaluate --csv "$csv" --protocol ett-hourly --features M \
      --seq-len 336 --horizon "$h" --epochs 3 --max-batches 32 --threads 1 --batch-size 128 --lr 1e-3 --patience 2 \
      --d-model 64 --n-heads 4 --n-layers 2 --d-ff 128 --attention full --dropout 0.1 --seed 0 --ensemble "$n" \
      --out "$out/etth1_M_L336_H${h}.json" --force > "$out/etth1_M_L336_H${h}.log" 2>&1
  done
}
run 96 192 &
first=$!
run 336 720 &
second=$!
wait "$first"
wait "$second"

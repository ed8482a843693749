#!/usr/bin/env bash
# Walk-forward evaluation of configs/btc_small.toml on the real BTCUSDT 1h candles: 6 expanding folds (each tests
# on ~6 months, 2023-02 .. 2025-12 in all, with a fresh model, scaler, target scale and ridge fitted on everything
# before its validation block), 5 models a fold (seeds 0-4) scored by their mean forecast, beside the zero,
# momentum and ridge baselines. One thread; about 35 min on a 2-core machine.
#   bash benchmarks/btc/run.sh [CANDLES.csv]   (default: $REFORMER_SHARED_DATA/crypto/bybit_BTCUSDT_perp_1h.csv)
#   OUT=dir ...                                              (default OUT: runs/bench/btc)
# Writes the run to OUT/run (walkforward.json, predictions.csv, fold_k/) and its console output to OUT/train.log;
# copy OUT/run/walkforward.json beside this script to update it.
set -euo pipefail
if [ $# -ge 1 ]; then
  csv=$1
elif [ -n "${REFORMER_SHARED_DATA:-}" ]; then
  csv=$REFORMER_SHARED_DATA/crypto/bybit_BTCUSDT_perp_1h.csv
else
  echo "give the candle CSV as an argument, or set REFORMER_SHARED_DATA to the folder holding" \
    "crypto/bybit_BTCUSDT_perp_1h.csv" >&2
  exit 2
fi
[ -f "$csv" ] || { echo "no such file: $csv" >&2; exit 2; }
out=${OUT:-runs/bench/btc}
config=$(dirname "$0")/../../configs/btc_small.toml
mkdir -p "$out"
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} reformer train --csv "$csv" --config "$config" --walk-forward 6 --ensemble 5 \
  --out "$out/run" --force 2>&1 | tee "$out/train.log"

#!/usr/bin/env bash
# The whole pipeline on the real BTCUSDT perpetual 1h candles, traded as a perpetual: the candles served by the
# local fake exchange (which derives funding settlements, mark-price candles and risk-limit tiers from them),
# fetched with `reformer fetch --funding --mark` into a fresh store, forecast out of sample by the six walk-forward
# folds of configs/btc_small.toml (one seed), and backtested from the first out-of-sample bar at 1x and 3x, with
# and without funding, beside buy & hold.
#   bash benchmarks/perpetual/run.sh [CANDLES.csv] [PREDICTIONS.csv]
#     CANDLES.csv      default: $REFORMER_SHARED_DATA/crypto/bybit_BTCUSDT_perp_1h.csv
#     PREDICTIONS.csv  an earlier walk-forward run's predictions.csv (skips the ~10 min of training)
#   OUT=dir ...        (default OUT: runs/bench/perpetual)
# Writes OUT/store.sqlite, OUT/run (when it trains), OUT/backtest_*.json; copy those JSON files beside this script
# to update them.
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
out=${OUT:-runs/bench/perpetual}
mkdir -p "$out"
port=${PORT:-8931}
reformer fake-exchange --csv "$csv" --port "$port" > "$out/fake-exchange.log" 2>&1 &
fake=$!
trap 'kill $fake 2>/dev/null || true' EXIT
for _ in $(seq 60); do grep -q BYBIT_BASE_URL "$out/fake-exchange.log" 2>/dev/null && break; sleep 1; done
export BYBIT_BASE_URL=http://127.0.0.1:$port REFORMER_DB=$out/store.sqlite
rm -f "$out/store.sqlite"
reformer fetch --symbol BTCUSDT --interval 60 --start 2020-01-01 --funding --mark | tee "$out/fetch.log"
if [ $# -ge 2 ]; then
  predictions=$2
else
  OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} reformer train --csv "$csv" --config "$(dirname "$0")/../../configs/btc_small.toml" \
    --walk-forward 6 --out "$out/run" --force 2>&1 | tee "$out/train.log"
  predictions=$out/run/predictions.csv
fi
for setting in "1 1 funding" "3 3 funding" "3 3 no-funding"; do
  set -- $setting
  reformer backtest --symbol BTCUSDT --interval 60 --predictions "$predictions" --leverage "$1" \
    --position-size "$2" --"$3" --json > "$out/backtest_${1}x_$3.json"
  reformer backtest --symbol BTCUSDT --interval 60 --predictions "$predictions" --leverage "$1" \
    --position-size "$2" --"$3"
done

#!/usr/bin/env bash
# The backtest engine's speed (`reformer bench backtest`): 50,000 hourly bars of one symbol, and a portfolio of ten
# symbols of 50,000 bars each, with leverage, stops, maker/taker fees, funding on mark candles and lot rounding.
#   OUT=dir bash benchmarks/backtest/run.sh        (default OUT: runs/bench/backtest; about 30 s on 2 cores)
# Copy OUT/result.json over the file beside this script to update it.
set -euo pipefail
out=${OUT:-runs/bench/backtest}
mkdir -p "$out"
reformer bench backtest --bars 50000 --symbols 10 --repeats 3 --out "$out/result.json" --force

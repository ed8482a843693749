#!/usr/bin/env bash
# A paper trader's latency at the default configuration (`reformer bench paper`): from a candle's close arriving on
# the fake exchange's WebSocket to its candle committed in the state (engine step, forecast, next target), over 40
# closes of a live replay, one every 0.5 s.
#   OUT=dir bash benchmarks/paper/run.sh        (default OUT: runs/bench/paper; about 1 min on 2 cores)
# Copy OUT/result.json over the file beside this script to update it.
set -euo pipefail
out=${OUT:-runs/bench/paper}
mkdir -p "$out"
reformer bench paper --closes 40 --period 0.5 --out "$out/result.json" --force

#!/usr/bin/env bash
# Walk-forward evaluation of configs/btc_small.toml beside the baselines on the real BTC candles: 6 expanding folds
# (`reformer train --walk-forward 6`: each fold tests on ~6 months, 2023-02 .. 2025-12 in all, after a fresh model
# trained on everything before its validation block), seeds 0-4 (seed in [model] and [train]) in two chains of one
# thread; then walkforward_ensemble.py scores the seeds' mean forecast over the pooled period.
#   bash benchmarks/btc/walkforward_eval.sh [CSV]   (default ../shared/data/crypto/bybit_BTCUSDT_perp_1h.csv)
set -euo pipefail
cd "$(dirname "$0")/../.."
csv=${1:-../shared/data/crypto/bybit_BTCUSDT_perp_1h.csv}
work=${WORK:-/tmp/btc_wf}
mkdir -p "$work" benchmarks/btc/wf_eval
export OMP_NUM_THREADS=1
run() {
  for s in "$@"; do
    sed "s/^seed = 0/seed = $s/" configs/btc_small.toml > "$work/seed$s.toml"
    .venv/bin/reformer train --csv "$csv" --config "$work/seed$s.toml" --walk-forward 6 --out "$work/run$s" \
      > "benchmarks/btc/wf_eval/seed$s.log" 2>&1
    cp "$work/run$s/walkforward.json" "benchmarks/btc/wf_eval/walkforward_seed$s.json"
  done
}
run 0 2 4 &
run 1 3 &
wait
.venv/bin/python benchmarks/btc/walkforward_ensemble.py "$work" 0 1 2 3 4 | tee benchmarks/btc/wf_eval/ensemble.txt

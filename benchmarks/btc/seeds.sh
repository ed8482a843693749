#!/usr/bin/env bash
# configs/btc_small.toml with seeds 0-4 (seed in [model] and [train]), one thread each, one after another; then each
# run's predictions for every window (`reformer predict --all`) and seed_ensemble.py's ICs per seed and of the mean.
#   bash benchmarks/btc/seeds.sh [CSV]      (default ../shared/data/crypto/bybit_BTCUSDT_perp_1h.csv; ~3.5 min a seed)
set -euo pipefail
cd "$(dirname "$0")/../.."
csv=${1:-../shared/data/crypto/bybit_BTCUSDT_perp_1h.csv}
work=${WORK:-/tmp/btc_seeds}
mkdir -p "$work" benchmarks/btc/seeds
export OMP_NUM_THREADS=1
for s in 0 1 2 3 4; do
  sed "s/^seed = 0/seed = $s/" configs/btc_small.toml > "$work/seed$s.toml"
  .venv/bin/reformer train --csv "$csv" --config "$work/seed$s.toml" --out "$work/run$s" --json \
    > "benchmarks/btc/seeds/evaluation_seed$s.json" 2> "$work/train$s.log"
  .venv/bin/reformer predict --checkpoint "$work/run$s" --csv "$csv" --all --out "$work/pred$s.csv"
done
.venv/bin/python benchmarks/btc/seed_ensemble.py "$csv" "$work" 0 1 2 3 4 | tee benchmarks/btc/seeds/ensemble.txt

#!/usr/bin/env bash
# ETTh1 with the README table's settings (run_etth1.sh), as an ensemble of N seeds (0 .. N-1; N=3 unless set, e.g.
# `N=5 bash benchmarks/ett/run_etth1_ensemble.sh`): each member is exactly the model `--seed k` trains alone; the
# score is their mean forecast's. Two chains of one thread each run side by side (96 then 192, 336 then 720); each
# run writes benchmarks/ett/ensemble/etth1_M_L336_H<h>_ens<N>.json and a .log.
set -euo pipefail
cd "$(dirname "$0")/../.."
N="${N:-3}"
run() {
  for h in "$@"; do
    .venv/bin/reformer evaluate --csv /work/shared/data/ett/ETTh1.csv --protocol ett-hourly --features M \
      --seq-len 336 --horizon "$h" --epochs 3 --max-batches 32 --threads 1 --batch-size 128 --lr 1e-3 --patience 2 \
      --d-model 64 --n-heads 4 --n-layers 2 --d-ff 128 --attention full --dropout 0.1 --seed 0 --ensemble "$N" \
      --out "benchmarks/ett/ensemble/etth1_M_L336_H${h}_ens${N}.json" > "benchmarks/ett/ensemble/etth1_M_L336_H${h}_ens${N}.log" 2>&1
  done
}
run 96 192 &
run 336 720 &
wait

#!/usr/bin/env bash
# The context-length study: one walk-forward of configs/btc_vol.toml (the log realised variance of the next 24
# hourly bars, one forecast a day) per context length, on the real BTCUSDT 1h candles, each beside HAR-RV, EWMA,
# GARCH(1,1)-t and the naive forecast fitted on the same folds. The bucket count follows the length (2 L / chunk,
# an average bucket of half a chunk); lengths up to 2 * chunk * rounds run full attention.
#   bash benchmarks/volatility/run.sh [CANDLES.csv]   (default: $REFORMER_SHARED_DATA/crypto/bybit_BTCUSDT_perp_1h.csv)
#   OUT=dir LENGTHS="24 168 720 2160 8760" FOLDS=4 FOLD_TEST=91 FOLD_TRAIN=365 FOLD_MODE=expanding ...
#   POOLING=mean ENSEMBLE=3 ATTENTION=full EPOCHS=12 PATIENCE=3 ...   (variants: the head's pooling, models a
#   fold scored by their mean forecast, the attention kernel, the training length)
# Runs the longest context on one core and the others, one after another, on the second; then writes
# OUT/result.json and OUT/qlike_vs_context.png (benchmarks/volatility/summarize.py), and OUT/targeting.json
# (benchmarks/volatility/targeting.py) for TARGETING_CONTEXT (default 720). About 80 min on 2 cores, the
# one-year context alone on one of them.
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
out=${OUT:-runs/bench/volatility}
lengths=${LENGTHS:-24 168 720 2160 8760}
here=$(dirname "$0")
mkdir -p "$out"
one() {  # one context length: its config (bucket count scaled with the length), its walk-forward
  local len=$1 buckets=$(( ($1 / 64) * 2 ))
  [ "$buckets" -ge 8 ] || buckets=8
  sed -e "s/^n_buckets = .*/n_buckets = $buckets/" -e "s/^pooling = .*/pooling = \"${POOLING:-last}\"/" \
    -e "s/^attention_type = .*/attention_type = \"${ATTENTION:-lsh}\"/" -e "s/^epochs = .*/epochs = ${EPOCHS:-4}/" \
    -e "s/^patience = .*/patience = ${PATIENCE:-2}/" "$here/../../configs/btc_vol.toml" > "$out/config_$len.toml"
  OMP_NUM_THREADS=1 reformer train --csv "$csv" --config "$out/config_$len.toml" --seq-len "$len" \
    --walk-forward "${FOLDS:-4}" --fold-test "${FOLD_TEST:-91}" --fold-train "${FOLD_TRAIN:-365}" \
    --fold-mode "${FOLD_MODE:-expanding}" --ensemble "${ENSEMBLE:-1}" --out "$out/ctx_$len" --force > "$out/ctx_$len.log" 2>&1
  echo "context $len done: $(tail -n 1 "$out/ctx_$len.log")"
}
longest=$(echo "$lengths" | tr ' ' '\n' | sort -n | tail -n 1)
one "$longest" &
for len in $lengths; do
  [ "$len" = "$longest" ] || one "$len"
done
wait
python3 "$here/summarize.py" "$out" $lengths
python3 "$here/targeting.py" "$out" "$csv" "${TARGETING_CONTEXT:-720}"

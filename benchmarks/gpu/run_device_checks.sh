#!/usr/bin/env bash
# The whole GPU session as one command (the device tool's machine: torch preinstalled, nothing to fetch there).
#   OUT=dir CSV=.gpu/ETTh1.csv SEEDS="0 1" MAX_MINUTES=4 [ETT=0] bash benchmarks/gpu/run_device_checks.sh
# 1. cuda_check.py checks 1-3 (CPU vs CUDA, reversible RNG, training + checkpoint), and `reformer demo` on CUDA;
# 2. unless ETT=0, ETTh1 under PatchTST's schedule (benchmarks/ett/run_etth1_gpu.sh), all runs side by side;
# 3. cuda_check.py's timings alone on the GPU, after the ETT runs.
# Results come back packed in a few files ($OUT holds at most 8).
set -u
: "${OUT:?set OUT}"
if [ -d .whl ]; then  # the bench peers (reformer-pytorch and its needs), carried as wheels
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
timeout 150 python3 benchmarks/gpu/cuda_check.py --out "$OUT" --no-timing 2>&1 | tee "$OUT/checks.log"
mv "$OUT/cuda_check.json" "$OUT/checks.json" 2>/dev/null
(timeout 200 python3 -m reformer.cli demo --out /tmp/demo > "$OUT/demo.log" 2>&1; echo "demo exit $?" >> "$OUT/demo.log") &
wait
tail -n 8 "$OUT/demo.log"
if [ "${ETT:-1}" = 1 ]; then
CSV=${CSV:-.gpu/ETTh1.csv} OUTDIR=/tmp/ett SEEDS=${SEEDS:-0} MAX_MINUTES=${MAX_MINUTES:-4} \
  bash benchmarks/ett/run_etth1_gpu.sh
python3 - <<'PY'
import glob, json
for f in sorted(glob.glob("/tmp/ett/*.json")):
    d = json.load(open(f)); t = d["train"]
    print(f.split("/")[-1], "test %.4f/%.4f" % (d["model"]["mse"], d["model"]["mae"]),
          "best val %.4f" % min(t["val_mse"]), "best_epoch", t["best_epoch"], "epochs", t["epochs_run"],
          "s/epoch", t["epoch_seconds"][:2], t["device_used"])
PY
tar czf "$OUT/ett.tgz" -C /tmp ett
fi
timeout "${TIMING_SECONDS:-170}" python3 benchmarks/gpu/cuda_check.py --out /tmp/timing --no-checks 2>&1 | tee "$OUT/timings.log"
cp /tmp/timing/cuda_check.json "$OUT/timings.json" 2>/dev/null
true

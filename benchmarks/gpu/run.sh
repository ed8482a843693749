#!/usr/bin/env bash
# The GPU checks as one command, for a machine with an NVIDIA GPU and torch installed:
# 1. cuda_check.py's checks (CPU against CUDA in float64, the reversible backward's RNG, bfloat16-autocast training,
#    fit + checkpoint), then `reformer demo` on CUDA;
# 2. cuda_check.py's timings alone on the GPU (ours, HF transformers, reformer-pytorch, SDPA).
#   OUT=dir bash benchmarks/gpu/run.sh      (from the repository root)
# The packages the GPU image lacks come as wheels in .whl/ (benchmarks/gpu/wheels.sh, then env.sh).
# Writes OUT/checks.log, OUT/checks.json, OUT/demo.log, OUT/timings.log and OUT/timings.json (result.json's format).
set -u
: "${OUT:?set OUT to the folder for the results}"
mkdir -p "$OUT"
work=$(mktemp -d)
. benchmarks/gpu/env.sh
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__)"
timeout 150 python3 benchmarks/gpu/cuda_check.py --out "$OUT" --no-timing 2>&1 | tee "$OUT/checks.log"
mv "$OUT/cuda_check.json" "$OUT/checks.json" 2>/dev/null
timeout 200 python3 -m reformer.cli demo --out "$work/demo" > "$OUT/demo.log" 2>&1
echo "demo exit $?" >> "$OUT/demo.log"
tail -n 8 "$OUT/demo.log"
timeout "${TIMING_SECONDS:-170}" python3 benchmarks/gpu/cuda_check.py --out "$work/timing" --no-checks 2>&1 \
  | tee "$OUT/timings.log"
cp "$work/timing/cuda_check.json" "$OUT/timings.json" 2>/dev/null
true

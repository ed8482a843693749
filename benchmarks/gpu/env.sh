# Sourced on the GPU machine before any script here: installs the wheels of .whl/ (benchmarks/gpu/wheels.sh)
# into a scratch folder, no index needed, and puts it and src/ on PYTHONPATH.
#   . benchmarks/gpu/env.sh && python3 benchmarks/gpu/fused_check.py --out "$OUT"
GPU_SITE=$(mktemp -d)
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$GPU_SITE" .whl/*.whl
fi
export PYTHONPATH=$GPU_SITE:$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1

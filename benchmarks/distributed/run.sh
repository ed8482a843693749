#!/usr/bin/env bash
# Data-parallel training throughput on one machine: 1 process x 2 threads against 2 processes x 1 thread
# (torchrun, gloo), the same model, data and global batch of 32 windows (benchmarks/distributed/bench.py).
#   OUT=dir bash benchmarks/distributed/run.sh     (default OUT: runs/bench/distributed; about 1 min on 2 cores)
# Copy OUT/result.json over the file beside this script to update it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-runs/bench/distributed}
python=${PYTHON:-python}
mkdir -p "$out"
{
  OMP_NUM_THREADS=2 "$python" "$here/bench.py" "1 process x 2 threads"
  OMP_NUM_THREADS=1 "$python" -m torch.distributed.run --standalone --nproc-per-node 2 "$here/bench.py" \
    "2 processes x 1 thread (torchrun, gloo)" 2>/dev/null
} | "$python" -c 'import json, sys; rows = [json.loads(line) for line in sys.stdin if line.startswith("{")]
print(json.dumps({"cpu_cores": 2, "gpu": None, "runs": rows}, indent=2))' > "$out/result.json"
cat "$out/result.json"

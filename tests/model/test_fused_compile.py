"""The fused kernels compile to H100 machine code on a machine without a GPU (`benchmarks/gpu/compile_check.py`).

The interpreter runs the kernels' Python, not their compilation: a kernel can pass every interpreted test and
still fail to lower (a branch whose two sides give a variable different types, an operation the backend lacks),
or lower into one that spills registers to memory. Triton compiles for a named target with the `ptxas` its wheel
ships, so both are checked here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

triton = pytest.importorskip("triton", reason="the fused kernels need Triton (pip install triton)")

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu" / "compile_check.py"
CUOBJDUMP = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
KERNELS = {"lsh_hash", "lsh_forward", "lsh_backward", "lsh_combine", "row_dot", "window_forward",
           "window_backward_kv", "window_backward_q"}


@pytest.mark.skipif(not CUOBJDUMP.exists(), reason="this Triton wheel ships no NVIDIA tools (ptxas, cuobjdump)")
def test_every_fused_kernel_compiles_for_sm90_in_bfloat16_without_spilling(tmp_path: Path) -> None:
    out = tmp_path / "compile.json"
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path / "cache")  # compiled afresh, not from an earlier run's cache
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(out)], capture_output=True,
                          text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert {row["kernel"] for row in rows} == KERNELS
    assert not [row for row in rows if "error" in row]
    for kernel in KERNELS:
        mine = [row for row in rows if row["kernel"] == kernel]
        assert {row["target"] for row in mine} == {"sm_90"} and {row["dtype"] for row in mine} == {"bfloat16"}
        assert min(row["spill_bytes"] for row in mine) == 0, kernel
        assert all(0 < row["registers"] <= 255 for row in mine), kernel

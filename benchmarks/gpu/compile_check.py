"""Compile every fused attention kernel for NVIDIA GPUs on a machine without one, and report their resources.

    python3 benchmarks/gpu/compile_check.py --out FILE.json [--quick]      (from the repository root)

Triton compiles ahead of time for a named target (`GPUTarget`) with the `ptxas` its wheel ships, no driver
needed, so what Triton's CPU interpreter cannot show is checked here: that each kernel lowers to machine code
for the A100 (sm_80) and the H100/H200 (sm_90) in float32, bfloat16 and float16, with every mask switched on
and off, and at what register and spill cost for each warp count the autotuner tries (`fused._TUNE_CONFIGS`).
A spill (stack or local memory) means registers went to memory: slow. On the H100/H200 in bfloat16 and
float16, where the GPU targets are measured, the autotuner must find a configuration without one; the A100's
and float32's (TF32x3 tiles, `fused.f32_dot`) are reported as they are. Exits 1 if a kernel fails to compile,
or a 16-bit one has no warp count free of spills on sm_90.

Writes FILE.json: a list of {kernel, target, dtype, flags, warps, registers, spill_bytes, shared_bytes, seconds}.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# the interpreter replaces `triton.jit` with a Python evaluator that cannot be compiled: it must be off before
# Triton is first imported
os.environ.pop("TRITON_INTERPRET", None)
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from reformer.model import _fused_kernels, _fused_lsh_kernels
from reformer.model.fused import _TUNE_CONFIGS

TARGETS = {"sm_80": GPUTarget("cuda", 80, 32), "sm_90": GPUTarget("cuda", 90, 32)}
TRITON_TYPES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}
_CUOBJDUMP = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"


def _pointers(dtype: str) -> dict[str, str]:
    """Argument name -> Triton pointer type; every other non-constexpr argument is an integer."""
    t = f"*{TRITON_TYPES[dtype]}"
    data = {name: t for name in ("Q", "K", "V", "O", "QK", "DO", "DQ", "DK", "DV", "DQK", "O_R", "OUT", "G", "A", "B")}
    stats = {name: "*fp32" for name in ("LSE", "ROWMAX", "LOGSUM", "DELTA", "TOP", "LOGTOT", "GDOT", "DOT")}
    return {**data, **stats, "QPOS": "*i64", "KPOS": "*i64", "IDX": "*i32", "WRAP": "*i64", "KVALID": "*i1",
            "VALID": "*i1", "ROT": "*fp32", "BUCKETS": "*i16"}


def _kernels(flags: bool) -> list[tuple[str, Any, dict[str, Any]]]:
    """(name, kernel, constexpr values) at the `bench compare` shape (chunk 64, head dim 32); `flags` switches the
    causal and padding masks (and the LSH wrap) on."""
    lsh = {"LOOK_BACK": True, "HAS_WRAP": flags, "CAUSAL": flags, "HAS_VALID": flags, "BLOCK_C": 64, "BLOCK_E": 32}
    window = {"SPAN": 3, "BEFORE": 1, "SELF_OFFSET": -1, "POS_SELF": True, "CAUSAL": flags, "HAS_VALID": flags,
              "BLOCK_C": 64, "BLOCK_K": 64, "BLOCK_E": 32}
    return [("lsh_forward", _fused_lsh_kernels.lsh_forward, lsh),
            ("lsh_backward", _fused_lsh_kernels.lsh_backward, lsh),
            ("lsh_combine", _fused_lsh_kernels.lsh_combine, {"BLOCK_P": 128, "BLOCK_E": 32}),
            ("row_dot", _fused_lsh_kernels.row_dot, {"BLOCK_P": 128, "BLOCK_E": 32}),
            ("lsh_hash", _fused_lsh_kernels.lsh_hash, {"HALF_A": 16, "HALF_B": 16, "HAS_VALID": flags, "BLOCK_P": 128,
                                                      "BLOCK_E": 32, "BLOCK_U": 32}),
            ("window_forward", _fused_kernels.forward, window),
            ("window_backward_kv", _fused_kernels.backward_kv, window),
            ("window_backward_q", _fused_kernels.backward_q, window)]


def _resources(cubin: bytes) -> dict[str, int]:
    """Registers, spilled bytes (stack + local) and static shared memory of a cubin, from `cuobjdump -res-usage`."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        text = subprocess.run([str(_CUOBJDUMP), "-res-usage", f.name], capture_output=True, text=True,
                              check=True).stdout
    usage = {key: int(value) for key, value in re.findall(r"(REG|STACK|LOCAL|SHARED):(\d+)", text)}
    return {"registers": usage["REG"], "spill_bytes": usage["STACK"] + usage["LOCAL"]}


def compile_one(kernel: Any, consts: dict[str, Any], dtype: str, target: str, warps: int,
                stages: int) -> dict[str, Any]:
    if "F32_DOT" in kernel.arg_names:
        consts = {**consts, "F32_DOT": "tf32x3" if dtype == "float32" else None}
    pointers = _pointers(dtype)
    signature = {name: "constexpr" if name in consts else pointers.get(name, "i32") for name in kernel.arg_names}
    start = time.perf_counter()
    compiled = triton.compile(ASTSource(fn=kernel, signature=signature, constexprs=consts), target=TARGETS[target],
                              options={"num_warps": warps, "num_stages": stages})
    return {**_resources(compiled.asm["cubin"]), "shared_bytes": compiled.metadata.shared,
            "seconds": round(time.perf_counter() - start, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--quick", action="store_true",
                        help="sm_90 only, bfloat16, the masks on (CI's check); else every combination")
    args = parser.parse_args()
    targets = ["sm_90"] if args.quick else list(TARGETS)
    dtypes = ["bfloat16"] if args.quick else list(TRITON_TYPES)
    warp_counts = sorted({warps for warps, _ in _TUNE_CONFIGS})
    rows, failed = [], []
    for target in targets:
        for dtype in dtypes:
            for flags in ([True] if args.quick else [False, True]):
                for name, kernel, consts in _kernels(flags):
                    spill_free = False
                    for warps in warp_counts:
                        row = {"kernel": name, "target": target, "dtype": dtype, "flags": flags, "warps": warps}
                        try:
                            row.update(compile_one(kernel, consts, dtype, target, warps, stages=1))
                        except Exception as error:
                            row["error"] = f"{type(error).__name__}: {str(error)[:300]}"
                            failed.append(f"{name} {target} {dtype} warps={warps}: {row['error']}")
                        spill_free = spill_free or row.get("spill_bytes") == 0
                        rows.append(row)
                        print(json.dumps(row), flush=True)
                    if not spill_free and dtype != "float32" and target == "sm_90":
                        failed.append(f"{name} {target} {dtype} flags={flags}: every warp count spills registers")
    args.out.write_text(json.dumps(rows, indent=1) + "\n")
    for line in failed:
        print(f"FAILED {line}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

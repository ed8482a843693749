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


# Run with the interpreter off, as the GPU runs it. Triton asks its driver only which device, stream and target to
# compile for, so a driver that answers "device 0, an sm_90" lets the real compiler run here; nothing launches.
_TOGETHER = """
import threading, torch, triton
from triton.backends.compiler import GPUTarget
from triton.runtime import driver
from reformer.model import fused_lsh

class Sm90:
    def get_current_target(self): return GPUTarget("cuda", 90, 32)
    def get_current_device(self): return 0
    def get_current_stream(self, device=None): return 0
    def get_active_torch_device(self): return torch.device("cpu")
driver.set_active(Sm90())

tuner = fused_lsh._kernels().forward
kernel = tuner.fn
threads = []
kernel.device_caches[0]  # made on first use, with the compiler it calls
compile_ = kernel.compile
def compile_on(*args, **kwargs):
    threads.append(threading.current_thread().name)
    return compile_(*args, **kwargs)
kernel.compile = compile_on

b, h, r, l, e, c = 1, 8, 4, 1024, 32, 64
qk = torch.randn(b, l, h, e, dtype=torch.bfloat16).transpose(1, 2)  # strided as the model's heads are
stats = torch.empty(b, h, r, l)
args = (qk, qk, torch.zeros(b, h, r, l, dtype=torch.int32), torch.zeros(1, dtype=torch.int64),
        torch.zeros(1, dtype=torch.bool), torch.empty(b, h, r, l, e, dtype=torch.bfloat16), stats, stats,
        l, l // c, h, r, c, e, *qk.stride()[:3], *qk.stride()[:3])
meta = dict(LOOK_BACK=True, HAS_WRAP=False, CAUSAL=False, HAS_VALID=False, F32_DOT=None, BLOCK_C=64, BLOCK_E=32)
# what `tuner[grid](*args, **meta)` does on a new key before timing: its keywords include grid= and warmup=
tuner.nargs = dict(zip(kernel.arg_names, args))
returned = tuner.prune_configs({**meta, "grid": (64,), "warmup": False})
assert returned == tuner.configs
compiled = len(threads)
for config in tuner.configs:  # what the autotuner's timing launches look up: found, nothing compiled again
    kernel.run(*args, grid=(1,), warmup=True, **meta, **config.all_kwargs())
looked_up = len(threads)
# a configuration that cannot compile (one register a thread) is left for the autotuner to set aside as it times
# it, as it would without the hook: no error here, the others compiled and kept
unfit = triton.Config({}, num_warps=4, num_stages=1, maxnreg=1)
assert len(tuner.early_config_prune([unfit], tuner.nargs, grid=(64,), warmup=False, **meta)) == 1
print(compiled, looked_up, len(set(threads)), threading.current_thread().name in threads,
      len(kernel.device_caches[0][0]))
"""


@pytest.mark.skipif(not CUOBJDUMP.exists(), reason="this Triton wheel ships no NVIDIA tools (ptxas, cuobjdump)")
def test_the_autotuner_compiles_its_configurations_together_for_the_keys_its_launches_look_up(
        tmp_path: Path) -> None:
    """`fused.tuned`'s hook compiles the four configurations at once on threads, before the autotuner times them:
    each exactly once, none on the calling thread, and each under the key its launch looks up."""
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path / "cache")
    env["PYTHONPATH"] = str(REPO / "src")
    done = subprocess.run([sys.executable, "-c", _TOGETHER], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    compiled, after_lookups, distinct_threads, on_caller, kept = done.stdout.splitlines()[-1].split()
    assert (int(compiled), int(after_lookups), int(kept)) == (4, 4, 4)
    assert int(distinct_threads) > 1 and on_caller == "False"

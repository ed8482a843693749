"""`tune_malloc`: a long-sequence forward pass reuses freed heap blocks instead of page-faulting them in again."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

import pytest

_CHILD = """
import json, resource, sys, torch
from reformer.runtime import tune_malloc
ok = tune_malloc() if sys.argv[1] == "tuned" else None
from reformer.model import ReformerConfig, ReformerModel
torch.set_num_threads(1)
model = ReformerModel(ReformerConfig(seq_len=8192, d_model=64, n_heads=2, n_layers=2, chunk_size=64,
                                     n_buckets=64, n_hash_rounds=4)).eval()
x = torch.randn(1, 8192, 1)
faults = []
with torch.no_grad():
    for _ in range(6):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        model(x)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"ok": ok, "faults": faults}))
"""


def _forward_faults(mode: str) -> dict:
    # a fresh process each (the setting is process-wide, and a heap's history changes what faults), without the
    # huge-page variable that the CLI, imported by other tests, leaves in this process's environment.
    # glibc's mmap threshold starts at 128 KiB and may climb as large blocks are freed, so an untouched process
    # faults anywhere from ~0 to ~24,000 times a forward depending on its history (one CI run saw a median of 18);
    # the untuned baseline pins it at that starting value, where every large block is mapped afresh each time.
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE" and not k.startswith("MALLOC_")}
    if mode == "untuned":
        env["MALLOC_MMAP_THRESHOLD_"] = "131072"
    out = subprocess.run([sys.executable, "-c", _CHILD, mode], capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt is Linux-only")
def test_tuned_process_reuses_freed_blocks() -> None:
    untuned, tuned = _forward_faults("untuned"), _forward_faults("tuned")
    assert tuned["ok"] is True
    # forwards 2-6 at L = 8,192 (the first grows the heap); measured, median of the five: untuned (pinned) ~76,000
    # minor faults a forward, tuned ~2 (an occasional ~1,000-2,600 when the heap grows once more)
    assert statistics.median(untuned["faults"][1:]) > 20_000, untuned
    assert statistics.median(tuned["faults"][1:]) < 2_000, tuned


def test_cli_enables_huge_page_allocation_before_torch_loads() -> None:
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    code = "import reformer.cli, os, sys; print(os.environ['THP_MEM_ALLOC_ENABLE'], 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.split() == ["1", "False"]  # set, and torch not loaded yet: the commands that compute load it later

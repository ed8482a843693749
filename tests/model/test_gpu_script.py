"""The GPU run's script (`benchmarks/gpu/fused_check.py`) works before a GPU ever sees it.

A GPU is lent rarely and for minutes, so a script that breaks on its way (an import, a renamed argument, a section
that raises) would cost a whole lease. `--smoke` runs every section at toy lengths on the CPU, the fused kernels
through Triton's interpreter; this test asserts each section produced its figures, not an error.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton", reason="the fused kernels need Triton (pip install triton)")
pytest.importorskip("torch.nn.attention.flex_attention", reason="the FlexAttention section needs torch >= 2.5")

REPO = Path(__file__).resolve().parents[2]
SECTIONS = ["correctness", "compare", "crossover", "one_year", "attention", "profile", "routes"]


def test_every_section_of_the_gpu_script_runs_in_a_dry_run(tmp_path: Path) -> None:
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu" / "fused_check.py"), "--smoke",
                           "--out", str(tmp_path)], capture_output=True, text=True, env=env, cwd=REPO, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads((tmp_path / "fused_check.json").read_text())
    for section in SECTIONS:
        assert section in report and "error" not in report[section], (section, report.get(section))
    assert report["correctness"]["float32_passed"]
    # ours, in every form the GPU run times, produced a time; the peers may be missing here (their error recorded)
    for impl in ("ours-fused", "ours-fused-graph", "ours-reference", "ours-fused-fp32", "sdpa"):
        assert report["compare"][f"{impl}_256"]["median_s"] > 0, impl
    assert (tmp_path / "crossover.png").stat().st_size > 0
    assert all(report["one_year"][key]["median_s"] > 0 for key in report["one_year"] if key != "kernel")
    assert all(record["ns_per_position"] > 0 for record in report["attention"].values())
    agreement = report["routes"]["agreement"]
    assert agreement["float32_causal1_flex_vs_reference"] < 1e-5
    assert agreement["float32_causal1_flex_vs_triton"] < 1e-5
    assert all(report["routes"]["timing"][f"{route}_512"]["median_s"] > 0 for route in ("triton", "flex"))

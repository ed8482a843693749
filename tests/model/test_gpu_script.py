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
from typing import Any

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
    assert "| L = 32,768 training step <= 30 ms (bfloat16) |" in (tmp_path / "targets.md").read_text()
    assert all(report["one_year"][key]["median_s"] > 0 for key in report["one_year"] if key != "kernel")
    assert all(record["ns_per_position"] > 0 for record in report["attention"].values())
    agreement = report["routes"]["agreement"]
    assert agreement["float32_causal1_flex_vs_reference"] < 1e-5
    assert agreement["float32_causal1_flex_vs_triton"] < 1e-5
    assert all(report["routes"]["timing"][f"{route}_512"]["median_s"] > 0 for route in ("triton", "flex"))


def _report(step_s: float, hf_s: float, ours_mb: float, attention_2_20_ns: float) -> dict[str, Any]:
    record = {"ours-fused_32768": {"median_s": step_s, "peak_mb": ours_mb},
              "ours-fused-graph_32768": {"median_s": step_s * 0.8},
              "hf_32768": {"median_s": hf_s, "peak_mb": 4000.0},
              "lucidrains_32768": {"error": "ModuleNotFoundError: No module named 'reformer_pytorch'"}}
    return {"correctness": {"pytest_passed": True, "float32_passed": True,
                            "float32_fused_vs_reference_max_relative": 2e-6},
            "compare": record,
            "crossover": {"ours_faster_from": 4096, "ours_graph_faster_from": 2048,
                          "ours_faster_at_every_length_from_8192": True},
            "one_year": {"train_step_bfloat16": {"median_s": 0.020},
                         "inference_batch1_bfloat16": {"median_s": 0.006},
                         "inference_batch1_bfloat16_weights": {"median_s": 0.004}},
            "attention": {str(2**14): {"ns_per_position": 10.0, "bytes_per_position": 900.0},
                          str(2**20): {"ns_per_position": attention_2_20_ns, "bytes_per_position": 950.0}}}


def test_verdicts_judge_each_target_by_its_bound_and_never_pass_a_missing_figure() -> None:
    sys.path.insert(0, str(REPO / "benchmarks" / "gpu"))
    from verdicts import markdown, verdicts

    def judged(report: dict[str, Any]) -> dict[str, bool | None]:
        return {row["target"]: row["met"] for row in verdicts(report)}

    good = judged(_report(step_s=0.025, hf_s=0.100, ours_mb=1500.0, attention_2_20_ns=12.0))
    assert good["L = 32,768 training step <= 30 ms (bfloat16)"] is True
    assert good["at least 3x faster than HF transformers at L = 32,768"] is True  # 4x
    assert good["at most half HF transformers' peak memory"] is True  # 1500 of 4000 MB
    assert good["at least 3x faster than reformer-pytorch at L = 32,768"] is None  # the peer did not run
    assert good["at most half reformer-pytorch's peak memory"] is None
    assert good["faster than the SDPA (FlashAttention) encoder at every L from 8,192"] is True
    assert good["one-year training step <= 25 ms (bfloat16 autocast)"] is True
    # judged under autocast (6 ms); the model cast to bfloat16 (4 ms) is shown beside it, not judged
    assert good["one-year batch-1 inference <= 5 ms (bfloat16 autocast)"] is False
    good_table = markdown(_report(step_s=0.025, hf_s=0.100, ours_mb=1500.0, attention_2_20_ns=12.0))
    assert "6.0 ms (CUDA graph not measured); model cast to bfloat16 4.0 ms" in good_table
    assert [met for target, met in good.items() if target.startswith("attention alone")] == [True]

    bad = judged(_report(step_s=0.040, hf_s=0.100, ours_mb=2500.0, attention_2_20_ns=40.0))
    assert bad["L = 32,768 training step <= 30 ms (bfloat16)"] is False
    assert bad["at least 3x faster than HF transformers at L = 32,768"] is False  # 2.5x
    assert bad["at most half HF transformers' peak memory"] is False
    assert [met for target, met in bad.items() if target.startswith("attention alone")] == [False]  # 4x per position

    empty = judged({})
    assert set(empty.values()) == {None}
    assert "| not measured |" in markdown({})


def test_the_launch_count_takes_the_gpu_paths_and_counts_every_fused_launch(tmp_path: Path) -> None:
    """`launch_count.py` counts a GPU step's kernel launches on the CPU: the fused kernels stand in for their
    launches (per LSH layer: hashing, attention, combination, and in training the recomputed forward, <g, out>
    and the backward), and the GPU's FFN slicing applies."""
    sys.path.insert(0, str(REPO / "benchmarks" / "gpu"))
    from launch_count import count

    from reformer import ReformerConfig

    config = ReformerConfig(seq_len=256, d_model=32, n_heads=2, n_layers=3, n_hash_rounds=2, chunk_size=32,
                            n_features=4, full_attention_threshold=0, dropout=0.0, ff_chunks=4,
                            activation_budget_mb=0)  # every layer recomputed in the backward, as at length
    forward, step = count(config, train=False), count(config, train=True)
    # hash, forward, combine; the last layer only hashes: its one query position attends on the reference path
    assert forward["triton"] == 2 * 3 + 1
    assert step["triton"] == 3 * 7  # hash, forward and combine twice, <g, out>, backward
    assert step["launches"] > forward["launches"] > forward["triton"]
    # the GPU keeps one FFN slice where the hidden activations fit its block: one layer norm per FFN, not ff_chunks
    assert forward["by_operator"]["native_layer_norm"] == 3 + 3 + 1  # attention's, FFN's, the output's
    assert os.environ.get("REFORMER_ATTENTION_KERNEL") is None  # the switches are put back
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu" / "launch_count.py"), "--smoke",
                           "--out", str(tmp_path / "count.json")], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO / "src")}, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert all(record["launches"] > 0 for record in json.loads((tmp_path / "count.json").read_text()).values())

"""`reformer bench attention` end to end (tiny sizes), and its input errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from reformer.cli import main


def test_bench_attention_runs_every_kernel(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    code = main(["bench", "attention", "--lengths", "128", "--repeats", "1", "--out", str(out)])
    assert code == 0
    results = json.loads(out.read_text())["results"]
    assert {r["kernel"] for r in results} == {"naive", "sdpa", "local", "lsh"}
    assert all(r["seconds"] and r["seconds"] > 0 for r in results)


def test_bench_attention_measures_the_naive_score_matrix(tmp_path: Path) -> None:
    # naive attention at L = 1,024 holds (1, 4, 1024, 1024) float32 scores, probabilities and their gradients:
    # 16 MiB each. Since tune_malloc kept the warm-up's freed memory mapped, the worker measured no growth at all
    # (and ru_maxrss carried the parent's peak); it now trims and restarts the peak counter as `compare` does
    out = tmp_path / "bench.json"
    assert main(["bench", "attention", "--lengths", "1024", "--kernels", "naive,lsh", "--repeats", "1",
                 "--out", str(out)]) == 0
    by_kernel = {r["kernel"]: r for r in json.loads(out.read_text())["results"]}
    assert 32 <= by_kernel["naive"]["peak_mb"] <= 400
    assert by_kernel["lsh"]["peak_mb"] < by_kernel["naive"]["peak_mb"]


def test_bench_skips_what_exceeds_the_budget(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    code = main(["bench", "attention", "--lengths", "4096", "--repeats", "1", "--budget-gb", "0.5",
                 "--out", str(out)])
    assert code == 0
    by_kernel = {r["kernel"]: r for r in json.loads(out.read_text())["results"]}
    assert by_kernel["naive"]["skipped"] and by_kernel["naive"]["seconds"] is None
    assert by_kernel["lsh"]["seconds"] is not None


def test_bad_lengths_give_one_line_and_exit_2() -> None:
    proc = subprocess.run([sys.executable, "-m", "reformer.cli", "bench", "attention", "--lengths", "abc"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "--lengths" in proc.stderr
    assert "Traceback" not in proc.stderr

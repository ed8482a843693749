"""`reformer bench targets` runs end to end at tiny step counts (no timing is asserted: the machine is shared)."""

from __future__ import annotations

import json
from pathlib import Path

from reformer.cli import bench_compare as _registers_commands  # noqa: F401  (adds them to `bench`)
from reformer.cli import main


def test_targets_measures_training_ratio_and_latency(tmp_path: Path) -> None:
    out = tmp_path / "targets.json"
    code = main(["bench", "targets", "--batch", "2", "--train-steps", "2", "--latency-calls", "3",
                 "--long-calls", "1", "--out", str(out)])
    assert code == 0
    data = json.loads(out.read_text())
    assert data["config"]["seq_len"] == 168 and data["batch"] == 2
    assert len(data["train"]["times"]["ours"]) == 2 and len(data["train"]["times"]["sdpa"]) == 2
    assert data["train"]["sdpa_over_ours"] > 0 and isinstance(data["train"]["met"], bool)
    assert len(data["train"]["times"]["ours_recompute"]) == 2 and data["train"]["sdpa_over_ours_recompute"] > 0
    assert data["train"]["stored_layers"] == 6  # batch 2 at 168 fits the default budget
    assert data["inference"]["calls"] == 3 and 0 < data["inference"]["p50_ms"] <= data["inference"]["p90_ms"]
    long = data["long_forward"]
    assert long["config"]["seq_len"] == 8760 and long["config"]["n_hash_rounds"] == 8
    assert len(long["times"]["float32"]) == 1 and len(long["times"]["bfloat16"]) == 1
    assert long["float32_s"] > 0 and long["bfloat16_s"] > 0 and long["bf16_abs_diff"] >= 0
    assert "cpu" in data["machine"]["before"]


def test_targets_rejects_zero_steps() -> None:
    assert main(["bench", "targets", "--train-steps", "0"]) != 0
    assert main(["bench", "targets", "--long-calls", "-1"]) != 0

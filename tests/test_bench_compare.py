"""`reformer bench compare` / `attention-scaling` harness at tiny sizes: ours and SDPA only (no peers needed).

Nothing here asserts a timing: the machine is shared and noisy.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from reformer.bench.attention import Measurement
from reformer.bench.compare import CompareSpec, Run, predict_skip, ratios, rotated, summarise
from reformer.bench.peers import ModelShape, SDPAEncoder, build_step
from reformer.bench.scaling import loglog_slope
from reformer.cli import bench_compare as _registers_commands  # noqa: F401  (adds them to `bench`)
from reformer.cli import main

TINY = ["--d-model", "32", "--heads", "4", "--repeats", "1"]


def test_compare_runs_ours_and_sdpa_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "cmp.json"
    code = main(["bench", "compare", "--lengths", "128", "--impls", "ours,sdpa", "--layers", "2", *TINY,
                 "--out", str(out)])
    assert code == 0
    data = json.loads(out.read_text())
    assert data["impls"] == ["ours", "sdpa"]
    by_impl = {r["kernel"]: r for r in data["results"]}
    for impl in ("ours", "sdpa"):
        assert by_impl[impl]["skipped"] is None, by_impl[impl]
        assert by_impl[impl]["seconds"] > 0 and by_impl[impl]["peak_mb"] >= 0
    assert data["ratios_to_ours"]["ours"]["128"]["time"] == pytest.approx(1.0)
    assert "cpu" in data["machine"]["before"] and "versions" in data["machine"]["before"]
    assert "| 128 |" in out.with_suffix(".md").read_text()


def test_attention_scaling_writes_json_and_plot(tmp_path: Path) -> None:
    out = tmp_path / "scaling.json"
    code = main(["bench", "attention-scaling", "--lengths", "128,256", "--steps", "1", *TINY, "--out", str(out)])
    assert code == 0
    data = json.loads(out.read_text())
    assert [r["length"] for r in data["results"]] == [128, 256]
    assert all(r["seconds"] is not None for r in data["results"])
    assert out.with_suffix(".png").stat().st_size > 0


def test_over_budget_run_is_killed_and_reported(tmp_path: Path) -> None:
    out = tmp_path / "cmp.json"
    code = main(["bench", "compare", "--lengths", "128", "--impls", "sdpa", "--layers", "1", *TINY,
                 "--budget-gb", "0.01", "--out", str(out)])
    assert code == 0
    (result,) = json.loads(out.read_text())["results"]
    assert result["seconds"] is None and "memory budget" in result["skipped"]


def test_bad_options_are_one_line_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "compare", "--impls", "ours,nope"]) == 2
    assert "--impls" in capsys.readouterr().err
    assert main(["bench", "compare", "--lengths", "abc"]) == 2
    assert "--lengths" in capsys.readouterr().err
    for command in ("compare", "targets"):  # a negative thread count used to end in a RuntimeError
        assert main(["bench", command, "--threads", "-1"]) == 2
        err = capsys.readouterr().err
        assert "--threads -1" in err and len(err.strip().splitlines()) == 1


def test_rotation_puts_each_implementation_first_in_turn() -> None:
    impls = ("ours", "hf", "lucidrains", "sdpa")
    firsts = [rotated(impls, r)[0] for r in range(4)]
    assert firsts == list(impls)
    assert sorted(rotated(impls, 5)) == sorted(impls)


def test_summary_takes_medians_and_keeps_skips() -> None:
    runs = [Run("ours", 64, 0, times=[3.0], peak_mb=10.0), Run("ours", 64, 1, times=[1.0, 2.0], peak_mb=30.0),
            Run("sdpa", 64, 0, skipped="timed out")]
    ours, sdpa = summarise(runs)
    assert ours.seconds == 2.0 and ours.peak_mb == 20.0
    assert sdpa.seconds is None and sdpa.skipped == "timed out"
    assert ratios([ours, Measurement("hf", 64, seconds=4.0, peak_mb=5.0)])["hf"]["64"] == {"time": 2.0,
                                                                                         "memory": 0.25}


def test_prediction_skips_what_would_not_fit() -> None:
    spec = CompareSpec(step_timeout=100.0, budget_gb=1.0)
    done = [Measurement("sdpa", 1000, seconds=10.0, peak_mb=100.0), Measurement("ours", 1000, seconds=10.0,
                                                                                peak_mb=100.0),
            Measurement("hf", 1000, skipped="timed out")]
    assert "step timeout" in (predict_skip("sdpa", 4000, done, spec) or "")  # 10 s * 4² = 160 s
    assert predict_skip("ours", 4000, done, spec) is None  # 40 s, 400 MB
    roomy = CompareSpec(step_timeout=1000.0, budget_gb=1.0)
    assert predict_skip("ours", 9000, done, roomy) is None  # 90 s, 900 MB
    assert "budget" in (predict_skip("ours", 12000, done, roomy) or "")  # 120 s, 1.2 GB
    assert "skipped at L=1000" in (predict_skip("hf", 4000, done, spec) or "")
    assert predict_skip("ours", 500, done, spec) is None


def test_sdpa_encoder_trains_every_parameter() -> None:
    encoder = SDPAEncoder(d_model=16, n_heads=2, n_layers=2)
    x = torch.randn(1, 32, 16)
    out = encoder(x)
    assert out.shape == (1, 32, 16)
    out.sum().backward()
    assert all(p.grad is not None for p in encoder.parameters())
    build_step("sdpa", ModelShape(d_model=16, n_heads=2, n_layers=1), 32)()  # one step; grads dropped after
    with pytest.raises(ValueError, match="unknown implementation"):
        build_step("nope", ModelShape(), 32)


def test_loglog_slope_recovers_exponents() -> None:
    assert loglog_slope([(x, 3.0 * x) for x in (1.0, 2.0, 8.0)]) == pytest.approx(1.0)
    assert loglog_slope([(x, x**2) for x in (1.0, 2.0, 8.0)]) == pytest.approx(2.0)
    assert loglog_slope([(1.0, 1.0)]) is None

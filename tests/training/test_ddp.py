"""Data-parallel training under torchrun (2 gloo processes on loopback, one thread each) against one process:
the same windows in every optimizer step, the same weights, a killed rank resumed, `reformer train --nproc`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from reformer.cli import main
from reformer.data import write_klines
from reformer.training.ddp import TEST_EXIT_ENV

from . import ddp_worker

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(ddp_worker.__file__)
TIMEOUT_S = 150  # a hung rank fails its test within this

# float32 sums reduced in another order (each rank's half, then the all-reduce) against one pass; the measured
# max abs difference of the final weights is ~1e-7 (3 epochs, 15 steps)
WEIGHT_TOLERANCE = 1e-5

pytestmark = pytest.mark.usefixtures("one_thread")


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", **extra}


def _torchrun(*args: str, restarts: int = 0, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "--max-restarts", str(restarts), *args]
    done = subprocess.run(command, env=env or _env(), capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _two_ranks(out: Path, dropout: float, epochs: int = 3) -> list[dict[str, Any]]:
    _torchrun(str(WORKER), str(out), str(dropout), str(epochs))
    return [torch.load(out / f"rank{rank}.pt") for rank in (0, 1)]


def _global_losses(ranks: list[dict[str, Any]]) -> torch.Tensor:
    """Per step, the mean loss over the global batch from each rank's (mean, windows)."""
    per_step = zip(*(rank["losses"] for rank in ranks), strict=True)
    return torch.tensor([sum(m * n for m, n in step) / sum(n for _, n in step) for step in per_step])


def test_every_step_sees_the_single_process_windows_and_ends_at_its_weights(tmp_path: Path) -> None:
    single = ddp_worker.run(tmp_path / "single", dropout=0.0)
    ranks = _two_ranks(tmp_path / "ddp", dropout=0.0)
    assert len(ranks[0]["steps"]) == len(ranks[1]["steps"]) == len(single["steps"]) == 15
    for step, (batch, part0, part1) in enumerate(zip(single["steps"], ranks[0]["steps"], ranks[1]["steps"],
                                                     strict=True)):
        assert sorted(part0 + part1) == sorted(batch), f"step {step}"
        assert not set(part0) & set(part1)
    assert [len(p) for p in (ranks[0]["steps"][4], ranks[1]["steps"][4])] == [3, 2]  # the uneven last batch
    worst = max(float((ranks[0]["weights"][k] - single["weights"][k]).abs().max()) for k in single["weights"])
    assert worst < WEIGHT_TOLERANCE
    for key, value in ranks[0]["weights"].items():
        assert torch.equal(value, ranks[1]["weights"][key])  # one model, not two
    torch.testing.assert_close(_global_losses(ranks), _global_losses([single]), atol=1e-5, rtol=1e-5)
    assert [r["train_loss"] for r in ranks[1]["history"]] == pytest.approx(
        [r["train_loss"] for r in single["history"]], rel=1e-5)


def test_with_dropout_the_loss_curves_agree(tmp_path: Path) -> None:
    # Dropout masks differ (each rank draws for its own slice), so the curves differ by noise only. Paired per
    # step (the same windows in both): the mean of the differences is within 3 standard errors of 0, and the
    # curves move together (the step-to-step changes come from the windows, shared; measured r ~ 0.8).
    single = _global_losses([ddp_worker.run(tmp_path / "single", dropout=0.2, epochs=6)])
    ranks = _global_losses(_two_ranks(tmp_path / "ddp", dropout=0.2, epochs=6))
    differences = ranks - single
    standard_error = float(differences.std()) / len(differences) ** 0.5
    assert abs(float(differences.mean())) < 3 * standard_error + 1e-6
    assert float(torch.corrcoef(torch.stack([single, ranks]))[0, 1]) > 0.5


@pytest.fixture(scope="module")
def candles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.synthetic import synthetic_series

    path = tmp_path_factory.mktemp("candles") / "candles.csv"
    write_klines(synthetic_series()[-900:], path)
    return path


def _train_args(candles: Path, out: Path, epochs: int = 2) -> list[str]:
    return ["train", "--csv", str(candles), "--config", str(REPO / "configs" / "tiny.toml"), "--out", str(out),
            "--epochs", str(epochs), "--json"]


def _weights(run: Path, name: str = "last") -> dict[str, torch.Tensor]:
    return load_file(str(run / name / "model.safetensors"))


@pytest.fixture(scope="module")
def nproc_run(candles: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`reformer train --nproc 2` (3 epochs), in a child so its exit status and stdout are its own."""
    out = tmp_path_factory.mktemp("nproc") / "run"
    done = subprocess.run([sys.executable, "-m", "reformer", *_train_args(candles, out, 3), "--nproc", "2"],
                          env=_env(), capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["run_dir"] == str(out)  # rank 0's JSON only: one object
    return out


def test_nproc_writes_what_one_process_writes(nproc_run: Path, candles: Path, tmp_path: Path) -> None:
    single = tmp_path / "single"
    assert main(_train_args(candles, single, 3)) == 0
    names = sorted(str(p.relative_to(single)) for p in single.rglob("*"))
    assert names == sorted(str(p.relative_to(nproc_run)) for p in nproc_run.rglob("*"))
    for name in ("best", "last"):
        one, two = _weights(single, name), _weights(nproc_run, name)
        assert max(float((one[k] - two[k]).abs().max()) for k in one) < WEIGHT_TOLERANCE
    one, two = (json.loads((run / "evaluation.json").read_text()) for run in (single, nproc_run))
    assert one["best_epoch"] == two["best_epoch"] and one["model"]["n"] == two["model"]["n"]
    assert one["model"]["mse"] == pytest.approx(two["model"]["mse"], rel=1e-4)


def test_a_killed_rank_resumes_from_the_last_checkpoint(nproc_run: Path, candles: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    # tiny.toml: 4 steps an epoch; rank 1 dies before step 6, in epoch 2, once last/ holds epoch 1
    done = _torchrun("-m", "reformer", *_train_args(candles, out, 3), restarts=1, env=_env(**{TEST_EXIT_ENV: "6"}))
    assert "exitcode" in done.stderr or "failed" in done.stderr.lower()  # the first attempt did fail
    history = (out / "metrics.csv").read_text().splitlines()
    assert len(history) == 4  # header and epochs 1 .. 3, epoch 1 written once
    resumed, uninterrupted = _weights(out), _weights(nproc_run)
    for key, value in uninterrupted.items():
        torch.testing.assert_close(resumed[key], value, atol=0.0, rtol=0.0)


def test_nproc_refusals(candles: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*_train_args(candles, tmp_path / "r"), "--nproc", "0"]) == 2
    assert "--nproc 0 is invalid" in capsys.readouterr().err

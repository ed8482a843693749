"""Walk-forward folds over a torchrun process group: the jobs' assignment, and two gloo ranks writing what one
process writes (the same floats), each rank keeping only its own jobs' runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from reformer.data import SyntheticMarketConfig, synthetic_frame, write_klines
from reformer.pipelines.fold_workers import fold_jobs, job_owner, run_fold_jobs

TORCHRUN = Path(sys.executable).with_name("torchrun")
TIMEOUT_S = 60  # per subprocess: a rank that hangs in a collective fails the test instead of the suite
CONFIG = ("[data]\nseq_len = 32\nhorizon = 12\n[model]\nd_model = 8\nn_heads = 2\nn_layers = 1\nn_hash_rounds = 1\n"
          "n_buckets = 2\nchunk_size = 16\ndropout = 0.1\n[train]\nepochs = 2\nbatch_size = 32\n"
          "max_batches_per_epoch = 2\npatience = 0\ndevice = \"cpu\"\n")  # dropout: the ranks' RNGs matter too


# ---- the assignment


def test_jobs_are_flattened_fold_by_fold_and_dealt_round_robin() -> None:
    jobs = fold_jobs(3, 2)
    assert jobs == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
    owners = [job_owner(i, 4) for i in range(len(jobs))]
    assert owners == [0, 1, 2, 3, 0, 1]
    for world in (1, 2, 5, 7):  # every job has exactly one owner, also with more ranks than jobs
        assert sorted(i for rank in range(world) for i in range(len(jobs)) if job_owner(i, world) == rank) == \
            list(range(len(jobs)))


def test_one_process_trains_every_job_and_reports_folds_in_order() -> None:
    trained: list[tuple[int, int]] = []
    folds: list[tuple[int, list[str]]] = []

    def train_job(fold: int, member: int) -> str:
        trained.append((fold, member))
        return f"{fold}.{member}"

    assert run_fold_jobs(2, 3, train_job, lambda fold, results: folds.append((fold, results)))
    assert trained == fold_jobs(2, 3)
    assert folds == [(0, ["0.0", "0.1", "0.2"]), (1, ["1.0", "1.1", "1.2"])]


# ---- two ranks against one process


def _train(command: list[str], csv: Path, config: Path, out: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same intra-op threads on every rank and in one process
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):  # not an outer launcher's
        env.pop(name, None)
    args = ["train", "--csv", str(csv), "--config", str(config), "--walk-forward", "2", "--ensemble", "2",
            "--fold-test", "100", "--out", str(out)]
    done = subprocess.run([*command, "-m", "reformer.cli", *args], env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _untimed(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _untimed(v) for k, v in value.items() if "seconds" not in k}
    if isinstance(value, list):
        return [_untimed(v) for v in value]
    return value


def _metadata(path: Path, run: Path) -> str:
    """predictions.csv's metadata line, the run directory it names left out."""
    return path.read_text(encoding="utf-8").splitlines()[0].replace(str(run), "<run>")


@pytest.mark.skipif(not TORCHRUN.is_file(), reason=f"torchrun not found beside {sys.executable}")
def test_two_ranks_write_what_one_process_writes(tmp_path: Path) -> None:
    csv, config = tmp_path / "klines.csv", tmp_path / "tiny.toml"
    write_klines(synthetic_frame(SyntheticMarketConfig(n_bars=600, seed=5)), csv)
    config.write_text(CONFIG, encoding="utf-8")
    alone, spread = tmp_path / "alone", tmp_path / "spread"
    one = _train([sys.executable], csv, config, alone)
    two = _train([str(TORCHRUN), "--standalone", "--nproc-per-node", "2"], csv, config, spread)

    report = json.loads((spread / "walkforward.json").read_text(encoding="utf-8"))
    assert _untimed(report) == _untimed(json.loads((alone / "walkforward.json").read_text(encoding="utf-8")))
    assert len(report["folds"]) == 2 and len(report["folds"][0]["member_ic"]) == 2
    tables = [pd.read_csv(run / "predictions.csv", comment="#") for run in (alone, spread)]
    assert {"prediction_seed0", "prediction_seed1"} <= set(tables[0].columns)
    pd.testing.assert_frame_equal(tables[1], tables[0], check_exact=True)
    assert _metadata(spread / "predictions.csv", spread) == _metadata(alone / "predictions.csv", alone)
    for fold in (0, 1):  # every member's run is kept, by whichever rank trained it, and trained alike
        for seed in (0, 1):
            member = Path(f"fold_{fold}") / f"seed_{seed}"
            assert (spread / member / "best" / "model.safetensors").is_file()
            history = [pd.read_csv(run / member / "metrics.csv").drop(columns="seconds") for run in (alone, spread)]
            pd.testing.assert_frame_equal(history[1], history[0], check_exact=True)
    # the console lines are rank 0's alone: each fold once, as one process prints them
    fold_lines = [[line for line in done.stdout.splitlines() if line.startswith("fold ")] for done in (one, two)]
    assert fold_lines[1] == fold_lines[0] and len(fold_lines[0]) == 2

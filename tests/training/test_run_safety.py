"""A run folder is never trained over unasked (`--resume` continues it, `--force` starts over), and Ctrl-C leaves
whole epochs behind and says how to resume them."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from reformer.cli import main
from reformer.data import write_klines
from reformer.data.dataset import WindowDataset
from reformer.model import ReformerConfig, ReformerModel
from reformer.training import TrainConfig, fit, read_meta

from ..synthetic import synthetic_series

REPO = Path(__file__).resolve().parents[2]
TINY = str(REPO / "configs" / "tiny.toml")
PATIENCE_S = 120.0  # safety net for the polls below (a fresh process imports torch), never a pace

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def candles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("candles") / "candles.csv"
    write_klines(synthetic_series()[-900:], path)
    return path


def _refused(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The one-line error of a command that must exit 2."""
    capsys.readouterr()
    assert main(args) == 2, args
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def _files(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def test_a_candle_run_is_continued_or_replaced_only_when_asked(candles: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    run.mkdir()  # an empty folder is no run
    base = ["train", "--csv", str(candles), "--config", TINY, "--out", str(run), "--json"]
    assert main([*base, "--epochs", "1"]) == 0
    kept = _files(run)
    # a finished (or interrupted: the same files) run is refused with both ways on, and left as it was
    err = _refused(base, capsys)
    assert f"{run} holds a training run already" in err
    assert "continue it with --resume" in err and "start over with --force" in err
    err = _refused([*base, "--resume", "--force"], capsys)
    assert "--resume continues the run" in err and "--force discards it" in err
    assert _files(run) == kept
    # --force replaces the run's files, and only those
    (run / "notes.txt").write_text("mine")
    (run / "last" / "stale.bin").write_bytes(b"old")
    assert main([*base, "--epochs", "2", "--force"]) == 0
    assert pd.read_csv(run / "metrics.csv")["epoch"].tolist() == [1, 2]
    assert not (run / "last" / "stale.bin").exists() and (run / "notes.txt").read_text() == "mine"
    assert read_meta(run / "last")["train_state"]["state"]["epoch"] == 2


def test_a_walk_forward_run_is_replaced_only_with_force(candles: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "wf.toml"
    config.write_text("[data]\nseq_len = 32\nhorizon = 24\n[model]\nd_model = 8\nn_heads = 2\nn_layers = 1\n"
                      "chunk_size = 16\nn_buckets = 2\n[train]\nepochs = 1\nbatch_size = 32\n"
                      "max_batches_per_epoch = 1\ndevice = \"cpu\"\n")
    out = tmp_path / "wf"
    base = ["train", "--csv", str(candles), "--config", str(config), "--walk-forward", "2", "--fold-test", "100",
            "--out", str(out), "--json"]
    assert main(base) == 0
    kept = _files(out)
    err = _refused(base, capsys)
    assert "holds a walk-forward run already" in err and "start over with --force" in err and "--resume" not in err
    assert _files(out) == kept
    (out / "fold_1" / "stale.bin").write_bytes(b"old")
    assert main([*base, "--force"]) == 0
    assert (out / "walkforward.json").is_file() and not (out / "fold_1" / "stale.bin").exists()
    # a candle run into the walk-forward's folder is refused too, and cannot resume it
    err = _refused(["train", "--csv", str(candles), "--config", TINY, "--out", str(out)], capsys)
    assert "holds a walk-forward run already" in err and "--resume" not in err


SERIES_CONFIG = """
[data]
seq_len = 48
horizon = 12

[model]
patch_len = 8
stride = 8
d_model = 8
n_heads = 2
n_layers = 1
d_ff = 16
attention_type = "full"

[train]
epochs = 1
max_batches_per_epoch = 2
batch_size = 32
patience = 0
"""


def test_a_series_run_is_continued_or_replaced_only_when_asked(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    rows = 400
    steps = np.arange(rows)
    csv = tmp_path / "plant.csv"
    pd.DataFrame({"date": pd.date_range("2021-01-01", periods=rows, freq="h").strftime("%Y-%m-%d %H:%M:%S"),
                  "load": 10 + 3 * np.sin(steps * 2 * np.pi / 24),
                  "level": 50 + 5 * np.sin(steps * 2 * np.pi / 24 + 1.0)}).to_csv(csv, index=False)
    config = tmp_path / "series.toml"
    config.write_text(SERIES_CONFIG)
    run = tmp_path / "run"
    base = ["train", "--csv", str(csv), "--target", "level", "--config", str(config), "--out", str(run), "--json"]
    assert main(base) == 0
    kept = _files(run)
    err = _refused(base, capsys)
    assert "holds a training run already" in err and "--resume" in err and "--force" in err
    assert _files(run) == kept
    assert main([*base, "--epochs", "2", "--resume"]) == 0  # the way on it names
    assert read_meta(run / "last")["train_state"]["state"]["epoch"] == 2
    assert main([*base, "--force"]) == 0
    assert read_meta(run / "last")["train_state"]["state"]["epoch"] == 1  # started over
    # an ensemble cannot resume: only --force is named
    err = _refused([*base, "--ensemble", "2"], capsys)
    assert "start over with --force" in err and "--resume" not in err


def test_ctrl_c_keeps_whole_epochs_says_how_to_resume_and_the_resume_completes_the_run(
        candles: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "my run"  # a space: the command it prints must still be pasteable
    args = ["train", "--csv", str(candles), "--config", TINY, "--epochs", "30", "--out", str(out), "--json"]
    proc = subprocess.Popen([sys.executable, "-m", "reformer.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + PATIENCE_S
        while not (out / "last" / "checkpoint.json").is_file():  # the first epoch is saved: training is under way
            assert proc.poll() is None, f"train ended first (exit {proc.returncode}): {proc.communicate()[1]}"
            assert time.monotonic() < deadline, "no epoch saved in time"
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=PATIENCE_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    saved = read_meta(out / "last")["train_state"]["state"]["epoch"]
    assert proc.returncode == 130, err
    assert err.strip() == (f"interrupted: resume with `reformer train ... --resume --out {shlex.quote(str(out))}` "
                           f"(last/ holds epoch {saved})")
    assert 1 <= saved < 30 and len(pd.read_csv(out / "metrics.csv")) == saved  # whole epochs, all of them
    assert main([*args, "--resume"]) == 0
    assert pd.read_csv(out / "metrics.csv")["epoch"].tolist() == list(range(1, 31))
    assert json.loads(capsys.readouterr().out)["epochs_run"] == 30


def test_a_ctrl_c_while_an_epoch_is_saved_waits_until_the_epoch_is_whole(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import reformer.training.loop as loop

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(96, 8, 2, generator=generator)
    y = x[:, -1, 0].clone()
    train, val = WindowDataset(x, y, np.arange(64)), WindowDataset(x, y, np.arange(64, 96))
    real_save = loop.save_checkpoint

    def save(directory: Path, *args: object, **kwargs: object) -> Path:
        if directory.name == "last" and (directory / "checkpoint.json").is_file() and \
                read_meta(directory)["train_state"]["state"]["epoch"] == 1:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C after epoch 2's metrics.csv (and best/), before its last/
        return real_save(directory, *args, **kwargs)

    monkeypatch.setattr(loop, "save_checkpoint", save)
    model = ReformerModel(ReformerConfig(seq_len=8, d_model=8, n_heads=2, n_layers=1, n_hash_rounds=1, n_buckets=2,
                                         chunk_size=4, n_features=2, dropout=0.0))
    config = TrainConfig(epochs=4, batch_size=16, lr=5e-3, patience=0, device="cpu")
    with pytest.raises(KeyboardInterrupt) as exc:
        fit(model, train, val, config, out_dir=tmp_path / "run", progress=False)
    run = tmp_path / "run"
    # the interrupt waited for last/: metrics.csv and last/ both end at epoch 2, which the error reports
    assert read_meta(run / "last")["train_state"]["state"]["epoch"] == 2
    assert pd.read_csv(run / "metrics.csv")["epoch"].tolist() == [1, 2]
    assert getattr(exc.value, "epoch", None) == 2
    resumed = fit(model, train, val, config, out_dir=run, resume=run, progress=False)
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3, 4]

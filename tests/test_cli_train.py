"""End to end: `reformer train` on synthetic and real BTC candles, then `reformer predict --all` and `--plot`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from reformer.cli import main
from reformer.data import read_klines_frame, write_klines

from .synthetic import Candles

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def candle_slice(candle_source: Candles, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The last 900 hourly candles of the synthetic series, then of the real BTC file."""
    path = tmp_path_factory.mktemp("candles") / "candle_slice.csv"
    write_klines(candle_source.klines[-900:], path)
    return path


@pytest.fixture(scope="module")
def run_dir(candle_slice: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    assert main(["train", "--csv", str(candle_slice), "--config", str(REPO / "configs" / "tiny.toml"),
                 "--out", str(out), "--json"]) == 0
    return out


def test_train_json_and_run_directory(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    evaluation = json.loads((run_dir / "evaluation.json").read_text())
    assert evaluation["seq_len"] == 64 and evaluation["horizon"] == 24
    assert set(evaluation["baselines"]) == {"zero", "momentum", "ridge"}
    assert (run_dir / "best" / "checkpoint.json").is_file() and (run_dir / "metrics.csv").is_file()
    meta = json.loads((run_dir / "best" / "checkpoint.json").read_text())
    assert meta["data"]["csv"].endswith("candle_slice.csv") and meta["train_config"]["epochs"] == 2
    # predict's confidence scale (the validation RMSE) is in last/ too, so both give the same confidence
    last = json.loads((run_dir / "last" / "checkpoint.json").read_text())
    assert last["val_rmse"] == meta["val_rmse"] > 0


def test_predict_all_and_plot(run_dir: Path, candle_slice: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    preds, plot = tmp_path / "preds.csv", tmp_path / "attention.png"
    assert main(["predict", "--checkpoint", str(run_dir), "--csv", str(candle_slice), "--all", "--out", str(preds),
                 "--plot", str(plot), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    table = pd.read_csv(preds, comment="#")  # below the metadata line (`reformer.predictions`)
    assert list(table.columns) == ["timestamp", "prediction"]
    meta = json.loads((run_dir / "best" / "checkpoint.json").read_text())
    warmup_and_window = 900 - len(table) + 1
    assert warmup_and_window == 64 + max(0, _warmup(meta))  # one row per window whose last bar is in the file
    assert result["rows"] == len(table) and table["timestamp"].is_monotonic_increasing
    assert plot.read_bytes()[:4] == b"\x89PNG"


def _warmup(meta: dict[str, object]) -> int:
    from reformer.data import FeatureSpec

    spec = meta["feature_spec"]
    assert isinstance(spec, dict)
    return FeatureSpec.from_dict(spec).warmup


def test_predict_latest(run_dir: Path, candle_slice: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(run_dir), "--csv", str(candle_slice), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["timestamp"] == int(read_klines_frame(candle_slice)["timestamp"].iloc[-1])
    assert result["direction"] in ("up", "down", "flat") and 0.5 <= result["confidence"] <= 1
    assert main(["predict", "--checkpoint", str(run_dir), "--csv", str(candle_slice), "--json", "--bf16"]) == 0
    low = json.loads(capsys.readouterr().out)
    assert low["timestamp"] == result["timestamp"] and low["predicted_return"] != result["predicted_return"]
    assert low["predicted_return"] == pytest.approx(result["predicted_return"], rel=0.1, abs=1e-4)


def test_corrupt_checkpoint_exits_2_with_one_line(run_dir: Path, candle_slice: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "checkpoint.json").write_text((run_dir / "best" / "checkpoint.json").read_text())
    data = (run_dir / "best" / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(data[:100])
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(broken), "--csv", str(candle_slice)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "model.safetensors" in err


def test_missing_series_without_fetch(tmp_path: Path, candle_slice: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--symbol", "BTCUSDT", "--db", str(tmp_path / "empty.db"), "--offline"]) == 2
    assert "reformer fetch" in capsys.readouterr().err
    # the hint names the category asked for, and a category typo is named even with --csv (where it is unused)
    assert main(["train", "--symbol", "BTCUSDT", "--category", "spot", "--db", str(tmp_path / "empty.db"),
                 "--offline"]) == 2
    assert "--category spot" in capsys.readouterr().err
    assert main(["train", "--csv", str(candle_slice), "--category", "futures", "--out", str(tmp_path / "r")]) == 2
    assert "invalid category 'futures'" in capsys.readouterr().err and not (tmp_path / "r").exists()


def test_a_classification_checkpoint_says_what_its_latest_number_is(candle_slice: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "cls.toml"
    config.write_text((REPO / "configs" / "tiny.toml").read_text().replace('task = "regression"',
                                                                             'task = "classification"'))
    assert main(["train", "--csv", str(candle_slice), "--config", str(config), "--out", str(tmp_path / "cls"),
                 "--epochs", "1", "--json"]) == 0
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(tmp_path / "cls"), "--csv", str(candle_slice)]) == 0
    line = capsys.readouterr().out
    assert "predicted 24-bar p_up - p_down" in line and "log return" not in line  # it is not a return
    assert main(["predict", "--checkpoint", str(tmp_path / "cls" / "last"), "--csv", str(candle_slice), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["task"] == "classification"


def test_predict_names_a_missing_checkpoint_before_reading_data(run_dir: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "empty.db"
    assert main(["predict", "--checkpoint", str(tmp_path / "nowhere"), "--db", str(db)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nowhere does not exist" in err
    assert not db.exists()  # the store was never opened
    # a real checkpoint but an empty store: predict never fetches, and says so (not "--offline was given")
    assert main(["predict", "--checkpoint", str(run_dir), "--db", str(db)]) == 2
    err = capsys.readouterr().err.strip()
    assert "predict never fetches" in err and "--offline" not in err and "reformer fetch" in err


def test_a_bad_model_field_is_named_before_the_data(candle_slice: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    short = tmp_path / "short.csv"
    short.write_text("".join(candle_slice.read_text().splitlines(keepends=True)[:50]))  # far too few candles
    for table, words in [("d_modle = 32", "unknown field(s) ['d_modle']"), ('attention_type = "magic"', "'magic'")]:
        config = tmp_path / "bad.toml"
        config.write_text(f"[model]\n{table}\n")
        assert main(["train", "--csv", str(short), "--config", str(config), "--out", str(tmp_path / "run")]) == 2
        err = capsys.readouterr().err
        assert words in err and "candles" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is there: no error to see")
def test_cuda_on_a_machine_without_it_fails_before_any_work(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "cuda.toml"
    tiny = (REPO / "configs" / "tiny.toml").read_text()
    assert 'device = "cpu"' in tiny
    config.write_text(tiny.replace('device = "cpu"', 'device = "cuda"'))
    db = tmp_path / "never.db"
    assert main(["train", "--symbol", "BTCUSDT", "--db", str(db), "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "CUDA" in err
    assert not db.exists()  # failed before opening the store or fetching anything


def test_resume_continues_an_interrupted_run_and_refuses_another_config(
        candle_slice: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(REPO / "configs" / "tiny.toml")
    base = ["train", "--csv", str(candle_slice), "--config", config, "--json"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main([*base, "--out", str(full)]) == 0  # the preset's 2 epochs at once
    assert main([*base, "--out", str(cut), "--epochs", "1"]) == 0  # interrupted after 1 ...
    capsys.readouterr()
    assert main([*base, "--out", str(cut), "--epochs", "2", "--resume"]) == 0  # ... and resumed
    resumed = json.loads(capsys.readouterr().out)
    assert resumed["epochs_run"] == 2
    full_rows = pd.read_csv(full / "metrics.csv")
    cut_rows = pd.read_csv(cut / "metrics.csv")
    assert list(cut_rows["epoch"]) == [1, 2]
    # epoch 2 runs on from epoch 1's weights and optimizer, on the 2-epoch schedule (the learning rate is a
    # function of the global step and the epoch limit); epoch 1 ran under the 1-epoch one
    assert cut_rows["train_loss"].notna().all() and cut_rows["lr"].iloc[1] == pytest.approx(full_rows["lr"].iloc[1])
    # another model, other windows, or nothing to resume: one line, exit 2, the run left as it was
    before = (cut / "last" / "model.safetensors").read_bytes()
    shorter = tmp_path / "shorter.csv"  # other candles: the best epoch would be chosen on two validation splits
    write_klines(read_klines_frame(candle_slice).iloc[100:], shorter)
    for extra, expected in ((["--seq-len", "32"], "was trained with seq_len=64, this run has seq_len=32"),
                            (["--csv", str(shorter)], r"bars\), this run on .* \(\d+ bars\); .*run's own data"),
                            (["--out", str(tmp_path / "empty")], "nothing to resume")):
        args = [*base, "--out", str(cut), "--resume", *extra]
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert re.search(expected, err) and "\n" not in err, err
    assert (cut / "last" / "model.safetensors").read_bytes() == before


def test_candles_of_another_interval_are_refused(run_dir: Path, candle_slice: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # the checkpoint stores its bar step; every fourth hourly candle is a 4-hour series, which the 1-hour model
    # would read as a quarter of its horizon and features: predict (latest and --all) and backtest refuse it
    four_hourly = tmp_path / "btc_4h.csv"
    write_klines(read_klines_frame(candle_slice).iloc[::4], four_hourly)
    assert json.loads((run_dir / "best" / "checkpoint.json").read_text())["data"]["bar_ms"] == 3_600_000
    capsys.readouterr()
    for args in (["predict", "--checkpoint", str(run_dir), "--csv", str(four_hourly)],
                 ["predict", "--checkpoint", str(run_dir), "--csv", str(four_hourly), "--all", "--out",
                  str(tmp_path / "p.csv")],
                 ["backtest", "--checkpoint", str(run_dir), "--csv", str(four_hourly)]):
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip()
        assert "the candles are 4-hour bars" in err and "trained on 1-hour bars" in err and "\n" not in err
    assert not (tmp_path / "p.csv").exists()


def test_backtest_of_a_checkpoint_trades_only_bars_it_was_not_fitted_on(
        run_dir: Path, candle_slice: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # every bar's prediction must come from a model whose training data ended before that bar: by default only
    # the checkpoint's held-out test split and what follows it is traded
    test_from = json.loads((run_dir / "best" / "checkpoint.json").read_text())["evaluation"]["splits"]["test"]
    first = pd.to_datetime(test_from["first_timestamp"], unit="ms", utc=True)
    report = tmp_path / "report"
    capsys.readouterr()
    assert main(["backtest", "--checkpoint", str(run_dir), "--csv", str(candle_slice), "--json", "--out",
                 str(report)]) == 0
    captured = capsys.readouterr()
    assert "from its held-out test split on" in captured.err and "--in-sample adds" in captured.err
    assert pd.Timestamp(json.loads(captured.out)["start"]) == first  # statistics over the traded bars only
    entries = pd.to_datetime(pd.read_csv(report / "trades.csv")["entry_time"], utc=True)
    assert len(entries) >= 1 and entries.min() > first  # decided at a test bar's close, filled at the next open
    early = tmp_path / "early.csv"  # candles that end before the test split
    frame = read_klines_frame(candle_slice)
    write_klines(frame[frame["timestamp"] < test_from["first_timestamp"]], early)
    assert main(["backtest", "--checkpoint", str(run_dir), "--csv", str(early), "--json"]) == 2
    assert "no candles from its held-out test split on" in capsys.readouterr().err
    assert main(["backtest", "--checkpoint", str(run_dir), "--csv", str(early), "--json", "--in-sample"]) == 0


def test_train_realized_vol_then_predict_all_writes_the_log_variance_and_the_variance(
        candle_slice: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "vol"
    assert main(["train", "--csv", str(candle_slice), "--config", str(REPO / "configs" / "tiny.toml"), "--task",
                 "realized-vol", "--horizon", "24", "--out", str(run), "--json"]) == 0
    evaluation = json.loads(capsys.readouterr().out)
    assert evaluation["task"] == "realized-vol" and evaluation["horizon"] == 24
    assert {"mse_log", "ic"} <= set(evaluation["model"]) and "model" in evaluation["volatility"]["forecasts"]
    preds = tmp_path / "vol.csv"
    assert main(["predict", "--checkpoint", str(run), "--csv", str(candle_slice), "--all", "--out", str(preds)]) == 0
    assert "log realised variance" in capsys.readouterr().out
    assert "target=log-variance" in preds.read_text().splitlines()[0]
    table = pd.read_csv(preds, comment="#")
    assert list(table.columns) == ["timestamp", "prediction", "variance"]
    s2 = json.loads((run / "best" / "checkpoint.json").read_text())["residual_var"]
    assert s2 > 0  # the variance is the log-normal mean, above exp(prediction), its median
    np.testing.assert_allclose(table["variance"], np.exp(table["prediction"] + s2 / 2), rtol=1e-9)
    assert main(["predict", "--checkpoint", str(run), "--csv", str(candle_slice), "--json"]) == 0
    latest = json.loads(capsys.readouterr().out)
    assert latest["task"] == "realized-vol" and latest["timestamp"] == table["timestamp"].iloc[-1]
    assert latest["variance"] == pytest.approx(table["variance"].iloc[-1], rel=1e-5)  # one window vs a batch
    # a variance forecast is no trading signal: the backtest says so in one line
    for source in (["--checkpoint", str(run)], ["--predictions", str(preds)]):
        assert main(["backtest", *source, "--csv", str(candle_slice)]) == 2
        err = capsys.readouterr().err.strip()
        assert "not a return" in err and "\n" not in err


@pytest.mark.parametrize(("args", "words"), [
    (["--task", "vol"], "--task 'vol' is invalid: use one of regression, classification, realized-vol"),
    (["--target", "realized-vol"], "use --task realized-vol"),
    (["--task", "realized-vol", "--target", "OT"], "drop one of them"),
    (["--task", "realized-vol", "--symbols", "BTCUSDT,ETHUSDT"], "one symbol at a time"),
    (["--config", "VOL_CONFIG"], "task='vol' is invalid: use one of regression, classification, realized-vol"),
])
def test_a_bad_task_is_one_line_and_exit_2(candle_slice: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           args: list[str], words: str) -> None:
    config = tmp_path / "vol.toml"
    config.write_text((REPO / "configs" / "tiny.toml").read_text().replace('task = "regression"', 'task = "vol"'))
    run = tmp_path / "run"
    args = [str(config) if arg == "VOL_CONFIG" else arg for arg in args]
    assert main(["train", "--csv", str(candle_slice), "--out", str(run), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and "\n" not in err
    assert not run.exists()


def test_a_time_series_given_as_candles_is_told_of_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    series = tmp_path / "plant.csv"
    series.write_text("date,load,OT\n" + "".join(f"2021-01-01 {h:02d}:00:00,{h},{2 * h}\n" for h in range(24)))
    assert main(["train", "--csv", str(series), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "missing column 'open'" in err and err.endswith("pass --target COL") and "\n" not in err


def test_commands_that_only_read_the_store_never_create_one(run_dir: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "none" / "k.sqlite"
    positions = tmp_path / "pos.csv"
    positions.write_text("timestamp,symbol,position\n1704067200000,BTCUSDT,1\n1704067200000,ETHUSDT,-1\n")
    config = str(REPO / "configs" / "tiny.toml")
    for argv in (["predict", "--checkpoint", str(run_dir)],
                 ["backtest", "--checkpoint", str(run_dir)],
                 ["backtest", "--symbols", "BTCUSDT,ETHUSDT", "--positions", str(positions)],
                 ["train", "--offline", "--config", config, "--out", str(tmp_path / "run")]):
        assert main([*argv, "--db", str(db)]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert f"{db} holds no linear BTCUSDT 60 candles" in err and "reformer fetch" in err and "\n" not in err
        assert not db.exists() and not db.parent.exists(), argv


def test_training_on_an_empty_store_says_what_it_fetched(synthetic_year: list, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from reformer.api import FakeExchange

    db = tmp_path / "k.sqlite"
    with FakeExchange({("linear", "BTCUSDT", "60"): synthetic_year[:3000]}) as fake:
        monkeypatch.setenv("BYBIT_BASE_URL", fake.base_url)
        assert main(["train", "--symbol", "BTCUSDT", "--interval", "60", "--db", str(db), "--config",
                     str(REPO / "configs" / "tiny.toml"), "--out", str(tmp_path / "run"), "--epochs", "1"]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: ")]
    assert warned == ["warning: the store held no linear BTCUSDT 60 candles: fetched the latest 1000 from the "
                      "exchange (`reformer fetch --symbol BTCUSDT --interval 60 --category linear --limit N` stores "
                      "more history first)"]

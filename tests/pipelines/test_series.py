"""Series forecasters end to end: `reformer train --csv FILE --target COL`, its checkpoint, `reformer predict`
from a time-series CSV (latest forecast, every window, plot), resume, and the errors of a wrong file or model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from reformer.cli import main
from reformer.errors import DataFormatError, UserInputError
from reformer.pipelines.series_models import forecast_all, forecast_latest, load_series_checkpoint
from reformer.training.checkpoint import load_checkpoint, read_meta

CONFIG = """
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
epochs = 2
max_batches_per_epoch = 4
batch_size = 32
patience = 0
"""


def _frame(rows: int = 600, freq: str = "h", seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    steps = np.arange(rows)
    return pd.DataFrame({
        "date": pd.date_range("2021-01-01", periods=rows, freq=freq).strftime("%Y-%m-%d %H:%M:%S"),
        "load": 10 + 3 * np.sin(steps * 2 * np.pi / 24) + 0.1 * rng.normal(size=rows),
        "temp": 20 + np.cos(steps * 2 * np.pi / 24) + 0.1 * rng.normal(size=rows),
        "level": 50 + 5 * np.sin(steps * 2 * np.pi / 24 + 1.0) + 0.2 * rng.normal(size=rows),
    })


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """One trained series run (module-wide: training is the slow part)."""
    root = tmp_path_factory.mktemp("series")
    csv = root / "plant.csv"
    _frame().to_csv(csv, index=False)
    config = root / "series.toml"
    config.write_text(CONFIG)
    run = root / "run"
    torch.set_num_threads(1)
    code = main(["train", "--csv", str(csv), "--target", "level", "--config", str(config), "--out", str(run),
                 "--json"])
    assert code == 0
    return csv, run, json.loads((run / "evaluation.json").read_text())


def test_train_writes_a_series_checkpoint_with_its_evaluation(trained: tuple[Path, Path, dict]) -> None:
    _, run, evaluation = trained
    meta = read_meta(run)
    assert meta["model_kind"] == "patch-forecaster"
    assert meta["feature_names"] == ["load", "temp", "level"]  # the target last, as the model orders channels
    assert (meta["target"], meta["features"], meta["protocol"], meta["horizon"]) == ("level", "M", "ratio", 12)
    assert meta["data"]["step_ms"] == 3_600_000 and meta["data"]["train_rows"] == 420  # 70 % of 600 rows
    assert meta["evaluation"] == evaluation
    # ratio split: the test slice holds the last 120 rows -> 120 - 12 + 1 windows
    assert evaluation["n_windows"] == 109
    assert len(pd.read_csv(run / "metrics.csv")) == 2
    # a clean daily cycle: the trained model beats repeating the last value
    assert evaluation["model"]["mse"] < evaluation["baselines"]["repeat"]["mse"]


def test_latest_forecast_is_the_model_on_the_last_window_in_the_file_units(trained: tuple[Path, Path, dict]) -> None:
    csv, run, _ = trained
    forecast = forecast_latest(run, csv)
    model, meta = load_series_checkpoint(run)
    frame = pd.read_csv(csv)
    columns = list(meta.feature_names)
    scaler = meta.scaler
    window = scaler.transform(frame[columns].to_numpy()[-48:]).astype(np.float32)  # (l, c)
    with torch.no_grad():
        expected = scaler.inverse_transform(model(torch.from_numpy(window)[None])[0].double().numpy())  # (t, c)
    assert list(forecast.table.columns) == ["step", "timestamp", *columns]
    np.testing.assert_allclose(forecast.table[columns].to_numpy(), expected, rtol=1e-6, atol=1e-6)
    last = pd.Timestamp(frame["date"].iloc[-1], tz="UTC").value // 1_000_000
    assert forecast.last_timestamp == last
    assert forecast.table["timestamp"].tolist() == [last + 3_600_000 * k for k in range(1, 13)]
    # in the file's units: the level series swings around 50, not around 0
    assert 40 < forecast.table["level"].mean() < 60


def test_checkpoint_round_trip_reproduces_the_trained_model_exactly(trained: tuple[Path, Path, dict]) -> None:
    csv, run, _ = trained
    first = forecast_all(run, csv)
    second = forecast_all(run / "best", csv)
    pd.testing.assert_frame_equal(first, second)
    assert len(first) == 600 - 48 + 1
    assert list(first.columns) == ["timestamp", *[f"h{k}" for k in range(1, 13)]]
    # the last window's row is the latest forecast of the target
    np.testing.assert_allclose(first.iloc[-1, 1:].to_numpy(dtype=np.float64),
                               forecast_latest(run, csv).table["level"].to_numpy(), rtol=1e-6)


def test_predict_cli_latest_all_and_plot(trained: tuple[Path, Path, dict], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    csv, run, _ = trained
    out, plot = tmp_path / "forecast.csv", tmp_path / "forecast.png"
    assert main(["predict", "--checkpoint", str(run), "--csv", str(csv), "--out", str(out), "--plot", str(plot),
                 "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["target"] == "level" and len(payload["forecast"]) == 12
    assert len(pd.read_csv(out)) == 12 and plot.stat().st_size > 10_000
    every = tmp_path / "every.csv"
    assert main(["predict", "--checkpoint", str(run), "--csv", str(csv), "--all", "--out", str(every)]) == 0
    assert "wrote 553 window forecasts" in capsys.readouterr().out
    assert len(pd.read_csv(every)) == 553


def test_wrong_files_and_models_get_one_line_errors(trained: tuple[Path, Path, dict], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    csv, run, _ = trained
    other = tmp_path / "other.csv"
    _frame().rename(columns={"temp": "humidity"}).to_csv(other, index=False)
    with pytest.raises(DataFormatError, match="no column"):
        forecast_latest(run, other)
    minutes = tmp_path / "minutes.csv"
    _frame(freq="min").to_csv(minutes, index=False)
    with pytest.raises(DataFormatError, match="60 s apart, the model was trained on rows 3600 s apart"):
        forecast_latest(run, minutes)
    short = tmp_path / "short.csv"
    _frame(rows=30).to_csv(short, index=False)
    with pytest.raises(DataFormatError, match="30 rows, the model needs the last 48"):
        forecast_latest(run, short)
    with pytest.raises(UserInputError, match="series forecaster"):
        load_checkpoint(run)  # the candle model loader refuses it by name
    for argv in (["predict", "--checkpoint", str(run)],  # no --csv
                 ["backtest", "--checkpoint", str(run), "--csv", str(csv)],
                 ["train", "--target", "level"],  # --target without --csv
                 ["train", "--csv", str(csv), "--target", "level", "--features", "X"],
                 ["train", "--csv", str(csv), "--target", "nope", "--seq-len", "48", "--horizon", "12",
                  "--out", str(tmp_path / "nope")]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err, (argv, err)
    assert not (tmp_path / "nope").exists()  # a bad target fails before any run directory is made


def test_candle_checkpoint_is_not_loaded_as_a_series_model(tmp_path: Path) -> None:
    from reformer.model import ReformerConfig, ReformerModel
    from reformer.training.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "ck", ReformerModel(ReformerConfig(seq_len=16, d_model=8, n_heads=2, n_layers=1,
                                                                  n_features=3, n_outputs=1)))
    with pytest.raises(UserInputError, match="candle model"):
        load_series_checkpoint(tmp_path / "ck")


def test_resume_continues_a_series_run(tmp_path: Path) -> None:
    csv = tmp_path / "plant.csv"
    _frame(rows=400).to_csv(csv, index=False)
    config = tmp_path / "series.toml"
    config.write_text(CONFIG)
    run = tmp_path / "run"
    torch.set_num_threads(1)
    base = ["train", "--csv", str(csv), "--target", "level", "--config", str(config), "--out", str(run), "--json"]
    assert main([*base, "--epochs", "1"]) == 0
    assert len(pd.read_csv(run / "metrics.csv")) == 1
    assert main([*base, "--epochs", "2", "--resume"]) == 0
    history = pd.read_csv(run / "metrics.csv")
    assert history["epoch"].tolist() == [1, 2]
    assert read_meta(run / "last")["train_state"]["state"]["epoch"] == 2


def test_corrupt_series_checkpoints_are_named(trained: tuple[Path, Path, dict], tmp_path: Path) -> None:
    import shutil

    _, run, _ = trained
    bad_config = tmp_path / "bad_config"
    shutil.copytree(run / "best", bad_config)
    meta = json.loads((bad_config / "checkpoint.json").read_text())
    meta["model_config"]["patch_len"] = 0
    (bad_config / "checkpoint.json").write_text(json.dumps(meta))
    with pytest.raises(DataFormatError, match="bad model_config"):
        load_series_checkpoint(bad_config)
    bad_weights = tmp_path / "bad_weights"
    shutil.copytree(run / "best", bad_weights)
    (bad_weights / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(DataFormatError, match="not a readable safetensors file"):
        load_series_checkpoint(bad_weights)
    no_scaler = tmp_path / "no_scaler"
    shutil.copytree(run / "best", no_scaler)
    meta = json.loads((no_scaler / "checkpoint.json").read_text())
    del meta["scaler"]
    (no_scaler / "checkpoint.json").write_text(json.dumps(meta))
    with pytest.raises(DataFormatError, match="missing key 'scaler'"):
        load_series_checkpoint(no_scaler)


def test_a_univariate_file_without_dates(tmp_path: Path) -> None:
    frame = _frame(rows=300).drop(columns=["date"])
    csv = tmp_path / "nodate.csv"
    frame.to_csv(csv, index=False)
    config = tmp_path / "series.toml"
    config.write_text(CONFIG.replace("epochs = 2", "epochs = 1"))
    torch.set_num_threads(1)
    assert main(["train", "--csv", str(csv), "--target", "level", "--features", "S", "--config", str(config),
                 "--out", str(tmp_path / "run"), "--json"]) == 0
    meta = read_meta(tmp_path / "run")
    assert meta["feature_names"] == ["level"] and meta["data"]["step_ms"] is None
    forecast = forecast_latest(tmp_path / "run", csv)
    assert list(forecast.table.columns) == ["step", "level"] and forecast.last_timestamp is None
    every = forecast_all(tmp_path / "run", csv)
    assert every["row"].tolist() == list(range(47, 300))  # each window's last row, 0-based


def test_dates_must_run_forward(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frame = _frame(rows=200)
    for name, bad in (("reversed", frame.iloc[::-1]), ("repeated", pd.concat([frame, frame.iloc[-1:]]))):
        csv = tmp_path / f"{name}.csv"
        bad.to_csv(csv, index=False)
        assert main(["train", "--csv", str(csv), "--target", "level", "--seq-len", "48", "--horizon", "12",
                     "--out", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err
        assert "is not after the previous row's" in err and "sort the file by date" in err
        assert not (tmp_path / name).exists()


def test_columns_matched_by_name_and_written_in_the_file_order(trained: tuple[Path, Path, dict],
                                                               tmp_path: Path) -> None:
    csv, run, _ = trained
    frame = pd.read_csv(csv)
    shuffled = tmp_path / "shuffled.csv"
    frame[["date", "level", "temp", "load"]].to_csv(shuffled, index=False)
    forecast = forecast_latest(run, shuffled)
    assert list(forecast.table.columns) == ["step", "timestamp", "level", "temp", "load"]
    same = forecast_latest(run, csv).table
    for column in ("level", "temp", "load"):
        np.testing.assert_array_equal(forecast.table[column].to_numpy(), same[column].to_numpy())
    extra = tmp_path / "extra.csv"
    frame.assign(wind=1.0).to_csv(extra, index=False)
    with pytest.raises(DataFormatError, match=r"columns \['wind'\] were not in the training file"):
        forecast_latest(run, extra)


def test_gaps_in_the_input_are_refused_or_left_out(trained: tuple[Path, Path, dict], tmp_path: Path) -> None:
    csv, run, _ = trained
    frame = pd.read_csv(csv)
    holed = tmp_path / "holed.csv"
    frame.drop(index=range(580, 585)).to_csv(holed, index=False)  # a 5-hour hole inside the last 48 rows
    with pytest.raises(DataFormatError, match="the last 48 rows, the model's input, are not all 3600 s apart"):
        forecast_latest(run, holed)
    # 595 rows, 548 windows; those ending at the 15 rows after the hole (old rows 585-599) straddle it
    with pytest.warns(UserWarning, match="not all 3600 s apart .*; 15 of 548 windows of 48 rows span a gap"):
        every = forecast_all(run, holed)
    assert len(every) == 548 - 15
    stamps = ((pd.to_datetime(frame["date"], utc=True) - pd.Timestamp(0, tz="UTC"))
              // pd.Timedelta(milliseconds=1)).to_numpy()  # epoch ms
    kept = set(every["timestamp"])
    assert stamps[579] in kept and not kept & set(stamps[585:])


def test_resume_needs_a_run_and_zero_lengths_are_named(trained: tuple[Path, Path, dict], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    csv, _, _ = trained
    assert main(["train", "--csv", str(csv), "--target", "level", "--resume", "--out", str(tmp_path / "none")]) == 2
    assert "nothing to resume" in capsys.readouterr().err and not (tmp_path / "none").exists()
    assert main(["train", "--csv", str(csv), "--target", "level", "--horizon", "0",
                 "--out", str(tmp_path / "zero")]) == 2
    assert "horizon=0" in capsys.readouterr().err


def test_corrupt_data_entry_and_bf16(trained: tuple[Path, Path, dict], tmp_path: Path) -> None:
    import shutil

    csv, run, _ = trained
    forecast = forecast_latest(run, csv)
    fast = forecast_latest(run, csv, bfloat16=True)
    np.testing.assert_allclose(fast.table["level"], forecast.table["level"], rtol=0.05)
    bad = tmp_path / "bad_data"
    shutil.copytree(run / "best", bad)
    meta = json.loads((bad / "checkpoint.json").read_text())
    meta["data"] = ["not", "a", "dict"]
    (bad / "checkpoint.json").write_text(json.dumps(meta))
    with pytest.raises(DataFormatError, match="'data' must be an object"):
        load_series_checkpoint(bad)


def test_resuming_a_candle_run_as_a_series_run_names_both_kinds(trained: tuple[Path, Path, dict], tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from reformer.model import ReformerConfig, ReformerModel
    from reformer.training.checkpoint import save_checkpoint

    csv, _, _ = trained
    run = tmp_path / "candle_run"
    save_checkpoint(run / "last", ReformerModel(ReformerConfig(seq_len=16, d_model=8, n_heads=2, n_layers=1,
                                                               n_features=3, n_outputs=1)),
                    {"train_state": {"state": {"epoch": 1}, "history": []}})
    config = tmp_path / "series.toml"
    config.write_text(CONFIG)
    assert main(["train", "--csv", str(csv), "--target", "level", "--config", str(config), "--out", str(run),
                 "--resume"]) == 2
    err = capsys.readouterr().err
    assert "holds a reformer model and this run trains a patch-forecaster model" in err, err

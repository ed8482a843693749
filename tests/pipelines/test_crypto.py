"""The crypto pipeline on a small synthetic market: splits without overlap, run directory, predictions, plot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from reformer.data import SyntheticMarketConfig, synthetic_frame
from reformer.errors import DataFormatError, UserInputError
from reformer.pipelines import TrainReport, evaluate_crypto, plot_attention, predict_all, predict_latest, train_crypto
from reformer.training import TrainConfig

SEQ, HORIZON = 32, 12
TINY = {"d_model": 8, "n_heads": 2, "n_layers": 1, "n_hash_rounds": 1, "n_buckets": 2, "chunk_size": 16,
        "dropout": 0.0}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return synthetic_frame(SyntheticMarketConfig(n_bars=700, seed=5))


@pytest.fixture(scope="module")
def report(frame: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> TrainReport:
    config = TrainConfig(epochs=2, batch_size=32, max_batches_per_epoch=3, patience=0, device="cpu")
    return train_crypto(frame, seq_len=SEQ, horizon=HORIZON, model_overrides=TINY, train_config=config,
                        out_dir=tmp_path_factory.mktemp("run"), source={"csv": "synthetic"}, progress=False)


def test_no_training_target_reaches_into_validation_or_test(report: TrainReport) -> None:
    data = report.data
    ends = {name: data.prepared.end_bars[getattr(data, name).indices] for name in ("train", "val", "test")}
    # target period of a window ending at bar t is (t, t + h]
    assert ends["train"].max() + HORIZON <= ends["val"].min()
    assert ends["val"].max() + HORIZON <= ends["test"].min()
    assert ends["train"].max() + HORIZON <= ends["test"].min()
    # the datasets really hold those windows' scaled targets and inputs
    x, y = data.train[len(data.train) - 1]
    index = int(data.train.indices[-1])
    assert y.item() == pytest.approx(data.prepared.forward_returns[index] / data.target_scale, rel=1e-5)
    assert torch.equal(x, data.prepared.features[index])
    # the scaler saw training rows only: rows after the last training window's last bar change nothing
    last_train_row = int(ends["train"].max())
    assert data.prepared.scaler is not None
    assert last_train_row < int(ends["val"].min())


def test_run_directory_and_evaluation(report: TrainReport) -> None:
    run = report.run_dir
    assert (run / "metrics.csv").is_file() and (run / "best" / "model.safetensors").is_file()
    evaluation = json.loads((run / "evaluation.json").read_text())
    assert set(evaluation["baselines"]) == {"zero", "momentum", "ridge"}
    n_test = len(report.data.test)
    assert evaluation["model"]["n"] == n_test
    assert all(b["n"] == n_test for b in evaluation["baselines"].values())
    assert evaluation["baselines"]["zero"]["mse_skill"] == 0.0
    assert evaluation["baselines"]["zero"]["directional_accuracy"] == 0.5
    assert evaluation["data"]["csv"] == "synthetic"
    assert evaluation["splits"]["test"]["windows"] == n_test
    # IC intervals (block bootstrap over 2 x horizon windows) around each IC, and the paired model-minus-ridge one
    for metrics in (evaluation["model"], evaluation["baselines"]["ridge"], evaluation["baselines"]["momentum"]):
        low, high = metrics["ic_ci95"]
        assert low < metrics["ic"] < high
    versus = evaluation["ic_minus_ridge"]
    assert versus["block"] == 2 * HORIZON
    assert versus["difference"] == pytest.approx(evaluation["model"]["ic"] - evaluation["baselines"]["ridge"]["ic"])
    assert versus["ci95"][0] < versus["difference"] < versus["ci95"][1]
    assert "ic_ci95" not in evaluation["baselines"]["zero"]  # a constant forecast has no IC


def test_predict_all_latest_and_evaluate_agree(report: TrainReport, frame: pd.DataFrame) -> None:
    table = predict_all(report.run_dir, frame)
    warmup = report.data.prepared.spec.warmup
    assert list(table.columns) == ["timestamp", "prediction"]
    assert len(table) == len(frame) - warmup - SEQ + 1  # one row per window whose last bar is in the frame
    assert table["timestamp"].iloc[-1] == frame["timestamp"].iloc[-1]
    assert np.isfinite(table["prediction"]).all()
    latest = predict_latest(report.run_dir, frame)
    assert latest.timestamp == frame["timestamp"].iloc[-1]
    assert latest.predicted_return == pytest.approx(table["prediction"].iloc[-1], rel=1e-5, abs=1e-9)
    assert 0.5 <= latest.confidence <= 1.0 and latest.direction in ("up", "down", "flat")
    evaluation = evaluate_crypto(report.run_dir, frame)
    assert evaluation["model"]["mse"] == pytest.approx(report.evaluation["model"]["mse"], rel=1e-5)
    # bfloat16 matrix products: the same predictions to bfloat16 precision, still ordered alike
    low = predict_all(report.run_dir, frame, bfloat16=True)
    assert (low["timestamp"] == table["timestamp"]).all()
    spread = float(table["prediction"].std())
    assert float((low["prediction"] - table["prediction"]).abs().max()) < 0.1 * spread + 1e-9
    assert np.corrcoef(low["prediction"], table["prediction"])[0, 1] > 0.98
    assert not np.array_equal(low["prediction"], table["prediction"])  # bfloat16 really ran
    low_latest = predict_latest(report.run_dir, frame, bfloat16=True)
    assert abs(low_latest.predicted_return - table["prediction"].iloc[-1]) < 0.1 * spread + 1e-9


def test_time_forms_that_the_data_loader_takes_are_taken_everywhere(report: TrainReport, frame: pd.DataFrame,
                                                                   tmp_path: Path) -> None:
    # train_crypto and the checkpoint readers read frame["timestamp"]: a `start_time` column or a DatetimeIndex,
    # which DataLoader accepts, ended in KeyError after the data had been prepared
    indexed = frame.set_index(pd.to_datetime(frame["timestamp"], unit="ms", utc=True)).drop(columns="timestamp")
    renamed = frame.rename(columns={"timestamp": "start_time"})
    expected = predict_all(report.run_dir, frame)
    for other in (indexed, renamed):
        pd.testing.assert_frame_equal(predict_all(report.run_dir, other), expected)
    config = TrainConfig(epochs=1, batch_size=32, max_batches_per_epoch=1, patience=0, device="cpu")
    again = train_crypto(indexed, seq_len=SEQ, horizon=HORIZON, model_overrides=TINY, train_config=config,
                         out_dir=tmp_path / "indexed", progress=False)
    assert again.evaluation["data"]["first_timestamp"] == int(frame["timestamp"].iloc[0])


def test_missing_turnover_is_a_clear_error(report: TrainReport, frame: pd.DataFrame) -> None:
    # the fix is the candles', not an API flag a `predict` user cannot set
    with pytest.raises(DataFormatError, match=r"trained with turnover .* give candles with a turnover column"):
        predict_all(report.run_dir, frame.drop(columns="turnover"))


def test_latest_prediction_refuses_a_window_over_a_gap(report: TrainReport, frame: pd.DataFrame) -> None:
    holed = frame.drop(index=frame.index[-10:-5])  # five candles missing inside the latest window
    with pytest.warns(UserWarning, match="gap"), pytest.raises(UserInputError, match="hold a gap"):
        predict_latest(report.run_dir, holed)
    with pytest.warns(UserWarning, match="gap"):
        table = predict_all(report.run_dir, holed)  # the windows clear of the gap still get predictions
    assert table["timestamp"].iloc[-1] < holed["timestamp"].iloc[-10 + 5]
    assert len(table) == len(frame) - 10 - report.data.prepared.spec.warmup - SEQ + 1


def test_attention_plot(report: TrainReport, frame: pd.DataFrame, tmp_path: Path) -> None:
    path = plot_attention(report.run_dir, frame, tmp_path / "attention.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

"""The realized-vol task end to end in Python: training on ln RV, the variance forecast and its s2, scores beside
the volatility baselines, no look-ahead, the checkpoint's description, predictions, walk-forward folds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reformer.data import SyntheticMarketConfig, synthetic_frame
from reformer.errors import ConfigError, UserInputError
from reformer.pipelines import TrainReport, evaluate_crypto, predict_all, predict_latest, train_crypto
from reformer.pipelines.crypto import predict_all_predictions
from reformer.pipelines.crypto_folds import FoldSettings, evaluate_walk_forward
from reformer.pipelines.crypto_vol import hac_lag
from reformer.pipelines.live import CandlePredictor
from reformer.pipelines.multi_symbol import train_symbols
from reformer.predictions import Predictions
from reformer.strategy import run_backtest
from reformer.training import TrainConfig
from reformer.training.meta import CandleMeta

SEQ, HORIZON = 32, 12
TINY = {"d_model": 8, "n_heads": 2, "n_layers": 1, "n_hash_rounds": 1, "n_buckets": 2, "chunk_size": 16,
        "dropout": 0.0}
CONFIG = TrainConfig(epochs=2, batch_size=32, max_batches_per_epoch=3, patience=0, device="cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return synthetic_frame(SyntheticMarketConfig(n_bars=700, seed=5))


@pytest.fixture(scope="module")
def report(frame: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> TrainReport:
    return train_crypto(frame, seq_len=SEQ, horizon=HORIZON, model_overrides=TINY, train_config=CONFIG,
                        out_dir=tmp_path_factory.mktemp("vol"), task="realized-vol", progress=False)


def _forecasts_at(report: TrainReport, frame: pd.DataFrame, split: str) -> tuple[np.ndarray, np.ndarray]:
    """predict_all's log forecasts at a split's windows, and those windows' realised ln RV."""
    prepared = report.data.prepared
    positions = getattr(prepared.split, split)
    table = predict_all(report.run_dir, frame).set_index("timestamp")
    return (table.loc[prepared.timestamps[positions], "prediction"].to_numpy(),
            np.log(prepared.realized_var[positions]))


def test_the_model_regresses_ln_rv_centred_and_scaled_on_its_training_windows(report: TrainReport) -> None:
    data = report.data
    train_log = np.log(data.prepared.realized_var[data.prepared.split.train])
    assert data.target_offset == pytest.approx(train_log.mean()) and data.target_scale == pytest.approx(train_log.std())
    _, y = data.train[0]
    first = int(data.train.indices[0])
    assert y.item() == pytest.approx((np.log(data.prepared.realized_var[first]) - data.target_offset)
                                     / data.target_scale, rel=1e-5)
    meta = json.loads((report.run_dir / "best" / "checkpoint.json").read_text())
    assert meta["model_config"]["task"] == "regression" and meta["task"] == "realized-vol"


def test_the_variance_is_the_log_normal_mean_with_the_validation_s2(report: TrainReport, frame: pd.DataFrame) -> None:
    forecast, realised = _forecasts_at(report, frame, "val")
    s2 = float(np.mean((realised - forecast) ** 2))
    meta = CandleMeta.read(report.run_dir)
    assert meta.residual_var == pytest.approx(s2, rel=1e-5) and meta.val_rmse == pytest.approx(s2 ** 0.5, rel=1e-5)
    assert CandleMeta.read(report.run_dir / "last").residual_var == meta.residual_var
    table = predict_all(report.run_dir, frame)
    assert list(table.columns) == ["timestamp", "prediction", "variance"]
    np.testing.assert_allclose(table["variance"], np.exp(table["prediction"] + s2 / 2), rtol=1e-5)
    latest = predict_latest(report.run_dir, frame)
    assert latest.task == "realized-vol" and latest.predicted_return == pytest.approx(table["prediction"].iloc[-1])
    assert latest.variance == pytest.approx(table["variance"].iloc[-1])
    assert set(latest.to_dict()) == {"timestamp", "prediction", "variance", "horizon", "task"}


def test_the_evaluation_scores_ln_rv_beside_the_volatility_baselines(report: TrainReport,
                                                                     frame: pd.DataFrame) -> None:
    evaluation = json.loads((report.run_dir / "evaluation.json").read_text())
    forecast, realised = _forecasts_at(report, frame, "test")
    model = evaluation["model"]
    assert model["n"] == len(report.data.test) == len(forecast)
    assert model["mse_log"] == pytest.approx(float(np.mean((forecast - realised) ** 2)), rel=1e-5)
    assert model["ic"] == pytest.approx(float(pd.Series(forecast).corr(pd.Series(realised), method="spearman")),
                                        abs=1e-6)
    assert {"ridge", "har", "ewma", "garch", "naive"} <= set(evaluation["baselines"])
    assert all(set(scores) >= {"n", "mse_log", "ic"} for scores in evaluation["baselines"].values())
    volatility = evaluation["volatility"]
    # neighbouring test windows share HORIZON - 1 target bars: the HAC lag is at least 2 * HORIZON - 1
    assert volatility["reference"] == "har" and volatility["lag"] == hac_lag(HORIZON, volatility["n"])
    assert volatility["lag"] >= 2 * HORIZON - 1
    assert {"model", "ridge", "har", "ewma", "garch", "naive"} <= set(volatility["forecasts"])
    assert "dm_qlike" in volatility["forecasts"]["model"] and "qlike" in volatility["forecasts"]["har"]
    # the checkpoint's own evaluation of the same frame is the one training wrote
    again = evaluate_crypto(report.run_dir, frame)
    assert again["model"]["mse_log"] == pytest.approx(model["mse_log"], rel=1e-6)


def test_bars_after_t_change_no_forecast_up_to_t(report: TrainReport, frame: pd.DataFrame) -> None:
    prepared = report.data.prepared
    t = int(prepared.end_bars[prepared.split.test[len(prepared.split.test) // 2]])
    changed = frame.copy()
    factors = np.exp(np.random.default_rng(1).normal(0.0, 0.03, len(frame) - t - 1))
    for column in ("open", "high", "low", "close"):
        changed.loc[t + 1:, column] = frame[column].to_numpy()[t + 1:] * factors
    base, moved = predict_all(report.run_dir, frame), predict_all(report.run_dir, changed)
    upto = base["timestamp"] <= frame["timestamp"].iloc[t]
    pd.testing.assert_frame_equal(moved[upto], base[upto], check_exact=True)
    assert not np.allclose(moved.loc[~upto, "prediction"], base.loc[~upto, "prediction"])


def test_the_checkpoint_description_reads_back(report: TrainReport) -> None:
    meta = CandleMeta.read(report.run_dir)
    assert (meta.task, meta.dataset.task, meta.horizon) == ("realized-vol", "realized-vol", HORIZON)
    assert meta.target_offset == pytest.approx(report.data.target_offset) and meta.target_offset < 0
    again = CandleMeta.from_dict(json.loads(json.dumps(meta.to_dict())), "checkpoint.json")
    assert again.to_dict() == meta.to_dict() and again.residual_var == meta.residual_var


def test_predictions_say_they_forecast_the_log_variance_and_are_no_trading_signal(
        report: TrainReport, frame: pd.DataFrame, tmp_path: Path) -> None:
    preds = predict_all_predictions(report.run_dir, frame)
    assert preds.target == "log-variance" and list(preds.values.columns) == ["prediction", "variance"]
    path = preds.to_csv(tmp_path / "vol.csv")
    assert "target=log-variance" in path.read_text().splitlines()[0]
    back = Predictions.from_csv(path)
    assert back.target == "log-variance"
    pd.testing.assert_frame_equal(back.values, preds.values, check_exact=True)
    with pytest.raises(UserInputError, match="not a return"):
        run_backtest(back.out_of_sample(), frame)
    with pytest.raises(UserInputError, match="not a return"):  # nor traded live
        CandlePredictor(report.run_dir)


def test_a_walk_forward_scores_each_fold_s_variance_with_its_own_s2(frame: pd.DataFrame, tmp_path: Path) -> None:
    folds = FoldSettings(n_folds=2, test_windows=60, val_windows=40)
    report = evaluate_walk_forward(frame, seq_len=SEQ, horizon=HORIZON, folds=folds, model_overrides=TINY,
                                   train_config=CONFIG, task="realized-vol", out_dir=tmp_path)
    assert report["pooled"]["task"] == "realized-vol" and "volatility" in report["pooled"]
    assert all("volatility" in fold and "mse_log" in fold["model"] for fold in report["folds"])
    table = pd.read_csv(tmp_path / "predictions.csv", comment="#")
    assert {"realised", "realised_variance", "prediction", "variance", "ridge", "ewma"} <= set(table.columns)
    np.testing.assert_allclose(table["realised_variance"], np.exp(table["realised"]), rtol=1e-12)
    for k in range(2):
        rows = table[table["fold"] == k]
        s2 = CandleMeta.read(tmp_path / f"fold_{k}").residual_var
        assert s2 is not None
        np.testing.assert_allclose(rows["variance"], np.exp(rows["prediction"] + s2 / 2), rtol=1e-9)
    assert Predictions.from_csv(tmp_path / "predictions.csv").target == "log-variance"


def test_a_walk_forward_with_a_stride_forecasts_every_stride_bars(frame: pd.DataFrame, tmp_path: Path) -> None:
    """stride = horizon: one forecast per target period, so the windows' targets no longer overlap, and the scores'
    bootstrap blocks and HAC lag shrink with the overlap."""
    folds = FoldSettings(n_folds=2, test_windows=8, val_windows=4)
    report = evaluate_walk_forward(frame, seq_len=SEQ, horizon=HORIZON, folds=folds, model_overrides=TINY,
                                   train_config=CONFIG, task="realized-vol", out_dir=tmp_path, stride=HORIZON)
    table = pd.read_csv(tmp_path / "predictions.csv", comment="#")
    assert len(table) == 16 and report["pooled"]["stride"] == HORIZON
    assert set(np.diff(table["timestamp"].to_numpy())) == {HORIZON * 3_600_000}  # hourly bars, every HORIZON-th
    assert report["pooled"]["ic_minus_ridge"]["block"] == 2  # 2 x the overlap of one window
    volatility = report["pooled"]["volatility"]
    assert volatility["lag"] == hac_lag(1, volatility["n"]) < 2 * HORIZON - 1  # the rule's floor, not the overlap
    with pytest.raises(ConfigError, match="stride"):
        evaluate_walk_forward(frame, seq_len=SEQ, horizon=HORIZON, folds=folds, task="realized-vol", stride=0)


def test_a_model_of_several_symbols_is_refused(frame: pd.DataFrame, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="one symbol at a time"):
        train_symbols({"A": frame, "B": frame}, seq_len=SEQ, horizon=HORIZON, task="realized-vol",
                      out_dir=tmp_path / "multi")
    assert not (tmp_path / "multi").exists()

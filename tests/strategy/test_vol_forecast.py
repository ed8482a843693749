"""Volatility targeting with a volatility model's forecast instead of the trailing realised volatility: the size
at each bar, the Python API against positions computed by hand, and `reformer backtest --vol-forecast`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reformer.api import Kline
from reformer.data import write_klines
from reformer.data.dataset import klines_to_frame
from reformer.predictions import LOG_VARIANCE, Predictions
from reformer.strategy import BacktestConfig, backtest_positions, forecast_volatility, run_backtest


@pytest.fixture(scope="module")
def frame(synthetic_year: list[Kline]) -> pd.DataFrame:
    return klines_to_frame(synthetic_year[-600:])


def _daily_variance(frame: pd.DataFrame, horizon: int = 24) -> Predictions:
    """A variance forecast every 24 bars (from bar 100 on), varying so that the size changes between days."""
    times = pd.to_datetime(frame["timestamp"].iloc[100::24], unit="ms", utc=True)
    variance = 24 * (0.004 + 0.002 * np.sin(np.arange(len(times))))**2
    values = pd.DataFrame({"prediction": np.log(variance), "variance": variance}, index=times)
    return Predictions(values, interval="60", horizon=horizon, target=LOG_VARIANCE, source="daily variance")


def test_forecast_volatility_is_the_per_bar_std_and_refuses_returns(frame: pd.DataFrame) -> None:
    forecast = _daily_variance(frame)
    vol = forecast_volatility(forecast)
    np.testing.assert_allclose(vol.to_numpy(), np.sqrt(forecast.values["variance"].to_numpy() / 24))
    returns = Predictions(pd.Series([0.01], index=forecast.values.index[:1]), horizon=24)
    with pytest.raises(ValueError, match="no variance forecast"):
        forecast_volatility(returns)


def test_run_backtest_sizes_by_the_forecast_held_until_the_next(frame: pd.DataFrame) -> None:
    forecast = _daily_variance(frame)
    times = pd.to_datetime(frame["timestamp"], unit="ms", utc=True)
    always_long = pd.Series(1.0, index=times)
    config = BacktestConfig(vol_target=0.003, stop_loss=0.0, take_profit=0.0, rebalance_band=0.0)
    got = run_backtest(always_long, frame, config, volatility=forecast)
    # by hand: each bar sized by the latest forecast at or before it, flat before the first
    vol = forecast_volatility(forecast).reindex(times, method="ffill")
    size = np.where(vol.notna(), np.minimum(1.0, 0.003 / vol.to_numpy()), 0.0)
    expected = backtest_positions(pd.Series(size, index=times), frame, config)
    pd.testing.assert_series_equal(got.equity, expected.equity)
    assert 0 < got.exposure < 1 and got.n_orders > 5  # the size really followed the forecast
    trailing = run_backtest(always_long, frame, config)  # the default: trailing realised volatility
    assert not np.allclose(trailing.equity.to_numpy(), got.equity.to_numpy())


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reformer.cli", "backtest", *args], capture_output=True, text=True,
                          check=False)


def test_cli_vol_forecast(frame: pd.DataFrame, synthetic_year: list[Kline], tmp_path: Path) -> None:
    klines = tmp_path / "klines.csv"
    write_klines(synthetic_year[-600:], klines)
    preds = tmp_path / "preds.csv"
    pd.DataFrame({"timestamp": frame["timestamp"], "prediction": 0.01}).to_csv(preds, index=False)
    forecast = _daily_variance(frame)
    vol_csv = forecast.to_csv(tmp_path / "vol.csv")
    common = ("--csv", str(klines), "--predictions", str(preds), "--stop-loss", "0", "--take-profit", "0", "--json")
    proc = _cli(*common, "--vol-target", "0.003", "--vol-forecast", str(vol_csv))
    assert proc.returncode == 0, proc.stderr
    api = run_backtest(pd.Series(0.01, index=pd.to_datetime(frame["timestamp"], unit="ms", utc=True)), frame,
                       BacktestConfig(vol_target=0.003, stop_loss=0.0, take_profit=0.0), volatility=forecast)
    assert json.loads(proc.stdout)["total_return"] == pytest.approx(api.total_return, rel=1e-12)
    # without --vol-target, and with a file of returns: one line each, exit 2
    missing = _cli(*common, "--vol-forecast", str(vol_csv))
    assert missing.returncode == 2 and "--vol-target" in missing.stderr and "Traceback" not in missing.stderr
    wrong = _cli(*common, "--vol-target", "0.003", "--vol-forecast", str(preds))
    assert wrong.returncode == 2 and "no variance forecast" in wrong.stderr and "Traceback" not in wrong.stderr

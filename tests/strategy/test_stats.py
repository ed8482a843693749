"""Statistics against hand-computed series and the result's serialisation."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from reformer.strategy import (
    BacktestConfig,
    annualized_return,
    backtest_positions,
    max_drawdown,
    max_drawdown_duration,
    periods_per_year,
    sharpe_ratio,
    simple_returns,
    sortino_ratio,
)


def equity_series(values: list[float], freq: str) -> pd.Series:
    return pd.Series(values, index=pd.date_range("2024-01-01", periods=len(values), freq=freq, tz="UTC"))


@pytest.mark.parametrize(("freq", "expected"), [("h", 8760.0), ("D", 365.0), ("15min", 35_040.0), ("4h", 2190.0)])
def test_periods_per_year_on_a_24_7_calendar(freq: str, expected: float) -> None:
    index = pd.date_range("2024-01-01", periods=10, freq=freq, tz="UTC")
    assert periods_per_year(index) == expected


def test_sharpe_sortino_and_drawdown_by_hand() -> None:
    # returns +1 %, -1 %, +3 %: 100 -> 101 -> 99.99 -> 102.9897
    equity = equity_series([100.0, 101.0, 99.99, 102.9897], "D")
    returns = simple_returns(equity)
    np.testing.assert_allclose(returns.to_numpy(), [0.01, -0.01, 0.03], atol=1e-12)
    # mean 0.01; deviations 0, -0.02, 0.02 -> var (ddof=1) = 0.0008 / 2 = 0.0004 -> std 0.02
    assert sharpe_ratio(returns, 365) == pytest.approx(0.01 / 0.02 * math.sqrt(365), rel=1e-9)
    # downside deviation over all 3 returns: sqrt((0 + 0.0001 + 0) / 3)
    assert sortino_ratio(returns, 365) == pytest.approx(0.01 / math.sqrt(0.0001 / 3) * math.sqrt(365), rel=1e-9)
    assert sharpe_ratio(returns, 8760) == pytest.approx(0.5 * math.sqrt(8760), rel=1e-9)
    # peak 101 (day 1), trough 99.99 -> 1 - 99.99 / 101 = 0.01; recovered on day 3 -> 2 days
    assert max_drawdown(equity) == pytest.approx(0.01, rel=1e-9)
    assert max_drawdown_duration(equity) == pd.Timedelta(days=2)


def test_drawdown_duration_unrecovered_runs_to_the_last_bar() -> None:
    equity = equity_series([100.0, 120.0, 90.0, 110.0, 100.0, 130.0, 125.0], "h")
    assert max_drawdown(equity) == pytest.approx(0.25)  # 1 - 90 / 120
    assert max_drawdown_duration(equity) == pd.Timedelta(hours=4)  # 120 at 01:00 until 130 at 05:00
    assert max_drawdown_duration(equity_series([100.0, 90.0, 95.0], "h")) == pd.Timedelta(hours=2)
    assert max_drawdown_duration(equity_series([100.0, 100.0, 101.0], "h")) == pd.Timedelta(0)


def test_annualized_return_compounds_over_years() -> None:
    assert annualized_return(0.21, 730, 365) == pytest.approx(0.1)
    assert annualized_return(-1.5, 10, 365) == -1.0
    # a 5 % gain over two 1-minute bars compounds past float range: inf, not OverflowError (it crashed the CLI)
    assert annualized_return(0.05, 2, 525_600.0) == math.inf
    assert annualized_return(0.01, 8_760, 8_760.0) == pytest.approx(0.01)


def test_a_short_minute_backtest_reports_an_infinite_cagr_instead_of_crashing() -> None:
    from reformer.strategy import BacktestConfig, backtest_positions

    times = pd.date_range("2024-01-01", periods=3, freq="1min", tz="UTC")
    bars = pd.DataFrame({"open": [100, 100, 105.0], "high": [100, 106, 106.0], "low": [100, 99, 104.0],
                         "close": [100, 105, 105.0]}, index=times)
    result = backtest_positions(pd.Series([1.0], index=times[:1]), bars, BacktestConfig(position_size=1.0))
    assert result.annualized_return == math.inf and result.total_return > 0


def test_result_statistics_are_consistent_with_its_equity() -> None:
    rng = np.random.default_rng(0)
    n = 500
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    bars = pd.DataFrame({"open": np.r_[100.0, close[:-1]], "close": close},
                        index=pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"))
    bars["high"] = bars[["open", "close"]].max(axis=1) * 1.004
    bars["low"] = bars[["open", "close"]].min(axis=1) * 0.996
    positions = pd.Series(rng.choice([-1.0, 0.0, 1.0], n // 10), index=bars.index[::10])
    result = backtest_positions(positions, bars, BacktestConfig(position_size=0.5))
    returns = result.equity.pct_change().iloc[1:]
    assert result.periods_per_year == 8760.0
    assert result.sharpe_ratio == pytest.approx(returns.mean() / returns.std(ddof=1) * math.sqrt(8760))
    assert result.volatility == pytest.approx(returns.std(ddof=1) * math.sqrt(8760))
    assert result.max_drawdown == pytest.approx(float((1 - result.equity / result.equity.cummax()).max()))
    assert result.calmar_ratio == pytest.approx(result.annualized_return / result.max_drawdown)
    closed = result.trades[~result.trades["open"]]
    assert result.n_trades == len(closed) > 0
    assert result.win_rate == pytest.approx((closed["pnl"] > 0).mean())
    wins, losses = closed["pnl"][closed["pnl"] > 0].sum(), -closed["pnl"][closed["pnl"] < 0].sum()
    assert result.profit_factor == pytest.approx(wins / losses)
    assert result.avg_trade == pytest.approx(closed["return"].mean())
    # the pnl of every trade adds up to the equity change
    assert result.trades["pnl"].sum() == pytest.approx(result.final_equity - 10_000)
    assert 0 < result.exposure < 1


def test_to_dict_is_json_and_keyed_by_field_names() -> None:
    bars = pd.DataFrame({"open": [100.0, 100, 101], "high": [101.0, 102, 103], "low": [99.0, 99, 100],
                         "close": [100.0, 101, 102]},
                        index=pd.date_range("2024-01-01", periods=3, freq="D", tz="UTC"))
    result = backtest_positions(pd.Series([0.0], index=bars.index[:1]), bars, BacktestConfig())
    stats = result.to_dict()
    parsed = json.loads(json.dumps(stats, allow_nan=False))
    for name in ("total_return", "annualized_return", "volatility", "sharpe_ratio", "sortino_ratio",
                 "max_drawdown", "max_drawdown_duration", "calmar_ratio", "n_trades", "win_rate",
                 "profit_factor", "avg_trade", "exposure", "buy_and_hold_return", "total_fees", "total_funding",
                 "ambiguous_bars"):
        assert name in parsed
    assert parsed["total_return"] == 0.0 and parsed["sharpe_ratio"] == 0.0
    assert parsed["win_rate"] is None and parsed["n_trades"] == 0  # undefined without trades
    assert parsed["max_drawdown_duration"] == "P0DT0H0M0S"
    assert parsed["config"]["position_size"] == 0.1
    assert "total_return" in result.summary() and result.trades.empty

"""Perpetual-futures mechanics against hand computations: liquidation, funding on the mark price, maker and taker
fees, inverse profit and loss, lot and tick rounding, and a portfolio that chains two single backtests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest

from reformer.errors import ConfigError, UserInputError
from reformer.strategy import BacktestConfig, Instrument, Leg, backtest_portfolio, backtest_positions

NO_EXITS = {"stop_loss": 0.0, "take_profit": 0.0}


def bars(rows: Sequence[tuple[float, float, float, float]], start: str = "2024-01-01", freq: str = "h"
         ) -> pd.DataFrame:
    times = pd.date_range(start, periods=len(rows), freq=freq, tz="UTC")
    return pd.DataFrame(rows, columns=["open", "high", "low", "close"], index=times)


def hold(frame: pd.DataFrame, side: float = 1.0) -> pd.Series:
    """Target `side` decided at the first close: filled at the second bar's open."""
    return pd.Series([side], index=frame.index[:1])


# ---- 1. liquidation -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("leverage", "side", "level"), [
    (5, 1.0, 100 * (1 - 1 / 5 + 0.005)),     # 80.5
    (20, 1.0, 100 * (1 - 1 / 20 + 0.005)),   # 95.5
    (5, -1.0, 100 * (1 + 1 / 5 - 0.005)),    # 119.5
    (20, -1.0, 100 * (1 + 1 / 20 - 0.005)),  # 104.5
])
def test_liquidation_at_the_hand_computed_price_loses_the_initial_margin(leverage: float, side: float,
                                                                         level: float) -> None:
    # entry 10 units at 100 (notional 1,000 of equity 1,000): the margin is 1,000 / leverage
    away = level - side * 1.0  # the bar that reaches one unit past the level
    frame = bars([(100, 100, 100, 100), (100, 100, 100, 100), (100, max(100, away), min(100, away), 100),
                  (100, 100, 100, 100)])
    config = BacktestConfig(initial_capital=1000.0, position_size=1.0, leverage=leverage, commission=0.0,
                            maintenance_margin_rate=0.005, **NO_EXITS)
    result = backtest_positions(hold(frame, side), frame, config)
    trade = result.trades.iloc[0]
    assert result.n_liquidations == 1 and trade["exit_reason"] == "liquidation"
    assert trade["exit_time"] == frame.index[2] and trade["exit_price"] == pytest.approx(level)
    assert trade["pnl"] == pytest.approx(-1000.0 / leverage)
    assert result.final_equity == pytest.approx(1000.0 - 1000.0 / leverage)
    # one unit short of the level: nothing happens
    near = level + side * 1.0
    safe = bars([(100, 100, 100, 100), (100, 100, 100, 100), (100, max(100, near), min(100, near), 100),
                 (100, 100, 100, 100)])
    assert backtest_positions(hold(safe, side), safe, config).n_liquidations == 0


def test_a_gap_through_the_liquidation_price_loses_no_more_than_the_margin() -> None:
    # 5x long from 100, liquidation at 80.5; bar 2 opens at 60: a 40 % loss on 5,000 of notional would be 2,000
    frame = bars([(100, 100, 100, 100), (100, 100, 100, 100), (60, 61, 59, 60), (60, 60, 60, 60)])
    config = BacktestConfig(initial_capital=1000.0, position_size=5.0, leverage=5, taker_fee=0.00055,
                            maker_fee=0.0002, maintenance_margin_rate=0.005, **NO_EXITS)
    result = backtest_positions(hold(frame), frame, config)
    entry_fee = 0.00055 * 5000.0
    assert result.n_liquidations == 1 and result.trades.iloc[0]["exit_time"] == frame.index[2]
    assert result.final_equity == pytest.approx(1000.0 - entry_fee - 1000.0)  # the whole margin, no more


def test_liquidation_watches_the_mark_price_not_the_last() -> None:
    frame = bars([(100, 100, 100, 100), (100, 100, 100, 100), (100, 100, 80, 90), (90, 90, 90, 90)])
    config = BacktestConfig(initial_capital=1000.0, position_size=1.0, leverage=5, commission=0.0,
                            maintenance_margin_rate=0.005, **NO_EXITS)
    calm_mark = frame.assign(low=frame["low"].clip(lower=85.0))  # the last price spiked to 80, the mark to 85
    assert backtest_positions(hold(frame), frame, config).n_liquidations == 1
    assert backtest_positions(hold(frame), frame, config, mark=calm_mark).n_liquidations == 0


def test_leverage_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="position_size"):
        BacktestConfig(position_size=2.0)  # above leverage 1
    with pytest.raises(ConfigError, match="maintenance_margin_rate"):
        BacktestConfig(leverage=50, maintenance_margin_rate=0.05)  # at or past 1 / leverage
    with pytest.raises(ConfigError, match="spot"):
        BacktestConfig(category="spot", leverage=3)


# ---- 2. funding -----------------------------------------------------------------------------------------------

def test_funding_sign_mark_price_and_schedules() -> None:
    frame = bars([(100, 100, 100, 100)] * 20)
    mark = frame + 1.0  # the mark 1 above the last price
    config = BacktestConfig(initial_capital=1000.0, position_size=1.0, commission=0.0, **NO_EXITS)
    units = 10.0  # 1,000 at 100
    eight_hourly = pd.Series(0.0001, index=frame.index[8::8])  # bars 8 and 16, on bar opens
    long = backtest_positions(hold(frame), frame, config, funding_rates=eight_hourly, mark=mark)
    assert long.total_funding == pytest.approx(2 * 0.0001 * units * 101.0)  # at the mark, paid by the long
    short = backtest_positions(hold(frame, -1.0), frame, config, funding_rates=eight_hourly, mark=mark)
    assert short.total_funding == pytest.approx(-2 * 0.0001 * units * 101.0)  # received by the short
    last = backtest_positions(hold(frame), frame, config, funding_rates=eight_hourly)
    assert last.total_funding == pytest.approx(2 * 0.0001 * units * 100.0)  # no mark: the last price
    hourly = pd.Series(0.00002, index=frame.index[2:])  # every bar from the first one held into
    assert backtest_positions(hold(frame), frame, config, funding_rates=hourly, mark=mark).total_funding == \
        pytest.approx(18 * 0.00002 * units * 101.0)
    inside = pd.Series([0.0001], index=[frame.index[5] + pd.Timedelta(minutes=30)])  # inside bar 5: its close
    closes = mark.assign(close=103.0)
    assert backtest_positions(hold(frame), frame, config, funding_rates=inside, mark=closes).total_funding == \
        pytest.approx(0.0001 * units * 103.0)
    off = BacktestConfig(initial_capital=1000.0, position_size=1.0, commission=0.0, funding=False, **NO_EXITS)
    assert backtest_positions(hold(frame), frame, off, funding_rates=eight_hourly).total_funding == 0.0


# ---- 3. maker and taker ---------------------------------------------------------------------------------------

def test_market_entry_pays_taker_and_the_take_profit_pays_maker() -> None:
    frame = bars([(100, 100, 100, 100), (100, 102, 99, 101), (101, 105, 100, 104), (104, 104, 104, 104)])
    config = BacktestConfig(initial_capital=1000.0, position_size=1.0, taker_fee=0.001, maker_fee=0.0002,
                            stop_loss=0.0, take_profit=0.04)
    result = backtest_positions(hold(frame), frame, config)
    trade = result.trades.iloc[0]
    entry_fee, exit_fee = 0.001 * 1000.0, 0.0002 * 10 * 104.0
    assert trade["exit_reason"] == "take_profit" and trade["exit_price"] == pytest.approx(104.0)
    assert result.total_fees == pytest.approx(entry_fee + exit_fee)
    assert result.final_equity == pytest.approx(1000.0 - entry_fee + 40.0 - exit_fee)


def test_a_take_profit_touched_but_not_traded_through_does_not_fill() -> None:
    frame = bars([(100, 100, 100, 100), (100, 104, 99, 103), (103, 104, 102, 103), (103, 103, 103, 103)])
    config = BacktestConfig(initial_capital=1000.0, position_size=1.0, commission=0.0, stop_loss=0.0,
                            take_profit=0.04)
    result = backtest_positions(hold(frame), frame, config)
    assert result.n_trades == 0 and result.n_open_trades == 1
    short = bars([(100, 100, 100, 100), (100, 101, 96, 97), (97, 98, 95.9, 96), (96, 96, 96, 96)])
    assert backtest_positions(hold(short, -1.0), short, config).trades.iloc[0]["exit_reason"] == "take_profit"


def test_commission_sets_both_rates_and_an_open_position_reports_its_exit_fee() -> None:
    frame = bars([(100, 100, 100, 100), (100, 100, 100, 100), (110, 110, 110, 110)])
    config = BacktestConfig(initial_capital=1000.0, position_size=1.0, commission=0.001, **NO_EXITS)
    result = backtest_positions(hold(frame), frame, config)
    assert result.total_fees == pytest.approx(1.0)
    assert result.final_equity == pytest.approx(1000.0 - 1.0 + 100.0)
    assert result.final_equity_after_exit == pytest.approx(result.final_equity - 0.001 * 10 * 110.0)


# ---- 4. inverse -----------------------------------------------------------------------------------------------

def test_inverse_profit_and_loss_is_in_the_coin() -> None:
    frame = bars([(20_000,) * 4, (20_000,) * 4, (22_000,) * 4, (22_000,) * 4])
    config = BacktestConfig(initial_capital=1.0, position_size=1.0, category="inverse", taker_fee=0.0006,
                            maker_fee=0.0001, **NO_EXITS)
    targets = pd.Series([1.0, 0.0], index=frame.index[:2])  # long from bar 1's open, out at bar 2's
    result = backtest_positions(targets, frame, config)
    trade = result.trades.iloc[0]
    contracts = 1.0 * 20_000  # 1 BTC of notional, in 1-USD contracts
    pnl = contracts * (1 / 20_000 - 1 / 22_000)
    fees = 0.0006 * contracts / 20_000 + 0.0006 * contracts / 22_000
    assert trade["units"] == pytest.approx(contracts) and trade["side"] == "long"
    assert trade["pnl"] == pytest.approx(pnl - fees)
    assert result.final_equity == pytest.approx(1.0 + pnl - fees)
    assert result.settle_currency == "coin"
    assert result.total_return_usd == pytest.approx(result.final_equity * 22_000 / 20_000 - 1.0)
    short = backtest_positions(-targets, frame.iloc[::-1].set_axis(frame.index), config)  # 22,000 -> 20,000
    assert short.trades.iloc[0]["pnl"] == pytest.approx(22_000 * (1 / 20_000 - 1 / 22_000)
                                                        - 0.0006 * 22_000 / 22_000 - 0.0006 * 22_000 / 20_000)


def test_inverse_liquidation_price() -> None:
    level = 20_000 / (1 + 1 / 10 - 0.005)  # a 10x inverse long
    frame = bars([(20_000,) * 4, (20_000,) * 4, (20_000, 20_000, level - 1, 19_000), (19_000,) * 4])
    config = BacktestConfig(initial_capital=1.0, position_size=1.0, leverage=10, category="inverse",
                            commission=0.0, maintenance_margin_rate=0.005, **NO_EXITS)
    result = backtest_positions(hold(frame), frame, config)
    assert result.n_liquidations == 1
    assert result.trades.iloc[0]["exit_price"] == pytest.approx(level)
    assert result.final_equity == pytest.approx(1.0 - 0.1)  # the margin: 1 BTC of notional / 10


# ---- 5. exchange rules ----------------------------------------------------------------------------------------

def test_quantities_round_down_to_the_step_and_prices_to_the_tick() -> None:
    frame = bars([(100.2,) * 4, (100.2,) * 4, (100.2,) * 4])
    config = BacktestConfig(initial_capital=1000.0, position_size=0.5, commission=0.0, slippage=0.001, **NO_EXITS)
    result = backtest_positions(hold(frame), frame, config, instrument=Instrument(tick_size=0.5, qty_step=0.01))
    trade = result.trades.iloc[0]
    assert trade["entry_price"] == 100.5  # 100.2 * 1.001 = 100.3002, up to the tick against the buyer
    assert trade["units"] == pytest.approx(4.97)  # 500 / 100.5 = 4.975.., down to the step


def test_an_order_below_the_minimum_is_skipped_and_counted() -> None:
    frame = bars([(30_000,) * 4] * 4)
    config = BacktestConfig(initial_capital=1000.0, position_size=0.1, commission=0.0, **NO_EXITS)
    rules = Instrument(qty_step=0.001, min_qty=0.01)  # 100 / 30,000 = 0.0033 BTC
    result = backtest_positions(hold(frame), frame, config, instrument=rules)
    assert result.n_skipped_orders == 1 and result.trades.empty and result.final_equity == 1000.0
    placed = backtest_positions(hold(frame), frame, config, instrument=Instrument(qty_step=0.001))
    assert placed.trades.iloc[0]["units"] == pytest.approx(0.003)


def test_spot_shorts_only_when_asked_and_then_pay_interest() -> None:
    frame = bars([(100,) * 4] * 25)
    spot = BacktestConfig(initial_capital=1000.0, position_size=1.0, commission=0.0, category="spot", **NO_EXITS)
    assert backtest_positions(hold(frame, -1.0), frame, spot).trades.empty
    asked = BacktestConfig(initial_capital=1000.0, position_size=1.0, commission=0.0, category="spot",
                           allow_short=True, borrow_rate=0.0876, **NO_EXITS)
    result = backtest_positions(hold(frame, -1.0), frame, asked)
    per_bar = 0.0876 / 8760 * 1000.0  # a yearly rate on 1,000 of borrowed coin, hour by hour
    assert result.total_funding == pytest.approx(24 * per_bar)  # bars 1 .. 24 held


def test_a_volatility_target_inside_the_band_does_not_trade() -> None:
    frame = bars([(100,) * 4] * 5)
    config = BacktestConfig(initial_capital=1000.0, position_size=1.0, commission=0.001, **NO_EXITS)
    targets = pd.Series([1.0, 0.9, 0.85, 0.5], index=frame.index[:4])
    result = backtest_positions(targets, frame, config)
    # 0.9 and 0.85 move the notional by 10 % and 15 % (inside the 20 % band); 0.5 by 50 %: one rebalance
    assert list(result.positions.iloc[1:4]) == pytest.approx([10.0, 10.0, 10.0 - 0.0])
    assert result.positions.iloc[4] == pytest.approx(0.5 * (1000.0 - 1.0) / 100.0)


# ---- 6. portfolio ---------------------------------------------------------------------------------------------

def _walk(n: int, seed: int, start: str) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.r_[100.0, close[:-1]]
    high, low = np.maximum(open_, close) * 1.004, np.minimum(open_, close) * 0.996
    times = pd.date_range(start, periods=n, freq="h", tz="UTC")
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close}, index=times)


def test_a_portfolio_of_two_symbols_apart_in_time_equals_the_two_backtests_chained() -> None:
    first, second = _walk(200, 1, "2024-01-01"), _walk(200, 2, "2024-02-01")
    signal_a = np.sign(first["close"].diff(5).fillna(0.0))
    signal_b = np.sign(second["close"].diff(5).fillna(0.0))
    signal_a.iloc[-1] = signal_b.iloc[-1] = 0.0  # both end flat, so the second starts from the first's cash
    config = BacktestConfig(initial_capital=1000.0, position_size=2.0, leverage=3, maker_fee=0.0002,
                            taker_fee=0.00055, stop_loss=0.01, take_profit=0.02)
    report = backtest_portfolio({"A": Leg(first, positions=signal_a), "B": Leg(second, positions=signal_b)}, config)
    alone_a = backtest_positions(signal_a, first, config)
    alone_b = backtest_positions(signal_b, second, BacktestConfig(**{**config.__dict__,
                                                                      "initial_capital": alone_a.final_equity}))
    assert report.result.final_equity == pytest.approx(alone_b.final_equity, rel=1e-12)
    assert report.symbols["A"].pnl == pytest.approx(alone_a.final_equity - 1000.0, rel=1e-9)
    assert report.symbols["B"].n_trades == alone_b.n_trades and report.result.n_trades == alone_a.n_trades + \
        alone_b.n_trades
    assert report.result.total_fees == pytest.approx(alone_a.total_fees + alone_b.total_fees)


def test_a_one_symbol_portfolio_is_the_single_backtest() -> None:
    frame = _walk(300, 3, "2024-01-01")
    signal = np.sign(frame["close"].diff(3).fillna(0.0))
    config = BacktestConfig(position_size=0.5, stop_loss=0.01, take_profit=0.02)
    alone = backtest_positions(signal, frame, config)
    report = backtest_portfolio({"X": Leg(frame, positions=signal)}, config)
    assert report.result.to_dict() == alone.to_dict()


def test_the_portfolio_caps_gross_notional_at_the_leverage() -> None:
    a, b = _walk(50, 4, "2024-01-01"), _walk(50, 5, "2024-01-01")
    config = BacktestConfig(initial_capital=1000.0, position_size=2.0, leverage=3, commission=0.0, **NO_EXITS)
    report = backtest_portfolio({"A": Leg(a, positions=hold(a)), "B": Leg(b, positions=hold(b))}, config)
    units_a, units_b = report.symbols["A"].positions.iloc[1], report.symbols["B"].positions.iloc[1]
    assert units_a * a["open"].iloc[1] == pytest.approx(2000.0)  # the first fills its full size
    assert units_b * b["open"].iloc[1] == pytest.approx(1000.0)  # the second is cut to 3 x 1,000 - 2,000
    with pytest.raises(UserInputError, match="B: "):
        backtest_portfolio({"A": Leg(a, positions=hold(a)), "B": Leg(b)}, config)


def test_volatility_targeting_rebalances_only_past_the_band_and_never_re_enters_a_stopped_side() -> None:
    from reformer.strategy import realized_volatility, run_backtest, signals_from_predictions

    frame = _walk(5000, 7, "2024-01-01")
    predictions = frame["close"].pct_change(24).fillna(0.0)
    every = BacktestConfig(vol_target=0.005, rebalance_band=0.0, position_size=1.0)
    banded = BacktestConfig(vol_target=0.005, position_size=1.0)  # the default band: 20 %
    loose, tight = run_backtest(predictions, frame, every), run_backtest(predictions, frame, banded)
    assert tight.n_orders < loose.n_orders / 2  # 942 against 2,564 on this series
    targets = signals_from_predictions(predictions, banded, realized_volatility(frame["close"], 24))
    side = np.sign(targets.to_numpy())
    trades = tight.trades
    bar_of = {time: i for i, time in enumerate(frame.index)}
    stopped = trades[trades["exit_reason"] == "stop_loss"]
    assert len(stopped) > 50
    for _, stop in stopped.iterrows():
        was = 1 if stop["side"] == "long" else -1
        later = trades[(trades["entry_time"] > stop["exit_time"]) & (trades["side"] == stop["side"])]
        if later.empty:
            continue
        exit_bar, entry_bar = bar_of[stop["exit_time"]], bar_of[later["entry_time"].iloc[0]]
        # the entry at bar e was decided at bar e-1's close; some decision in between had left the stopped side
        assert (side[exit_bar:entry_bar - 1] != was).any()

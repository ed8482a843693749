"""Engine fill rules against hand-computed cases."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest

from reformer.strategy import BacktestConfig, backtest_positions

NO_STOPS = {"stop_loss": 0.0, "take_profit": 0.0}


def make_bars(rows: Sequence[tuple[float, float, float, float]], freq: str = "h") -> pd.DataFrame:
    times = pd.date_range("2024-01-01", periods=len(rows), freq=freq, tz="UTC")
    return pd.DataFrame(rows, columns=["open", "high", "low", "close"], index=times)


def random_walk(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.r_[100.0, close[:-1]] * (1 + rng.normal(0, 0.001, n))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, n))
    times = pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC")
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close}, index=times)


FIVE_BARS = make_bars([
    (100, 101, 99, 100),
    (100, 106, 99, 105),
    (105, 111, 104, 110),
    (110, 111, 107, 108),
    (108, 109, 100, 102),
])


def test_hand_computed_five_bars_with_fees() -> None:
    t = FIVE_BARS.index
    config = BacktestConfig(initial_capital=10_000, position_size=0.5, commission=0.001, **NO_STOPS)
    # long decided at bar 0's close, flat at bar 2's close, short at bar 3's close
    result = backtest_positions(pd.Series([1.0, 0.0, -1.0], index=[t[0], t[2], t[3]]), FIVE_BARS, config)
    # bar 1 open 100: notional 0.5 * 10000 = 5000 -> 50 units, fee 5; cash = 10000 - 5000 - 5 = 4995
    # bar 1 close: 4995 + 50 * 105 = 10245;  bar 2 close: 4995 + 50 * 110 = 10495
    # bar 3 open 110: sell 50 -> +5500, fee 5.5; cash = 4995 + 5500 - 5.5 = 10489.5 (flat at the close)
    # bar 4 open 108: short 0.5 * 10489.5 = 5244.75 -> 48.5625 units, fee 5.24475
    #   cash = 10489.5 + 5244.75 - 5.24475 = 15729.00525; close 102: 15729.00525 - 48.5625 * 102 = 10775.63025
    expected = [10_000.0, 10_245.0, 10_495.0, 10_489.5, 10_775.63025]
    np.testing.assert_allclose(result.equity.to_numpy(), expected, rtol=0, atol=1e-9)
    assert result.total_fees == pytest.approx(5 + 5.5 + 5.24475, abs=1e-12)
    assert result.total_return == pytest.approx(0.077563025, abs=1e-12)
    assert result.n_trades == 1 and result.n_open_trades == 1
    closed, still_open = result.trades.iloc[0], result.trades.iloc[1]
    assert (closed["side"], closed["entry_price"], closed["exit_price"]) == ("long", 100.0, 110.0)
    assert closed["pnl"] == pytest.approx(489.5) and closed["fees"] == pytest.approx(10.5)
    assert closed["exit_reason"] == "signal" and not closed["open"]
    # the open short: (108 - 102) * 48.5625 - 5.24475 = 286.13025, no exit fee
    assert still_open["open"] and still_open["exit_reason"] == "open" and pd.isna(still_open["exit_time"])
    assert still_open["pnl"] == pytest.approx(286.13025) and still_open["units"] == pytest.approx(48.5625)
    assert result.exposure == pytest.approx(3 / 5)  # bars 1, 2, 4
    assert result.buy_and_hold_return == pytest.approx(102 / 100 - 1)


def test_slippage_moves_market_fills_against_the_trader() -> None:
    t = FIVE_BARS.index
    config = BacktestConfig(position_size=1.0, commission=0.0, slippage=0.01, **NO_STOPS)
    result = backtest_positions(pd.Series([1.0, 0.0], index=[t[0], t[2]]), FIVE_BARS, config)
    trade = result.trades.iloc[0]
    assert trade["entry_price"] == pytest.approx(100 * 1.01)
    assert trade["exit_price"] == pytest.approx(110 * 0.99)
    assert trade["pnl"] == pytest.approx(10_000 / 101 * (108.9 - 101))


def test_always_long_without_fees_equals_buy_and_hold() -> None:
    bars = random_walk(300)
    config = BacktestConfig(position_size=1.0, commission=0.0, **NO_STOPS)
    result = backtest_positions(pd.Series([1.0], index=bars.index[:1]), bars, config)
    assert abs(result.total_return - result.buy_and_hold_return) < 1e-9
    assert result.n_trades == 0 and result.n_open_trades == 1


def test_always_long_with_fees_loses_exactly_the_entry_fee() -> None:
    bars = random_walk(300, seed=1)
    config = BacktestConfig(position_size=1.0, commission=0.001, **NO_STOPS)
    result = backtest_positions(pd.Series([1.0], index=bars.index[:1]), bars, config)
    # units = E / O1, fee = c * E, no exit fee (still open): E_end = E * (C_N / O1 - c)
    assert result.total_return == pytest.approx(result.buy_and_hold_return - 0.001, abs=1e-12)
    assert result.total_fees == pytest.approx(0.001 * 10_000)


def test_a_signal_at_bar_t_never_trades_at_a_price_of_bar_t_or_earlier() -> None:
    # every bar's prices live in their own band, so a fill price tells which bar it came from
    rows = [(100 + 10 * k, 104 + 10 * k, 99 + 10 * k, 101 + 10 * k) for k in range(10)]
    bars = make_bars(rows)
    t = bars.index
    result = backtest_positions(pd.Series([0.0, 1.0, 0.0], index=[t[0], t[3], t[6]]), bars,
                                BacktestConfig(**NO_STOPS))
    trade = result.trades.iloc[0]
    assert trade["entry_time"] == t[4] and trade["entry_price"] == rows[4][0]
    assert trade["exit_time"] == t[7] and trade["exit_price"] == rows[7][0]
    # a position decided at the very first bar fills at the second bar's open at the earliest
    first = backtest_positions(pd.Series([1.0], index=t[:1]), bars, BacktestConfig(**NO_STOPS))
    assert first.trades.iloc[0]["entry_time"] == t[1] and first.equity.iloc[0] == 10_000


def test_equity_up_to_bar_t_ignores_later_bars() -> None:
    bars = random_walk(120, seed=2)
    rng = np.random.default_rng(3)
    positions = pd.Series(rng.choice([-1.0, 0.0, 0.5, 1.0], len(bars)), index=bars.index)
    config = BacktestConfig(slippage=0.0005)
    base = backtest_positions(positions, bars, config)
    changed = bars.copy()
    changed.iloc[61:, :] *= 1.5  # a different future from bar 61 on
    other = backtest_positions(positions, changed, config)
    pd.testing.assert_series_equal(base.equity.iloc[:61], other.equity.iloc[:61])
    assert not np.allclose(base.equity.iloc[61:], other.equity.iloc[61:])


def test_stop_first_when_stop_and_target_are_inside_one_bar() -> None:
    bars = make_bars([(100, 100, 100, 100), (100, 105, 97, 101), (101, 102, 100, 101)])
    config = BacktestConfig(position_size=1.0, commission=0.0, stop_loss=0.02, take_profit=0.04)
    result = backtest_positions(pd.Series([1.0], index=bars.index[:1]), bars, config)
    trade = result.trades.iloc[0]
    # stop 98 and target 104 both inside [97, 105]: the stop is assumed first
    assert trade["exit_reason"] == "stop_loss" and trade["exit_price"] == pytest.approx(98.0)
    assert result.ambiguous_bars == 1
    assert result.final_equity == pytest.approx(10_000 - 100 * 2)
    # the target is unchanged after the stop: stay flat (re-entry only on a new signal)
    assert result.positions.iloc[-1] == 0.0


def test_gap_through_the_stop_fills_at_the_open() -> None:
    bars = make_bars([(100, 100, 100, 100), (100, 101, 99.5, 100), (95, 96, 94, 95)])
    config = BacktestConfig(position_size=1.0, commission=0.0, stop_loss=0.02, take_profit=0.04)
    result = backtest_positions(pd.Series([1.0], index=bars.index[:1]), bars, config)
    trade = result.trades.iloc[0]
    assert trade["exit_reason"] == "stop_loss" and trade["exit_price"] == 95.0  # not the 98 stop
    assert trade["pnl"] == pytest.approx(100 * (95 - 100)) and result.ambiguous_bars == 0


def test_a_signal_adding_at_a_gapped_open_cannot_hide_the_stop() -> None:
    # long 10 % from 100 with a 5 % stop (95); bar 2 opens at 90, through the stop, and the signal of bar 1's
    # close raises the target to 100 %: the stop fills first, at the open, then the new target enters there
    bars = make_bars([(100, 100, 100, 100), (100, 100, 100, 100), (90, 91, 89, 91), (91, 91, 91, 91)])
    config = BacktestConfig(initial_capital=1000.0, position_size=1.0, stop_loss=0.05, take_profit=0.0,
                            commission=0.0)
    for targets in ([0.1, 0.1], [0.1, 1.0]):
        result = backtest_positions(pd.Series(targets, index=bars.index[:2]), bars, config)
        first = result.trades.iloc[0]
        assert (first["entry_price"], first["exit_price"], first["exit_reason"]) == (100.0, 90.0, "stop_loss")
        assert first["pnl"] == pytest.approx(-10.0)
    # the larger target is on the side the stop just closed: no re-entry until the target's side changes
    assert len(result.trades) == 1 and result.final_equity == pytest.approx(990.0)
    reentry = backtest_positions(pd.Series([0.1, 1.0, 0.0, 1.0], index=bars.index), make_bars(
        [(100, 100, 100, 100), (100, 100, 100, 100), (90, 91, 89, 91), (91, 91, 91, 91), (92, 92, 92, 92)]), config)
    assert len(reentry.trades) == 2 and reentry.trades.iloc[1]["entry_price"] == 92.0  # after a flat target


def test_an_exit_at_the_open_leaves_the_bar_unexposed_whatever_its_reason() -> None:
    config = BacktestConfig(position_size=1.0, stop_loss=0.05, take_profit=0.0, commission=0.0)

    def run(open_2: float, targets: list[float]):  # type: ignore[no-untyped-def]
        bars = make_bars([(100, 100, 100, 100), (100, 100, 100, 100), (open_2,) * 4, (open_2,) * 4])
        return backtest_positions(pd.Series(targets, index=bars.index[:2]), bars, config)

    by_signal = run(96.0, [1.0, 0.0])  # the stop (95) holds; the signal exits at bar 2's open
    by_stop = run(90.0, [1.0, 1.0])  # bar 2 opens through the stop
    assert by_signal.trades.iloc[0]["exit_reason"] == "signal" and by_stop.trades.iloc[0]["exit_reason"] == "stop_loss"
    assert by_signal.exposure == by_stop.exposure == 0.25  # bar 1 only


def test_gap_through_the_target_fills_at_the_target() -> None:
    # the take-profit is a resting limit order: the price traded through 104 on its way to 110, filling it there
    bars = make_bars([(100, 100, 100, 100), (100, 101, 99.5, 100), (110, 111, 109, 110)])
    config = BacktestConfig(position_size=1.0, commission=0.0, slippage=0.01, stop_loss=0.5, take_profit=0.04)
    result = backtest_positions(pd.Series([1.0], index=bars.index[:1]), bars, config)
    trade = result.trades.iloc[0]
    entry = 100 * 1.01  # a market entry pays slippage; the limit exit does not
    assert trade["exit_reason"] == "take_profit" and trade["exit_price"] == pytest.approx(entry * 1.04)


def test_short_stop_lies_above_the_entry_and_target_below() -> None:
    bars = make_bars([(100, 100, 100, 100), (100, 103, 99, 101), (101, 101, 101, 101)])
    config = BacktestConfig(position_size=1.0, commission=0.0, stop_loss=0.02, take_profit=0.04)
    result = backtest_positions(pd.Series([-1.0], index=bars.index[:1]), bars, config)
    trade = result.trades.iloc[0]
    assert trade["side"] == "short" and trade["exit_reason"] == "stop_loss"
    assert trade["exit_price"] == pytest.approx(102.0) and trade["pnl"] == pytest.approx(-100 * 2)
    target_bars = make_bars([(100, 100, 100, 100), (100, 100.5, 95, 97), (97, 97, 97, 97)])
    target = backtest_positions(pd.Series([-1.0], index=bars.index[:1]), target_bars, config)
    assert target.trades.iloc[0]["exit_reason"] == "take_profit"
    assert target.trades.iloc[0]["exit_price"] == pytest.approx(96.0)


def test_reentry_only_after_the_target_changes() -> None:
    bars = make_bars([(100, 100, 100, 100), (100, 101, 97, 99)] + [(99, 99.5, 98.5, 99)] * 6)
    t = bars.index
    config = BacktestConfig(position_size=1.0, commission=0.0, stop_loss=0.02, take_profit=0.0)
    # long from bar 0, stopped in bar 1; target stays 1 until bar 4 (-> 0), back to 1 at bar 5
    result = backtest_positions(pd.Series([1.0, 0.0, 1.0], index=[t[0], t[4], t[5]]), bars, config)
    held = result.positions.to_numpy()
    assert (held[1:6] == 0).all() and held[6] > 0
    assert list(result.trades["exit_reason"]) == ["stop_loss", "open"]


@pytest.mark.parametrize(("side", "sign"), [(1.0, 1.0), (-1.0, -1.0)])
def test_funding_sign_for_long_and_short(side: float, sign: float) -> None:
    bars = make_bars([(100, 100, 100, 100), (100, 101, 99, 100), (102, 103, 101, 102), (102, 103, 101, 102)])
    t = bars.index
    config = BacktestConfig(position_size=1.0, commission=0.0, **NO_STOPS)
    positions = pd.Series([side], index=t[:1])
    # funding at bar 1's open is before the position exists (it fills at that open): nothing to pay;
    # at bar 2's open the carried 100 units pay rate * units * open = 0.0001 * 100 * 102 = 1.02 (longs pay)
    rates = pd.Series([0.0001, 0.0001], index=[t[1], t[2]])
    plain = backtest_positions(positions, bars, config)
    funded = backtest_positions(positions, bars, config, funding_rates=rates)
    assert funded.total_funding == pytest.approx(sign * 1.02)
    assert funded.final_equity == pytest.approx(plain.final_equity - sign * 1.02)
    assert funded.trades.iloc[0]["funding"] == pytest.approx(sign * 1.02)
    # a funding time inside a bar is paid at that bar's close: 0.0001 * 100 * 102 at 02:30
    inside = backtest_positions(positions, bars, config, funding_rates=pd.Series([0.0001], index=[
        t[2] + pd.Timedelta(minutes=30)]))
    assert inside.total_funding == pytest.approx(sign * 1.02)
    ignored = backtest_positions(positions, bars, BacktestConfig(position_size=1.0, commission=0.0, funding=False,
                                                                 **NO_STOPS), funding_rates=rates)
    assert ignored.total_funding == 0.0


def test_flip_sizes_the_new_leg_on_equity_after_the_exit_fee() -> None:
    t = FIVE_BARS.index
    config = BacktestConfig(position_size=0.5, commission=0.001, **NO_STOPS)
    result = backtest_positions(pd.Series([1.0, -1.0], index=[t[0], t[2]]), FIVE_BARS, config)
    # exit at bar 3 open 110: cash = 4995 + 5500 - 5.5 = 10489.5; short 0.5 * 10489.5 / 110 units
    short = result.trades.iloc[1]
    assert short["side"] == "short" and short["entry_time"] == t[3]
    assert short["units"] == pytest.approx(0.5 * 10_489.5 / 110, rel=1e-12)
    assert result.positions.iloc[3] == pytest.approx(-0.5 * 10_489.5 / 110, rel=1e-12)
    assert result.n_trades == 1 and result.trades.iloc[0]["exit_reason"] == "signal"
    # open at the end: marked at the last close, not closed
    assert result.n_open_trades == 1 and bool(short["open"])
    cash = 10_489.5 + 0.5 * 10_489.5 - 0.001 * 0.5 * 10_489.5
    assert result.final_equity == pytest.approx(cash - 0.5 * 10_489.5 / 110 * 102, rel=1e-12)


def test_no_resizing_while_the_target_is_unchanged() -> None:
    bars = random_walk(50, seed=4)
    config = BacktestConfig(position_size=0.5, **NO_STOPS)
    result = backtest_positions(pd.Series([1.0], index=bars.index[:1]), bars, config)
    held = result.positions.iloc[1:]
    assert held.nunique() == 1 and result.equity.iloc[1:].nunique() > 1
    assert result.total_fees == pytest.approx(0.00055 * 0.5 * 10_000)  # one entry at the default taker fee


def test_a_smaller_target_on_the_same_side_sells_only_the_difference() -> None:
    t = FIVE_BARS.index
    config = BacktestConfig(position_size=1.0, commission=0.0, **NO_STOPS)
    result = backtest_positions(pd.Series([1.0, 0.5], index=[t[0], t[1]]), FIVE_BARS, config)
    # 100 units at 100; at bar 2 open 105 equity 10500 -> target 0.5 * 10500 / 105 = 50 units
    assert result.positions.iloc[2] == pytest.approx(50.0)
    assert result.n_trades == 0 and result.n_open_trades == 1
    assert result.trades.iloc[0]["units"] == pytest.approx(100.0)


def test_fifty_thousand_bars_run() -> None:
    # the speed is measured by `reformer bench backtest` (benchmarks/backtest), not here
    bars = random_walk(50_000, seed=5)
    signal = np.sign(bars["close"].diff(24).fillna(0.0))
    result = backtest_positions(signal, bars, BacktestConfig())
    assert result.n_trades > 100

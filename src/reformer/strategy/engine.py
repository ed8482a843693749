"""The bar-by-bar engine: conservative fills, stops, targets, fees, slippage and funding.

Fill rules (OHLC bars carry no path, so every assumption leans against the strategy):

* Timing: the target decided at bar t's close fills at bar t+1's open. The engine trades only when the target
  changes from one bar to the next; while it stays the same the units held stay the same (no re-sizing).
* Sizing: a fill trades to `target × position_size × equity` in notional at the fill price, where equity is
  cash plus the position marked at the open. A flip (long to short or back) is an exit then an entry at the
  same open; the new leg is sized on the equity left after the exit's fee. A change of size on the same side
  buys or sells only the difference.
* Stops and targets: levels are fractions of the trade's average entry fill price. They are checked in every bar
  the position is held, the entry bar included (the entry fills at the open, before the bar's range). A gap
  through a level of the position carried into a bar fills at the open, before that open's signal fill (so a
  signal that adds to the position cannot hide a stop the open went through). When both the stop and the target
  lie inside one bar the stop is assumed first and the bar is counted in `ambiguous_bars`. After a stop or target
  exit the strategy stays flat until the target position changes (re-entry only on a new signal).
* Exposure: a bar counts as exposed when a position is held after its open's fills (an exit at the open, by
  signal or by a gap through a level, leaves the bar unexposed).
* Costs: commission on the notional of every fill; slippage moves market and stop fills against the trader;
  a take-profit is a limit order and fills at its level (or the better open) without slippage.
* Funding: a rate at a bar's open time is paid on the position carried into that bar, marked at the open,
  before that open's fills; a rate strictly inside a bar is paid on the position held at its close, marked at
  the close. Payment = rate × units × price (signed units: a positive rate costs longs and pays shorts).
* End: a position still open after the last bar is marked to the last close, not closed, and reported open.

There is no margin, leverage or liquidation model; with `position_size <= 1` a long cannot lose more than the
notional, a short can (equity may fall below zero, after which no new position is opened).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .config import BacktestConfig

__all__ = ["TRADE_COLUMNS", "Simulation", "simulate"]

TRADE_COLUMNS = ["entry_time", "exit_time", "side", "units", "entry_price", "exit_price", "pnl", "return",
                 "fees", "funding", "exit_reason", "open"]
"""Columns of the trades table; times are bar open times, prices include slippage."""


@dataclass(slots=True)
class _Trade:
    """Book-keeping of one round trip (a period with a position on one side)."""

    side: int
    entry_bar: int
    units_in: float = 0.0  # units bought (long) or sold (short) to build the position
    cost_in: float = 0.0  # notional of those fills
    units_out: float = 0.0
    value_out: float = 0.0
    peak_units: float = 0.0
    fees: float = 0.0
    funding: float = 0.0
    cash_flow: float = 0.0  # cash received minus paid by this trade's fills, fees and funding

    def entry_price(self) -> float:
        return self.cost_in / self.units_in


@dataclass
class Simulation:
    """Raw engine output, one array entry per bar."""

    equity: np.ndarray
    """Cash plus the position marked at each bar's close."""
    units: np.ndarray
    """Signed units held at each bar's close."""
    exposed: np.ndarray
    """True where a position was held during the bar (after the open's fills)."""
    trades: pd.DataFrame
    """One row per round trip, columns `TRADE_COLUMNS`."""
    total_fees: float
    total_funding: float
    """Net funding paid (positive = a cost, negative = received)."""
    ambiguous_bars: int


def simulate(bars: pd.DataFrame, targets: np.ndarray, config: BacktestConfig,
             funding_at_open: np.ndarray | None = None, funding_inside: np.ndarray | None = None) -> Simulation:
    """Run the bar loop on prepared inputs (see the module docstring for the rules).

    Args:
        bars: frame from `to_bar_frame` (UTC DatetimeIndex, float open/high/low/close).
        targets: target position in [-1, 1] decided at each bar's close, length len(bars).
        config: sizing, stops, costs; negative targets count as flat when `allow_short` is False.
        funding_at_open: summed funding rate at each bar's open time (or None).
        funding_inside: summed funding rate strictly inside each bar (or None).

    Returns:
        A `Simulation`.
    """
    n = len(bars)
    assert len(targets) == n, "targets must have one value per bar"
    opens = bars["open"].to_numpy(dtype="float64").tolist()
    highs = bars["high"].to_numpy(dtype="float64").tolist()
    lows = bars["low"].to_numpy(dtype="float64").tolist()
    closes = bars["close"].to_numpy(dtype="float64").tolist()
    target_array = np.asarray(targets, dtype="float64")
    if not config.allow_short:
        target_array = np.maximum(target_array, 0.0)
    # plain Python floats: indexing numpy arrays element by element is ~10x slower in this loop
    wanted = target_array.tolist()
    fund_open = (np.zeros(n) if funding_at_open is None else funding_at_open).tolist()
    fund_inside = (np.zeros(n) if funding_inside is None else funding_inside).tolist()

    commission, slippage, size = config.commission, config.slippage, config.position_size
    stop_frac, target_frac = config.stop_loss, config.take_profit
    cash = config.initial_capital
    units = 0.0
    trade: _Trade | None = None
    stop_level = target_level = 0.0
    applied = 0.0  # the target the position currently reflects (changes only on a new signal)
    closed: list[tuple[_Trade, int, str]] = []
    total_fees = total_funding = 0.0
    ambiguous = 0
    equity = [0.0] * n
    held = [0.0] * n
    exposed = [False] * n

    def fill(delta: float, price: float) -> None:
        nonlocal cash, units, total_fees
        assert trade is not None
        fee = commission * abs(delta) * price
        cash -= delta * price + fee
        units += delta
        total_fees += fee
        trade.fees += fee
        trade.cash_flow -= delta * price + fee
        if delta * trade.side > 0:
            trade.units_in += abs(delta)
            trade.cost_in += abs(delta) * price
            if abs(units) > trade.peak_units:
                trade.peak_units = abs(units)
        else:
            trade.units_out += abs(delta)
            trade.value_out += abs(delta) * price

    def set_levels() -> None:
        nonlocal stop_level, target_level
        assert trade is not None
        entry, side = trade.entry_price(), trade.side
        stop_level = entry * (1 - side * stop_frac) if stop_frac > 0 else -side * np.inf
        target_level = entry * (1 + side * target_frac) if target_frac > 0 else side * np.inf

    def close_all(price: float, bar: int, reason: str) -> None:
        nonlocal trade, units
        assert trade is not None
        fill(-units, price)
        units = 0.0  # exact zero, not a rounding residue
        closed.append((trade, bar, reason))
        trade = None

    for i in range(n):
        price_open = opens[i]
        if units != 0.0 and fund_open[i] != 0.0:
            assert trade is not None
            payment = fund_open[i] * units * price_open
            cash -= payment
            total_funding += payment
            trade.funding += payment
            trade.cash_flow -= payment

        if units != 0.0:  # the position carried into the bar: a gap through its levels fills first, at the open
            long = units > 0
            side = 1 if long else -1
            if (price_open <= stop_level) if long else (price_open >= stop_level):
                close_all(price_open * (1 - side * slippage), i, "stop_loss")
            elif (price_open >= target_level) if long else (price_open <= target_level):
                close_all(price_open, i, "take_profit")

        desired = wanted[i - 1] if i > 0 else 0.0
        if desired != applied:
            applied = desired
            if units != 0.0 and (desired == 0.0 or (desired > 0) != (units > 0)):
                side = 1 if units > 0 else -1
                close_all(price_open * (1 - side * slippage), i, "signal")
            equity_now = cash + units * price_open
            if desired != 0.0 and equity_now > 0:
                notional = desired * size * equity_now
                direction = 1 if notional / price_open > units else -1
                price = price_open * (1 + direction * slippage)
                if trade is None:
                    trade = _Trade(side=1 if desired > 0 else -1, entry_bar=i)
                fill(notional / price - units, price)
                set_levels()

        if units != 0.0:  # held through the bar (levels of a fill at this open lie beyond the open)
            exposed[i] = True
            long = units > 0
            side = 1 if long else -1
            hit_stop = (lows[i] <= stop_level) if long else (highs[i] >= stop_level)
            hit_target = (highs[i] >= target_level) if long else (lows[i] <= target_level)
            if hit_stop:
                ambiguous += hit_target  # both inside the bar: pessimistically, the stop came first
                close_all(stop_level * (1 - side * slippage), i, "stop_loss")
            elif hit_target:
                close_all(target_level, i, "take_profit")

        if units != 0.0 and fund_inside[i] != 0.0:
            assert trade is not None
            payment = fund_inside[i] * units * closes[i]
            cash -= payment
            total_funding += payment
            trade.funding += payment
            trade.cash_flow -= payment
        equity[i] = cash + units * closes[i]
        held[i] = units

    trades = _trade_table(bars.index, closed, trade, units, closes[-1])
    return Simulation(equity=np.asarray(equity), units=np.asarray(held), exposed=np.asarray(exposed),
                      trades=trades, total_fees=total_fees, total_funding=total_funding, ambiguous_bars=ambiguous)


def _trade_table(times: pd.DatetimeIndex, closed: list[tuple[_Trade, int, str]], open_trade: _Trade | None,
                 open_units: float, last_close: float) -> pd.DataFrame:
    records = [(trade, exit_bar, reason, trade.cash_flow, trade.value_out / trade.units_out, False)
               for trade, exit_bar, reason in closed]
    if open_trade is not None:
        # marked to market, not closed: no exit fee, no exit time, the last close as its price
        records.append((open_trade, -1, "open", open_trade.cash_flow + open_units * last_close, last_close, True))
    trades = [record[0] for record in records]
    exit_bars = np.array([record[1] for record in records], dtype="int64")
    pnl = np.array([record[3] for record in records], dtype="float64")
    cost = np.array([trade.cost_in for trade in trades], dtype="float64")
    # index the times once with arrays: per-row Timestamp boxing dominates otherwise
    exit_times = pd.Series(times[np.maximum(exit_bars, 0)]).where(exit_bars >= 0, pd.NaT)
    table = pd.DataFrame({
        "entry_time": times[np.array([trade.entry_bar for trade in trades], dtype="int64")],
        "exit_time": exit_times.to_numpy(),
        "side": ["long" if trade.side > 0 else "short" for trade in trades],
        "units": [trade.peak_units for trade in trades],
        "entry_price": [trade.entry_price() for trade in trades],
        "exit_price": [record[4] for record in records],
        "pnl": pnl,
        "return": pnl / cost if len(records) else pnl,
        "fees": [trade.fees for trade in trades],
        "funding": [trade.funding for trade in trades],
        "exit_reason": [record[2] for record in records],
        "open": np.array([record[5] for record in records], dtype=bool),
    }, columns=TRADE_COLUMNS)
    table["entry_time"] = pd.to_datetime(table["entry_time"], utc=True)
    table["exit_time"] = pd.to_datetime(table["exit_time"], utc=True)
    table["units"] = table["units"].astype("float64")
    return table

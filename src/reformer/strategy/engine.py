"""The bar-by-bar engine: conservative fills, margin and liquidation, stops, targets, fees, funding, portfolios.

Fill rules (OHLC bars carry no path, so every assumption leans against the strategy):

* Timing: the target decided at bar t's close fills at bar t+1's open. The engine trades only when the target
  changes from one bar to the next; while it stays the same the units held stay the same (no re-sizing).
* Sizing: a fill trades to `target × position_size × equity` in notional at the fill price, where equity is
  cash plus every position marked at its latest price (this bar's open). A flip (long to short or back) is an
  exit then an entry at the same open; the new leg is sized on the equity left after the exit's fee. A new target
  on the same side is traded only when it moves the notional by more than `rebalance_band` of it, and then buys
  or sells the difference. Quantities round down to the instrument's step; an order that rounds below its
  minimum is not placed and is counted (`n_skipped_orders`).
* Margin: isolated, one position per symbol: initial margin = notional / `leverage`. The liquidation level
  (`reformer.strategy.book`) is checked first, at the open and then inside every bar the position is held,
  against the mark price's range when mark candles are given (else the last price's). A liquidation closes the
  position and loses exactly its initial margin, even through a gap.
* Stops and targets: levels are fractions of the trade's average entry price, checked in every bar the position
  is held, the entry bar included (the entry fills at the open, before the bar's range). A gap through the stop
  fills at the open; through the target, at the target. When both lie inside one bar the stop is assumed first
  and the bar is counted in `ambiguous_bars`. The take-profit is a resting limit order: it fills only when the
  price trades through it (touching is not enough), at its level, and pays the maker fee. After a stop, target
  or liquidation exit there is no re-entry until the target's side changes.
* Costs: the taker fee on every market fill (entries, signal exits, stops, liquidations), the maker fee on
  take-profits; slippage moves market and stop fills against the trader; prices round to the tick against him.
* Funding (linear and inverse): a rate at a bar's open time is paid on the position carried into that bar at the
  open's mark price, before that open's fills; a rate strictly inside a bar on the position held at its close,
  at the close's mark. Payment = rate × notional, a positive rate costing longs. Spot shorts pay `borrow_rate`
  per year of the borrowed value instead, bar by bar.
* Portfolio: every symbol trades from one equity, positions are decided and sized per symbol, and the gross
  notional of all positions stays within `leverage × equity` (an order that would pass it is cut to fit).
  Symbols' bars are merged on time; at one time, all opens come first, then all ranges, then all closes.
* End: a position still open after the last bar is marked to the last close, not closed, and reported open;
  the fee its exit would pay is reported beside it.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from .book import Account, Book, Trade
from .config import DEFAULT_MAINTENANCE_MARGIN_RATE, BacktestConfig
from .instrument import Instrument

__all__ = ["TRADE_COLUMNS", "BarValues", "Engine", "Market", "Run", "Simulation", "simulate", "simulate_markets",
           "trade_table"]

TRADE_COLUMNS = ["symbol", "entry_time", "exit_time", "side", "units", "entry_price", "exit_price", "pnl", "return",
                 "fees", "funding", "exit_reason", "open"]
"""Columns of the trades table; times are bar open times, prices include slippage; units are contracts for an
inverse contract; pnl, fees and funding are in the settle currency."""


@dataclass(frozen=True)
class Market:
    """One symbol's prepared inputs, one entry per bar."""

    bars: pd.DataFrame
    """From `to_bar_frame`: UTC DatetimeIndex, float open/high/low/close."""
    targets: np.ndarray
    """Target position in [-1, 1] decided at each bar's close."""
    funding_at_open: np.ndarray | None = None
    """Summed funding rate at each bar's open time."""
    funding_inside: np.ndarray | None = None
    """Summed funding rate strictly inside each bar."""
    mark: pd.DataFrame | None = None
    """Mark-price open/high/low/close on the same bars (None: the last price stands in)."""
    instrument: Instrument = dataclasses.field(default_factory=Instrument)


@dataclass
class Simulation:
    """Raw engine output for one symbol, one array entry per bar."""

    equity: np.ndarray
    """Cash plus every position marked at each bar's close (the account's, for a portfolio)."""
    units: np.ndarray
    """Signed units held at each bar's close (contracts for inverse; negative = short)."""
    exposed: np.ndarray
    """True where a position was held during the bar (after the open's fills)."""
    trades: pd.DataFrame
    """One row per round trip, columns `TRADE_COLUMNS`."""
    total_fees: float
    total_funding: float
    """Net funding paid (positive = a cost, negative = received); spot: borrow interest."""
    ambiguous_bars: int
    n_liquidations: int = 0
    n_skipped_orders: int = 0
    n_orders: int = 0
    """Fills: entries, rebalances, exits, liquidations."""
    exit_fee: float = 0.0
    """The taker fee closing the open position at the last close would cost (0 when flat)."""


@dataclass
class Run:
    """One account's run over several markets."""

    times: pd.DatetimeIndex
    """Every bar time of any market, merged."""
    equity: np.ndarray
    """The account's equity after each merged time's closes."""
    markets: list[Simulation]
    """Per market, in the order given."""


def simulate(bars: pd.DataFrame, targets: np.ndarray, config: BacktestConfig,
             funding_at_open: np.ndarray | None = None, funding_inside: np.ndarray | None = None, *,
             mark: pd.DataFrame | None = None, instrument: Instrument | None = None) -> Simulation:
    """Run the bar loop for one symbol (see the module docstring for the rules).

    Args:
        bars: frame from `to_bar_frame` (UTC DatetimeIndex, float open/high/low/close).
        targets: target position in [-1, 1] decided at each bar's close, length len(bars).
        config: sizing, margin, stops, costs; negative targets count as flat unless shorts are allowed.
        funding_at_open, funding_inside: summed funding rates at each bar's open / strictly inside it (or None).
        mark: mark-price candles on the same bars (or None).
        instrument: tick, quantity step, minimum order, maintenance margin (or None: no rounding).
    """
    market = Market(bars, np.asarray(targets, dtype="float64"), funding_at_open, funding_inside, mark,
                    instrument or Instrument())
    return simulate_markets([market], config).markets[0]


def simulate_markets(markets: list[Market], config: BacktestConfig) -> Run:
    """Run the bar loop for one account trading every market (see the module docstring for the rules)."""
    engine = Engine(config, [market.instrument for market in markets], _bar_years(markets[0].bars.index))
    feeds = [_Feed(market, config) for market in markets]
    rows = [feed.rows() for feed in feeds]
    records = [(np.zeros(len(m.bars)), np.zeros(len(m.bars)), np.zeros(len(m.bars), dtype=bool)) for m in markets]
    steps = _merged_steps([m.bars.index for m in markets])
    merged = np.zeros(len(steps))
    for step, group in enumerate(steps):
        exposed = engine.step([(k, i, rows[k][i]) for k, i in group])
        equity = engine.account.equity()
        merged[step] = equity
        for (k, i), held in zip(group, exposed, strict=True):
            records[k][0][i] = equity
            records[k][1][i] = engine.books[k].d * engine.books[k].u
            records[k][2][i] = held
    out = []
    for market, feed, book, (equity_k, units_k, exposed_k) in zip(markets, feeds, engine.books, records, strict=True):
        trades = trade_table(book, market.instrument.symbol, feed.closes[-1], market.bars.index.__getitem__)
        out.append(Simulation(equity=equity_k, units=units_k, exposed=exposed_k, trades=trades,
                              total_fees=book.fees, total_funding=book.funding, ambiguous_bars=book.ambiguous,
                              n_liquidations=book.liquidations, n_skipped_orders=book.skipped, n_orders=book.orders,
                              exit_fee=engine.taker * abs(book.u) * book.last_x))
    times = markets[0].bars.index if len(markets) == 1 else pd.DatetimeIndex(
        [markets[group[0][0]].bars.index[group[0][1]] for group in steps])
    return Run(times, merged, out)


class BarValues(NamedTuple):
    """One market's bar as the engine steps it: prices in value space (`reformer.strategy.book`)."""

    open: float
    """The open, in price space (fills compute slippage and ticks there)."""
    x_open: float
    x_high: float
    x_low: float
    x_close: float
    mark_open: float
    mark_high: float
    mark_low: float
    mark_close: float
    funding_open: float
    """Summed funding rate settled at the bar's open."""
    funding_inside: float
    """Summed funding rate settled strictly inside the bar."""
    desired: float
    """The target decided at the previous bar's close (0 before the first)."""


class Engine:
    """One account and its books, stepped one merged time at a time: the backtest runs it over whole series, the
    paper trader one closed candle at a time, so both fill with the same code. `snapshot()` and `restore()` carry
    its whole state through JSON exactly (floats round-trip), so a restarted trader continues as if never stopped.
    """

    def __init__(self, config: BacktestConfig, instruments: list[Instrument], bar_years: float) -> None:
        self.config = config
        self.account = Account(config.initial_capital)
        self.taker, maker = config.fees
        self.cap = config.leverage if len(instruments) > 1 else None
        self.borrow = config.borrow_rate * bar_years if config.category == "spot" and config.shorts else 0.0
        self.books: list[Book] = []
        for instrument in instruments:
            mmr = config.maintenance_margin_rate
            if mmr is None:
                mmr = instrument.maintenance_margin_rate
            self.books.append(Book(self.account, inverse=config.category == "inverse",
                                   spot=config.category == "spot", size=config.position_size,
                                   leverage=config.leverage, mmr=DEFAULT_MAINTENANCE_MARGIN_RATE if mmr is None
                                   else mmr, taker=self.taker, maker=maker, slippage=config.slippage,
                                   stop=config.stop_loss, target=config.take_profit, band=config.rebalance_band,
                                   instrument=instrument))

    def values(self, open_: float, high: float, low: float, close: float, mark: tuple[float, float, float, float],
               funding_open: float, funding_inside: float, desired: float) -> BarValues:
        """A bar in price space as `step` takes it (the same conversion `simulate_markets` applies)."""
        prices = {"open": np.array([open_]), "high": np.array([high]), "low": np.array([low]),
                  "close": np.array([close])}
        marks = dict(zip(("open", "high", "low", "close"), (np.array([m]) for m in mark), strict=True))
        inverse = self.config.category == "inverse"
        xo, xh, xl, xc = (v[0] for v in _value_space(prices, inverse))
        mo, mh, ml, mc = (v[0] for v in _value_space(marks, inverse))
        if not self.config.shorts:
            desired = max(desired, 0.0)
        perpetual = self.config.category != "spot" and self.config.funding
        return BarValues(open_, xo, xh, xl, xc, mo, mh, ml, mc, funding_open if perpetual else 0.0,
                         funding_inside if perpetual else 0.0, desired)

    def step(self, entries: list[tuple[int, int, BarValues]]) -> list[bool]:
        """One merged time: (market, bar number, values) for each market with a bar at it. All opens come first,
        then all ranges, then all closes. Returns, per entry, whether a position was held during the bar."""
        books = self.books
        for k, bar, v in entries:
            books[k].at_open(bar, v[0], v[1], v[5], v[9], v[11], self.cap)
        exposed = [books[k].in_bar(bar, v[2], v[3], v[6], v[7]) for k, bar, v in entries]
        for k, _, v in entries:
            books[k].at_close(v[4], v[8], v[10], self.borrow)
        return exposed

    def snapshot(self) -> dict[str, Any]:
        """The whole state as JSON-ready values (closed trades not yet drained included)."""
        return {"cash": self.account.cash, "books": [book.snapshot() for book in self.books]}

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Continue from `snapshot()`'s output."""
        self.account.cash = float(snapshot["cash"])
        for book, state in zip(self.books, snapshot["books"], strict=True):
            book.restore(state)


class _Feed:
    """A market's bars as plain Python lists in value space (indexing numpy arrays element by element is ~10x
    slower in the loop), with the targets shifted to the bar they fill at."""

    def __init__(self, market: Market, config: BacktestConfig) -> None:
        n = len(market.bars)
        assert len(market.targets) == n, "targets must have one value per bar"
        inverse = config.category == "inverse"
        prices = {c: market.bars[c].to_numpy(dtype="float64") for c in ("open", "high", "low", "close")}
        mark = prices if market.mark is None else {c: market.mark[c].to_numpy(dtype="float64")
                                                   for c in ("open", "high", "low", "close")}
        self.opens, self.closes = prices["open"].tolist(), prices["close"].tolist()
        self.xo, self.xh, self.xl, self.xc = _value_space(prices, inverse)
        self.mo, self.mh, self.ml, self.mc = _value_space(mark, inverse)
        wanted = np.asarray(market.targets, dtype="float64")
        if not config.shorts:
            wanted = np.maximum(wanted, 0.0)
        self.desired = [0.0, *wanted[:-1].tolist()]  # decided at the previous close
        perpetual = config.category != "spot" and config.funding
        zeros = [0.0] * n
        self.fund_open = market.funding_at_open.tolist() if perpetual and market.funding_at_open is not None \
            else zeros
        self.fund_inside = market.funding_inside.tolist() if perpetual and market.funding_inside is not None \
            else zeros

    def rows(self) -> list[BarValues]:
        """Every bar's `BarValues`, as plain tuples: building a named tuple per bar costs a third of the loop."""
        rows = zip(self.opens, self.xo, self.xh, self.xl, self.xc, self.mo, self.mh, self.ml, self.mc, self.fund_open,
                   self.fund_inside, self.desired, strict=True)
        return list(rows)  # type: ignore[arg-type]


def _value_space(ohlc: dict[str, np.ndarray], inverse: bool) -> tuple[list[float], ...]:
    """(open, high, low, close) in value space: as they are, or 1/P with high and low swapped."""
    if not inverse:
        return tuple(ohlc[c].tolist() for c in ("open", "high", "low", "close"))
    return tuple((1.0 / ohlc[c]).tolist() for c in ("open", "low", "high", "close"))


def _bar_years(index: pd.DatetimeIndex) -> float:
    if len(index) < 2:
        return 0.0
    return float(pd.Series(index).diff().median() / pd.Timedelta(days=365))


def _merged_steps(indexes: list[pd.DatetimeIndex]) -> list[list[tuple[int, int]]]:
    """For each distinct bar time across the markets, in time order: the (market, bar) pairs open at it."""
    if len(indexes) == 1:
        return [[(0, i)] for i in range(len(indexes[0]))]
    stamps = np.concatenate([index.asi8 for index in indexes])
    which = np.concatenate([np.full(len(index), k) for k, index in enumerate(indexes)])
    bar = np.concatenate([np.arange(len(index)) for index in indexes])
    order = np.lexsort((which, stamps))
    stamps, which, bar = stamps[order], which[order], bar[order]
    starts = np.flatnonzero(np.r_[True, stamps[1:] != stamps[:-1]])
    pairs = list(zip(which.tolist(), bar.tolist(), strict=True))
    bounds = [*starts.tolist(), len(pairs)]
    return [pairs[a:b] for a, b in itertools.pairwise(bounds)]


def trade_table(book: Book, symbol: str, last_close: float,
                time_of: Callable[[np.ndarray], pd.DatetimeIndex]) -> pd.DataFrame:
    """The book's round trips (closed, then the open one marked to `last_close`) as `TRADE_COLUMNS`; `time_of`
    turns the engine's bar numbers into bar open times."""

    def price(x: float) -> float:
        return 1.0 / x if book.d < 0 else x

    records: list[tuple[Trade, int, str, float, float, bool]] = [
        (trade, exit_bar, reason, trade.cash_flow, price(trade.value_out / trade.units_out), False)
        for trade, exit_bar, reason in book.closed]
    if book.trade is not None:
        # marked to market, not closed: no exit fee, no exit time, the last close as its price
        records.append((book.trade, -1, "open", book.trade.cash_flow + book.u * book.last_x, last_close, True))
    trades = [record[0] for record in records]
    exit_bars = np.array([record[1] for record in records], dtype="int64")
    pnl = np.array([record[3] for record in records], dtype="float64")
    cost = np.array([trade.cost_in for trade in trades], dtype="float64")
    # index the times once with arrays: per-row Timestamp boxing dominates otherwise
    exit_times = pd.Series(time_of(np.maximum(exit_bars, 0))).where(exit_bars >= 0, pd.NaT)
    table = pd.DataFrame({
        "symbol": [symbol] * len(records),
        "entry_time": time_of(np.array([trade.entry_bar for trade in trades], dtype="int64")),
        "exit_time": exit_times.to_numpy(),
        "side": ["long" if book.d * trade.side > 0 else "short" for trade in trades],
        "units": [trade.peak_units for trade in trades],
        "entry_price": [price(trade.entry_x()) for trade in trades],
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

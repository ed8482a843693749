"""A portfolio: several symbols traded from one equity, bar by bar, by the same engine as a single backtest.

    legs = {"BTCUSDT": Leg(btc_bars, positions=btc_targets), "ETHUSDT": Leg(eth_bars, predictions=eth_preds)}
    report = backtest_portfolio(legs, BacktestConfig(leverage=3, position_size=1))
    report.result.summary(); report.symbols["ETHUSDT"].pnl

Each symbol's position is decided from its own targets and sized from the shared equity; the gross notional of
all positions stays within `leverage × equity` (`reformer.strategy.engine`). With one symbol the result is the
single backtest's, to the last digit. Symbols must settle in one currency: linear perpetuals or spot (USDT), or one
inverse contract (its coin).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..errors import UserInputError
from .backtest import resolve_predictions
from .bars import align_mark, align_positions, funding_per_bar, to_bar_frame, to_bar_times
from .config import BacktestConfig
from .engine import Market, Simulation, simulate_markets
from .instrument import Instrument
from .signals import realized_volatility, signals_from_predictions
from .stats import BacktestResult, compute_result

__all__ = ["Leg", "PortfolioResult", "SymbolResult", "backtest_portfolio"]


@dataclass(frozen=True)
class Leg:
    """One symbol of a portfolio: its candles and what to trade on them (`positions` or `predictions`)."""

    klines: Any
    """Candles: a DataFrame (timestamp in epoch ms or DatetimeIndex; open/high/low/close) or a list of `Kline`."""
    positions: pd.Series | None = None
    """Target positions in [-1, 1] by bar time (sparse rows hold), as `backtest_positions` takes them."""
    predictions: Any = None
    """Or predictions, as `run_backtest` takes them (thresholds and volatility scaling of the config apply)."""
    funding_rates: pd.Series | None = None
    mark: Any = None
    """Mark-price candles on the same bars (None: the last price)."""
    instrument: Instrument | None = None


@dataclass(frozen=True)
class SymbolResult:
    """One symbol's share of a portfolio's result (money in the settle currency)."""

    symbol: str
    pnl: float
    """Closed trades' profit after fees and funding, plus the open position marked to the last close."""
    contribution: float
    """pnl / initial capital."""
    n_trades: int
    """Closed round trips."""
    win_rate: float
    total_fees: float
    total_funding: float
    n_liquidations: int
    n_skipped_orders: int
    exposure: float
    """Fraction of the symbol's bars with a position held."""
    trades: pd.DataFrame = dataclasses.field(repr=False)
    positions: pd.Series = dataclasses.field(repr=False)
    """Signed units held at each of the symbol's bar closes."""


@dataclass(frozen=True)
class PortfolioResult:
    """The account's result (statistics of the one equity; `positions` is its gross notional over equity, and
    `buy_and_hold_return` the mean of the symbols' own) and each symbol's share."""

    result: BacktestResult
    symbols: dict[str, SymbolResult]


def backtest_portfolio(legs: Mapping[str, Leg], config: BacktestConfig | None = None) -> PortfolioResult:
    """Backtest several symbols on one equity.

    Raises:
        UserInputError: no legs, a leg with both or neither of positions and predictions, bad inputs (named by
            symbol), or more than one inverse contract (they settle in different coins).
    """
    config = config or BacktestConfig()
    if not legs:
        raise UserInputError("a portfolio needs at least one symbol: pass {symbol: Leg(klines, positions=...)}")
    if config.category == "inverse" and len(legs) > 1:
        raise UserInputError(f"{len(legs)} inverse contracts settle in {len(legs)} different coins: backtest each "
                             "on its own, or use linear (USDT) contracts for a portfolio")
    markets, frames = [], []
    for symbol, leg in legs.items():
        bars = _named(symbol, to_bar_frame, leg.klines)
        targets = _named(symbol, _targets, leg, bars, config)
        at_open, inside = _named(symbol, funding_per_bar, leg.funding_rates if config.funding else None, bars.index)
        mark = _named(symbol, align_mark, leg.mark, bars)
        instrument = dataclasses.replace(leg.instrument or Instrument(), symbol=symbol)
        markets.append(Market(bars, targets, at_open, inside, mark, instrument))
        frames.append(bars)
    run = simulate_markets(markets, config)
    if len(markets) == 1:
        result = compute_result(run.markets[0], frames[0], config)
    else:
        result = _account_result(run.times, run.equity, run.markets, frames, config)
    symbols = {symbol: _symbol_result(symbol, sim, bars, config)
               for symbol, sim, bars in zip(legs, run.markets, frames, strict=True)}
    return PortfolioResult(result, symbols)


def _named(symbol: str, step: Any, *args: Any) -> Any:
    """`step(*args)`, its one-line input error prefixed with the symbol it is about."""
    try:
        return step(*args)
    except UserInputError as exc:
        raise type(exc)(f"{symbol}: {exc}") from None


def _targets(leg: Leg, bars: pd.DataFrame, config: BacktestConfig) -> np.ndarray:
    if (leg.positions is None) == (leg.predictions is None):
        raise UserInputError("give a Leg exactly one of positions= and predictions=")
    if leg.positions is not None:
        return align_positions(leg.positions, bars.index)
    raw = resolve_predictions(leg.predictions, bars)
    raw = raw.set_axis(to_bar_times(raw.index, "predictions"))
    volatility = realized_volatility(bars["close"], config.vol_window) if config.vol_target is not None else None
    positions = signals_from_predictions(raw, config, volatility)
    return align_positions(positions, bars.index, what="predictions")


def _account_result(times: pd.DatetimeIndex, equity: np.ndarray, sims: list[Simulation],
                    frames: list[pd.DataFrame], config: BacktestConfig) -> BacktestResult:
    """The portfolio's statistics: those of a single backtest computed on the account's equity."""
    gross = np.zeros(len(times))
    exposed = np.zeros(len(times), dtype=bool)
    for sim, bars in zip(sims, frames, strict=True):
        at = times.get_indexer(bars.index)
        # each symbol's notional and exposure hold from its bar until its next one
        notional = pd.Series(np.nan, index=times)
        notional.iloc[at] = np.abs(sim.units) * bars["close"].to_numpy()
        gross += notional.ffill().fillna(0.0).to_numpy()
        flags = pd.Series(np.nan, index=times)
        flags.iloc[at] = sim.exposed.astype(float)
        exposed |= flags.ffill().fillna(0.0).to_numpy() > 0
    trades = pd.concat([sim.trades for sim in sims], ignore_index=True).sort_values(
        ["entry_time", "symbol"], kind="stable", ignore_index=True)
    merged = Simulation(equity=equity, units=np.divide(gross, equity, out=np.zeros_like(gross), where=equity > 0),
                        exposed=exposed, trades=trades, total_fees=sum(s.total_fees for s in sims),
                        total_funding=sum(s.total_funding for s in sims),
                        ambiguous_bars=sum(s.ambiguous_bars for s in sims),
                        n_liquidations=sum(s.n_liquidations for s in sims),
                        n_skipped_orders=sum(s.n_skipped_orders for s in sims), n_orders=sum(s.n_orders for s in sims),
                        exit_fee=sum(s.exit_fee for s in sims))
    flat = pd.DataFrame({"open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0}, index=times)
    result = compute_result(merged, flat, config)
    holds = [float(bars["close"].iloc[-1] / bars["open"].iloc[1] - 1.0) for bars in frames]
    return dataclasses.replace(result, buy_and_hold_return=float(np.mean(holds)))


def _symbol_result(symbol: str, sim: Simulation, bars: pd.DataFrame, config: BacktestConfig) -> SymbolResult:
    closed = sim.trades[~sim.trades["open"]]
    pnl = float(sim.trades["pnl"].sum())
    return SymbolResult(symbol=symbol, pnl=pnl, contribution=pnl / config.initial_capital, n_trades=len(closed),
                        win_rate=float((closed["pnl"] > 0).mean()) if len(closed) else float("nan"),
                        total_fees=sim.total_fees, total_funding=sim.total_funding,
                        n_liquidations=sim.n_liquidations, n_skipped_orders=sim.n_skipped_orders,
                        exposure=float(sim.exposed.mean()), trades=sim.trades,
                        positions=pd.Series(sim.units, index=bars.index, name="units"))

"""`reformer bench backtest`: how fast the bar-by-bar engine simulates, alone and as a ten-symbol portfolio.

Every run trades a 24-bar momentum sign on a seeded random walk of hourly bars with what a perpetual backtest
uses: 3x leverage, stops and targets, taker and maker fees, 8-hourly funding on mark candles, tick and lot
rounding. Reported per case: the median wall time over the repeats and bars per second, and beside it the
time of a vectorised reference in the same process (the same positions' equity from numpy: no fills, fees or
levels), so the ratio says what the engine's per-bar bookkeeping costs on this machine. The project's targets
are 50,000 bars of one symbol under 1 s and a ten-symbol portfolio of 50,000 bars each under 10 s.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np
import pandas as pd

from ..strategy import BacktestConfig, Instrument, Leg, backtest_portfolio, backtest_positions

__all__ = ["PORTFOLIO_TARGET_S", "SINGLE_TARGET_S", "run_backtest_bench"]

SINGLE_TARGET_S = 1.0
PORTFOLIO_TARGET_S = 10.0
CONFIG = BacktestConfig(position_size=2.0, leverage=3, stop_loss=0.03, take_profit=0.06, slippage=0.0002)
RULES = Instrument(tick_size=0.1, qty_step=0.001, min_qty=0.001)


def market(n: int, seed: int) -> Leg:
    """A random walk of `n` hourly bars with a 24-bar momentum target, 8-hourly funding and mark candles."""
    rng = np.random.default_rng(seed)
    close = 30_000 * np.exp(np.cumsum(rng.normal(0, 0.006, n)))
    open_ = np.r_[30_000.0, close[:-1]]
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.004, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.004, n))
    times = pd.date_range(pd.Timestamp(2020, 1, 1, tz="UTC"), periods=n, freq="h")
    bars = pd.DataFrame({"open": open_, "high": high, "low": low, "close": close}, index=times)
    mark = bars * (1 + rng.normal(0, 0.0002, (n, 1)))
    mark["high"] = mark[["open", "high", "close"]].max(axis=1)
    mark["low"] = mark[["open", "low", "close"]].min(axis=1)
    funding = pd.Series(rng.normal(0.0001, 0.0001, len(times[::8])), index=times[::8])
    targets = np.sign(bars["close"].diff(24).fillna(0.0))
    return Leg(bars, positions=targets, funding_rates=funding, mark=mark, instrument=RULES)


def _vectorised(leg: Leg) -> float:
    """The reference: equity of the same targets held close to close, in numpy."""
    closes = leg.klines["close"].to_numpy()
    held = np.r_[0.0, np.asarray(leg.positions, dtype="float64")[:-1]]
    returns = np.r_[0.0, np.diff(closes) / closes[:-1]]
    return float(np.cumprod(1.0 + CONFIG.position_size * held * returns)[-1])


def _timed(call: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def run_backtest_bench(bars: int = 50_000, symbols: int = 10, repeats: int = 3) -> dict[str, Any]:
    """Time one symbol and a `symbols`-symbol portfolio of `bars` bars each; see the module docstring."""
    legs = {f"SYM{k}": market(bars, seed=k) for k in range(symbols)}
    first = legs["SYM0"]
    single = _timed(lambda: backtest_positions(first.positions, first.klines, CONFIG,
                                               funding_rates=first.funding_rates, mark=first.mark,
                                               instrument=first.instrument), repeats)
    portfolio = _timed(lambda: backtest_portfolio(legs, CONFIG), repeats)
    reference = _timed(lambda: [_vectorised(leg) for leg in legs.values()], repeats)
    result = backtest_portfolio(legs, CONFIG).result
    return {
        "bars": bars, "symbols": symbols, "repeats": repeats,
        "single_s": single, "single_bars_per_s": bars / single, "single_target_s": SINGLE_TARGET_S,
        "portfolio_s": portfolio, "portfolio_bars_per_s": bars * symbols / portfolio,
        "portfolio_target_s": PORTFOLIO_TARGET_S,
        "vectorised_reference_s": reference, "portfolio_over_reference": portfolio / reference,
        "portfolio_trades": result.n_trades, "portfolio_liquidations": result.n_liquidations,
    }

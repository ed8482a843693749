"""Performance statistics and the `BacktestResult` they are reported in.

Conventions: per-bar simple returns r_t = E_t / E_{t-1} - 1 of the equity
marked at each close, where E_0 (the first bar's close, always flat) equals the initial capital; P periods per
year from the bar spacing on a 24/7 calendar of 365 days (8,760 for 1 h bars, 365 for 1 d), never 252; risk-free
rate 0. All ratios are fractions; drawdowns are positive (0.21 = 21 %). An undefined ratio x/0 is +inf for
x > 0 (e.g. a profit factor with no losing trade) and NaN when nothing is defined (e.g. win rate of no trades);
`to_dict` writes both as null.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .bars import bar_spacing
from .config import BacktestConfig
from .engine import Simulation

__all__ = ["BacktestResult", "annualized_return", "compute_result", "drawdown_series", "max_drawdown",
           "max_drawdown_duration", "periods_per_year", "ratio", "sharpe_ratio", "simple_returns", "sortino_ratio"]

_YEAR = pd.Timedelta(days=365)


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, with x/0 = ±inf for x != 0 and 0/0 = 0 (nothing happened, nothing earned)."""
    if math.isnan(numerator) or math.isnan(denominator):
        return math.nan
    if denominator == 0:
        return 0.0 if numerator == 0 else math.copysign(math.inf, numerator)
    return numerator / denominator


def periods_per_year(index: pd.DatetimeIndex) -> float:
    """Bars per 365-day year from the median bar spacing (8760.0 for hourly bars, 365.0 for daily)."""
    return float(_YEAR / bar_spacing(index))


def simple_returns(equity: pd.Series) -> pd.Series:
    """Per-bar simple returns E_t / E_{t-1} - 1 (one fewer than the equity points)."""
    return equity.pct_change().iloc[1:]


def annualized_return(total_return: float, n_periods: int, periods: float) -> float:
    """CAGR: (1 + total_return) ** (periods / n_periods) - 1, with years = n_periods / periods; -1 if ruined, inf
    past float range (a 5 % gain over two 1-minute bars compounds to ~1e22000 a year)."""
    if n_periods <= 0:
        return math.nan
    growth = 1.0 + total_return
    if growth <= 0:
        return -1.0
    exponent = math.log(growth) * periods / n_periods  # as a log: a few minute bars compound past 1e308
    return math.inf if exponent > 709.0 else math.expm1(exponent)


def sharpe_ratio(returns: pd.Series, periods: float) -> float:
    """mean(r) / std(r, ddof=1) · √P (risk-free 0); 0 for a flat series."""
    values = returns.to_numpy(dtype="float64")
    if values.size < 2:
        return math.nan
    return ratio(float(values.mean()), float(values.std(ddof=1))) * math.sqrt(periods)


def sortino_ratio(returns: pd.Series, periods: float) -> float:
    """mean(r) · P / (√mean(min(r, 0)²) · √P): the downside deviation averages over all N returns (MAR 0)."""
    values = returns.to_numpy(dtype="float64")
    if values.size < 1:
        return math.nan
    downside = math.sqrt(float(np.mean(np.minimum(values, 0.0) ** 2)))
    return ratio(float(values.mean()) * periods, downside * math.sqrt(periods))


def drawdown_series(equity: pd.Series) -> pd.Series:
    """1 - E_t / max_{s<=t} E_s, positive fractions (0 at a new high)."""
    return 1.0 - equity / equity.cummax()


def max_drawdown(equity: pd.Series) -> float:
    """The largest peak-to-trough loss as a positive fraction; the first point counts as the first peak."""
    return float(drawdown_series(equity).max())


def max_drawdown_duration(equity: pd.Series) -> pd.Timedelta:
    """The longest time from a peak to full recovery (or to the last bar if never recovered)."""
    values = equity.to_numpy(dtype="float64")
    seconds = (equity.index - equity.index[0]).total_seconds().to_numpy()
    at_high = values >= np.maximum.accumulate(values)
    last_peak = np.maximum.accumulate(np.where(at_high, np.arange(values.size), 0))
    recoveries = np.flatnonzero(at_high[1:] & ~at_high[:-1]) + 1
    durations = list(seconds[recoveries] - seconds[last_peak[recoveries - 1]])
    if not at_high[-1]:
        durations.append(seconds[-1] - seconds[last_peak[-1]])
    return pd.Timedelta(seconds=max(durations, default=0.0))


@dataclass(frozen=True)
class BacktestResult:
    """Everything a backtest reports. Ratios are fractions; money is in the settle currency (`settle_currency`)."""

    total_return: float
    """E_end / initial_capital - 1."""
    annualized_return: float
    """CAGR over the equity's span, years = returns / periods_per_year."""
    volatility: float
    """Annualised std of per-bar returns (ddof=1)."""
    sharpe_ratio: float
    """Per-bar mean / std · √periods_per_year, risk-free 0."""
    sortino_ratio: float
    """Per-bar mean / downside deviation · √periods_per_year."""
    max_drawdown: float
    """Largest peak-to-trough equity loss, positive (0.21 = 21 %)."""
    max_drawdown_duration: pd.Timedelta
    """Longest peak-to-recovery time."""
    calmar_ratio: float
    """annualized_return / max_drawdown."""
    n_trades: int
    """Closed round trips (a flip closes one and opens another); the open trade is not counted."""
    win_rate: float
    """Closed trades with pnl > 0 / closed trades."""
    profit_factor: float
    """Sum of winning pnl / |sum of losing pnl| over closed trades."""
    avg_trade: float
    """Mean closed-trade return: pnl (after fees and funding) / entry notional."""
    exposure: float
    """Fraction of bars with a position held during the bar."""
    buy_and_hold_return: float
    """Last close / second bar's open - 1: bought where a strategy could first fill, no fees."""
    total_fees: float
    """Fees paid (taker and maker)."""
    total_funding: float
    """Net funding paid (negative = received); spot shorts: borrow interest."""
    n_liquidations: int
    """Positions closed by liquidation (each lost its initial margin; in `trades` with reason "liquidation")."""
    n_skipped_orders: int
    """Orders not placed: below the instrument's minimum after rounding, or no room under the gross cap."""
    n_orders: int
    """Orders filled: entries, rebalances, exits (signal, stop, take-profit) and liquidations."""
    ambiguous_bars: int
    """Bars where both the stop and the target lay inside the range (the stop was assumed first)."""
    final_equity: float
    """Equity at the last close, the open position marked to market."""
    final_equity_after_exit: float
    """`final_equity` less the taker fee closing the open position at the last close would pay."""
    n_open_trades: int
    """0 or 1: a position still open at the end (marked, not closed)."""
    periods_per_year: float
    """Bars per 365-day year used for annualisation."""
    start: pd.Timestamp
    """First bar open time."""
    end: pd.Timestamp
    """Last bar open time."""
    settle_currency: str
    """"quote" (USDT: linear, spot) or "coin" (inverse: equity and profit in the base coin)."""
    total_return_usd: float
    """Inverse contracts: the equity's return valued in USD at the first and last close; else `total_return`."""
    equity: pd.Series = dataclasses.field(repr=False)
    """Equity at each bar's close, indexed by bar open time."""
    trades: pd.DataFrame = dataclasses.field(repr=False)
    """Round trips: entry/exit time and price, side, units, pnl, return, fees, funding, exit_reason, open."""
    positions: pd.Series = dataclasses.field(repr=False)
    """Signed units held at each bar's close."""
    config: BacktestConfig = dataclasses.field(repr=False)
    """The configuration that produced this result."""

    def to_dict(self) -> dict[str, Any]:
        """The scalar statistics and the config as a JSON-serialisable dict keyed by field name.

        Non-finite numbers become None, durations ISO 8601 strings, times ISO strings; `equity`, `trades` and
        `positions` are left out (see `save_report` for files).
        """
        out: dict[str, Any] = {}
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if item.name in ("equity", "trades", "positions"):
                continue
            if isinstance(value, BacktestConfig):
                out[item.name] = dataclasses.asdict(value)
            elif isinstance(value, str):
                out[item.name] = value
            elif isinstance(value, pd.Timedelta | pd.Timestamp):
                out[item.name] = value.isoformat()
            elif isinstance(value, bool | int | np.integer):
                out[item.name] = int(value)
            else:
                number = float(value)
                out[item.name] = number if math.isfinite(number) else None
        return out

    def summary(self) -> str:
        """A human-readable table of the statistics, percentages where the value is a fraction."""
        pct = ("total_return", "annualized_return", "volatility", "max_drawdown", "win_rate", "avg_trade",
               "exposure", "buy_and_hold_return")
        lines = [f"{'period':<22} {self.start} .. {self.end}"]
        for key, value in self.to_dict().items():
            if key in ("config", "start", "end"):
                continue
            if isinstance(value, str):
                lines.append(f"{key:<22} {value}")
                continue
            if value is None:
                text = "n/a"
            elif key in pct:
                text = f"{100 * value:.2f} %"
            elif key == "max_drawdown_duration":
                text = str(self.max_drawdown_duration)
            elif isinstance(value, int):
                text = str(value)
            else:
                text = f"{value:.6g}"
            lines.append(f"{key:<22} {text}")
        return "\n".join(lines)


def compute_result(sim: Simulation, bars: pd.DataFrame, config: BacktestConfig) -> BacktestResult:
    """Turn the engine's raw output into a `BacktestResult`.

    Args:
        sim: output of `simulate`.
        bars: the bar frame the simulation ran on.
        config: the configuration used.

    Returns:
        The result with all statistics computed.
    """
    equity = pd.Series(sim.equity, index=bars.index, name="equity")
    returns = simple_returns(equity)
    periods = periods_per_year(bars.index)
    total = float(equity.iloc[-1] / config.initial_capital - 1.0)
    cagr = annualized_return(total, len(returns), periods)
    drawdown = max_drawdown(equity)
    closed = sim.trades[~sim.trades["open"]]
    pnl = closed["pnl"].to_numpy(dtype="float64")
    wins, losses = float(pnl[pnl > 0].sum()), float(-pnl[pnl < 0].sum())
    opens, closes = bars["open"].to_numpy(), bars["close"].to_numpy()
    final = float(equity.iloc[-1])
    usd = total
    if config.category == "inverse":
        usd = final * float(closes[-1]) / (config.initial_capital * float(closes[0])) - 1.0
    return BacktestResult(
        total_return=total,
        annualized_return=cagr,
        volatility=float(returns.std(ddof=1)) * math.sqrt(periods) if len(returns) > 1 else math.nan,
        sharpe_ratio=sharpe_ratio(returns, periods),
        sortino_ratio=sortino_ratio(returns, periods),
        max_drawdown=drawdown,
        max_drawdown_duration=max_drawdown_duration(equity),
        calmar_ratio=ratio(cagr, drawdown),
        n_trades=len(closed),
        win_rate=float((pnl > 0).mean()) if pnl.size else math.nan,
        profit_factor=ratio(wins, losses) if pnl.size else math.nan,
        avg_trade=float(closed["return"].mean()) if pnl.size else math.nan,
        exposure=float(sim.exposed.mean()),
        buy_and_hold_return=float(closes[-1] / opens[1] - 1.0),
        total_fees=sim.total_fees,
        total_funding=sim.total_funding,
        n_liquidations=sim.n_liquidations,
        n_skipped_orders=sim.n_skipped_orders,
        n_orders=sim.n_orders,
        ambiguous_bars=sim.ambiguous_bars,
        final_equity=final,
        final_equity_after_exit=final - sim.exit_fee,
        n_open_trades=int(sim.trades["open"].sum()),
        periods_per_year=periods,
        start=bars.index[0],
        end=bars.index[-1],
        settle_currency=config.settle_currency,
        total_return_usd=usd,
        equity=equity,
        trades=sim.trades,
        positions=pd.Series(sim.units, index=bars.index, name="units"),
        config=config,
    )

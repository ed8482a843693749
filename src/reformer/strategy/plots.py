"""Report plots and files: equity against buy & hold, drawdown, trades on the price with their P&L.

Figures are built on the Agg canvas directly (no pyplot, no global backend switch, never a window), so the
functions are safe on servers and in tests.

Entry and exit markers are drawn on the price only up to `MAX_TRADE_MARKERS` trades: beyond that they merge into
a solid band that hides the price. The P&L panel under the price shows every closed trade at any count (its P&L
at its exit, and the running sum), and trades.csv lists them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..errors import UserInputError
from ..files import atomic_write
from .bars import to_bar_frame
from .stats import BacktestResult, drawdown_series

__all__ = ["MAX_TRADE_MARKERS", "REPORT_FILES", "buy_and_hold_equity", "plot_drawdown", "plot_equity", "plot_trade_pnl",
           "plot_trades", "save_report"]

MAX_TRADE_MARKERS = 100
"""Most trades whose entries and exits `plot_trades` marks on the price."""
REPORT_FILES = {"equity": "equity.png", "drawdown": "drawdown.png", "trades_plot": "trades.png",
                "trades": "trades.csv", "stats": "stats.json"}
"""The files `save_report` writes, by short name."""


def buy_and_hold_equity(bars: pd.DataFrame, initial_capital: float) -> pd.Series:
    """Equity of buying at the second bar's open (the first possible fill) and holding, no fees.

    Args:
        bars: frame from `to_bar_frame`.
        initial_capital: starting equity.

    Returns:
        A Series on the bars' index: the capital at bar 0, then capital × close / open[1].
    """
    curve = initial_capital * bars["close"] / bars["open"].iloc[1]
    curve.iloc[0] = initial_capital
    return curve.rename("buy_and_hold")


def _new_figure() -> Figure:
    figure = Figure(figsize=(11, 4), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _new_axes(ax: Axes | None) -> Axes:
    return ax if ax is not None else _new_figure().add_subplot()


def plot_equity(result: BacktestResult, klines: Any, ax: Axes | None = None) -> Axes:
    """Plot the strategy's equity against buy & hold on `ax` (a new Agg figure when None).

    Returns:
        The axes drawn on.
    """
    ax = _new_axes(ax)
    bars = to_bar_frame(klines)
    ax.plot(result.equity.index, result.equity.to_numpy(), label="strategy", linewidth=1.0)
    hold = buy_and_hold_equity(bars, result.config.initial_capital)
    ax.plot(hold.index, hold.to_numpy(), label="buy & hold", linewidth=1.0, alpha=0.7)
    ax.set_title(f"Equity: {100 * result.total_return:.1f} % vs buy & hold {100 * result.buy_and_hold_return:.1f} %")
    ax.set_ylabel("equity (quote)")
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    return ax


def plot_drawdown(result: BacktestResult, ax: Axes | None = None) -> Axes:
    """Plot the drawdown (as a negative percentage below the running peak) on `ax`.

    Returns:
        The axes drawn on.
    """
    ax = _new_axes(ax)
    drawdown = -100 * drawdown_series(result.equity)
    ax.fill_between(drawdown.index, drawdown.to_numpy(), 0.0, color="tab:red", alpha=0.4, linewidth=0)
    ax.set_title(f"Drawdown (max {100 * result.max_drawdown:.1f} %, longest {result.max_drawdown_duration})")
    ax.set_ylabel("% below peak")
    ax.grid(alpha=0.3)
    return ax


def plot_trades(result: BacktestResult, klines: Any, ax: Axes | None = None) -> Axes:
    """Plot the close price with trade entries (^ long, v short) and exits (x) on `ax`; with more than
    `MAX_TRADE_MARKERS` trades, the price alone (the title says so; `plot_trade_pnl` shows every trade).

    Returns:
        The axes drawn on.
    """
    ax = _new_axes(ax)
    bars = to_bar_frame(klines)
    ax.plot(bars.index, bars["close"].to_numpy(), color="0.4", linewidth=0.8, label="close")
    trades = result.trades
    title = f"Trades ({result.n_trades:,} closed, {result.n_open_trades} open)"
    if len(trades) <= MAX_TRADE_MARKERS:
        for side, marker, color in (("long", "^", "tab:green"), ("short", "v", "tab:red")):
            chosen = trades[trades["side"] == side]
            ax.scatter(chosen["entry_time"], chosen["entry_price"], marker=marker, color=color, s=30,
                       label=f"{side} entry", zorder=3)
        exits = trades[~trades["open"]]
        ax.scatter(exits["exit_time"], exits["exit_price"], marker="x", color="black", s=25, label="exit",
                   zorder=3)
    else:
        title += f": entries and exits not marked above {MAX_TRADE_MARKERS} trades (trades.csv lists them)"
    ax.set_title(title)
    ax.set_ylabel("price")
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    return ax


def plot_trade_pnl(result: BacktestResult, ax: Axes | None = None) -> Axes:
    """Plot each closed trade's P&L (after fees and funding) at its exit, green for a gain and red for a loss,
    and the running sum of closed-trade P&L, on `ax`.

    Returns:
        The axes drawn on.
    """
    ax = _new_axes(ax)
    closed = result.trades[~result.trades["open"]].sort_values("exit_time", kind="stable")
    times, pnl = closed["exit_time"], closed["pnl"].to_numpy(dtype="float64")
    colors = ["tab:green" if value > 0 else "tab:red" for value in pnl]
    ax.vlines(times, 0.0, pnl, colors=colors, linewidth=1.0 if len(pnl) <= MAX_TRADE_MARKERS else 0.5)
    ax.axhline(0.0, color="0.5", linewidth=0.6)
    ax.set_ylabel("P&L per trade (bars)")
    running = ax.twinx()  # the sum outgrows single trades: its own scale, on the right
    running.plot(times, pnl.cumsum(), color="tab:blue", linewidth=1.2, drawstyle="steps-post")
    running.set_ylabel("running sum (line)", color="tab:blue")
    running.tick_params(axis="y", colors="tab:blue")
    wins = int((pnl > 0).sum())
    ax.set_title(f"P&L of the closed trades, quote currency: {wins:,} gains, {len(pnl) - wins:,} losses, "
                 f"total {pnl.sum():+,.2f}")
    ax.grid(alpha=0.3)
    return ax


def save_report(result: BacktestResult, klines: Any, out_dir: str | Path,
                extra: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Write equity.png, drawdown.png, trades.png (the price with the trades, their P&L below), trades.csv and
    stats.json into `out_dir` (created). Each file is written atomically (a temporary file renamed over it), and
    never through a symbolic link: a link at one of those names is refused before anything is written.

    Args:
        result: a backtest result.
        klines: the klines it ran on (for prices and buy & hold).
        out_dir: target folder.
        extra: more keys for stats.json (`reformer backtest` records there which bars were traded).

    Returns:
        The written paths by short name ("equity", "drawdown", "trades_plot", "trades", "stats").

    Raises:
        UserInputError: `out_dir` or one of the files is a symbolic link.
    """
    out = Path(out_dir)
    paths = {key: out / name for key, name in REPORT_FILES.items()}
    for path in (out, *paths.values()):  # before any file is replaced, so a refused report leaves none half-new
        if path.is_symlink():
            raise UserInputError(f"{path} is a symbolic link: refusing to write the report through it; remove the "
                                 "link or choose another folder")
    out.mkdir(parents=True, exist_ok=True)
    bars = to_bar_frame(klines)
    for key, draw in (("equity", lambda ax: plot_equity(result, bars, ax)),
                      ("drawdown", lambda ax: plot_drawdown(result, ax))):
        figure = _new_figure()
        draw(figure.add_subplot())
        atomic_write(paths[key], partial(figure.savefig, dpi=110, format="png"))
    figure = Figure(figsize=(11, 6.5), layout="constrained")
    FigureCanvasAgg(figure)
    price, pnl = figure.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    plot_trades(result, bars, price)
    plot_trade_pnl(result, pnl)
    atomic_write(paths["trades_plot"], partial(figure.savefig, dpi=110, format="png"))
    atomic_write(paths["trades"], lambda temp: result.trades.to_csv(temp, index=False))
    text = json.dumps({**result.to_dict(), **(extra or {})}, indent=2, allow_nan=False) + "\n"
    atomic_write(paths["stats"], lambda temp: temp.write_text(text, encoding="utf-8"))
    return paths

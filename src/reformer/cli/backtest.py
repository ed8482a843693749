"""`reformer backtest`: target positions, predictions or a checkpoint's predictions through the engine.

A thin command over `reformer.pipelines.backtest_run`; the statistics table is drawn here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from .common import DEFAULT_SYMBOL, DbOpt, EndOpt, IntervalOpt, JsonOpt, StartOpt, SymbolOpt

if TYPE_CHECKING:
    from ..pipelines import BacktestRun
    from ..pipelines.portfolio import PortfolioRun

__all__ = ["register"]

_SHOWN = ("total_return", "total_return_usd", "annualized_return", "volatility", "sharpe_ratio", "sortino_ratio",
          "max_drawdown", "calmar_ratio", "n_trades", "win_rate", "profit_factor", "avg_trade", "exposure",
          "total_fees", "total_funding", "n_orders", "n_liquidations", "n_skipped_orders", "ambiguous_bars",
          "final_equity", "final_equity_after_exit")
_PERCENT = {"total_return", "total_return_usd", "annualized_return", "volatility", "max_drawdown", "win_rate",
            "avg_trade", "exposure"}
_MONEY = {"total_fees", "total_funding", "final_equity", "final_equity_after_exit"}
_HELP = {
    "symbols": "Backtest a portfolio of these store series on one equity (e.g. BTCUSDT,ETHUSDT); --positions then "
               "holds timestamp,symbol,position rows.",
    "predictions": "CSV timestamp,prediction (`reformer predict --all`, a walk-forward run's predictions.csv).",
    "out": "Write plots, trades.csv and stats.json into this folder (new or empty, or any with --force).",
    "force": "Replace the report files of a non-empty --out folder (never through a symbolic link).",
    "category": "linear (USDT perpetual), inverse (coin-settled: money in the coin) or spot: the stored series "
                "and the contract traded.",
    "funding_csv": "CSV timestamp,funding_rate (epoch ms or ISO-8601; positive: longs pay) of perpetual funding.",
    "mark_csv": "CSV timestamp,open,high,low,close of mark-price candles: liquidations and funding use them "
                "(default: the last price).",
    "initial_capital": "Starting equity in the settle currency (USDT; the coin with --category inverse).",
    "position_size": "Notional at target +-1 as a multiple of equity, up to --leverage.",
    "leverage": "Isolated-margin leverage in [1, 125] (initial margin = notional / leverage); spot: 1.",
    "mmr": "Maintenance margin over notional, in [0, 1/leverage) (default: 0.005, BTCUSDT's first tier).",
    "commission": "Both fees at once, fraction of notional (default: the category's base tier).",
    "taker_fee": "Fee of market fills (entries, exits, stops, liquidations); default 0.00055, spot 0.001.",
    "maker_fee": "Fee of take-profit fills (resting limit orders); default 0.0002, spot 0.001.",
    "allow_short": "Allow short positions (default: yes, except spot).",
    "borrow_rate": "Spot shorts: yearly interest on the borrowed coin's value.",
    "vol_forecast": "With --vol-target: size by this volatility model's forecast (predictions of a --task "
                    "realized-vol run: sqrt(variance / horizon) per bar) instead of trailing realised volatility.",
    "vol_target": "Predictions only: scale each position by min(1, this / the bar's volatility), a per-bar "
                  "volatility: the standard deviation of one-bar log returns (a fraction, not annualised, e.g. "
                  "0.005), measured over the last --vol-window bars or taken from --vol-forecast.",
    "vol_window": "With --vol-target: bars of one-bar log returns whose sample standard deviation is the realised "
                  "volatility.",
    "rebalance_band": "Trade a new same-side target only when it moves the notional by more than this fraction.",
    "short_threshold": "Go short below this predicted return (at most --long-threshold).",
    "tick_size": "Price tick: fills round to it against the trader (0: none).",
    "qty_step": "Order quantity step, base coin (contracts for inverse): orders round down to it (0: none).",
    "min_qty": "Smallest order quantity: a smaller order is skipped and counted (0: none).",
    "in_sample": "With --checkpoint or --predictions, also trade the bars before the model's out-of-sample period "
                 "(it was fitted on them).",
}


def _fmt(key: str, value: object, coin: bool = False) -> str:
    """A statistic as the table shows it: fractions in percent (a return of a few short bars compounds past any
    width when annualised: that one in powers of ten), money in the coin to six decimals."""
    if value is None:
        return "n/a"
    if key in _PERCENT and isinstance(value, float | int):
        return f"{100 * value:,.2f} %" if abs(value) < 1e6 else f"{100 * value:.3g} %"
    if isinstance(value, float) and coin and key in _MONEY:
        return f"{value:,.6f}"
    return f"{value:,.0f}" if isinstance(value, int) else f"{value:,.3f}" if isinstance(value, float) else str(value)


def _stats_table(run: BacktestRun) -> Table:
    """The strategy's statistics beside buy & hold (no fees: all equity long from the first fillable open, or for
    inverse the coin held)."""
    from ..data.sync import format_ms

    result, hold = run.result, run.buy_and_hold()
    first, last = (format_ms(round(moment.timestamp() * 1000)) for moment in (result.start, result.end))
    table = Table(title=f"Backtest {first} .. {last}", caption=_caption(run))
    table.add_column("statistic")
    table.add_column("strategy", justify="right")
    table.add_column("buy & hold", justify="right")
    stats, hold_stats = result.to_dict(), hold.to_dict()
    coin = result.settle_currency == "coin"
    for key in _SHOWN:
        if key == "total_return_usd" and not coin:
            continue  # the same number as total_return
        table.add_row(key, _fmt(key, stats.get(key), coin), _fmt(key, hold_stats.get(key), coin))
    return table


def _caption(run: BacktestRun) -> str | None:
    """The stats table's notes: bars the model was fitted on that were (or may have been) traded, the funding
    counted, the currency of an inverse contract."""
    traded, costs, notes = run.traded, run.costs, []
    if traded and traded["in_sample"] is None:
        notes.append("the predictions do not say where the model's out-of-sample period starts: all of them were "
                     "traded")
    elif traded and traded["in_sample"]:
        notes.append(f"{traded['in_sample_bars']} of the traded bars are in-sample (the model was fitted on them)")
    if costs.get("funding") == "none given":
        notes.append("no funding rates given: funding is not counted (--funding-csv FUNDING.csv adds it)")
    elif costs.get("funding") == "off (--no-funding)":
        notes.append("funding rates given but not counted (--no-funding)")
    elif costs.get("funding") == "applied":
        count = costs["funding_settlements"]
        plural = "" if count == 1 else "s"
        notes.append("funding: no settlement of --funding-csv falls inside the traded bars (check its dates)"
                     if count == 0 else f"funding: {count} settlement{plural} inside the traded bars")
    if run.result.settle_currency == "coin":
        notes.append("inverse: money in the coin (total_return_usd: valued in USD); buy & hold holds the coin")
    return "\n".join(notes) or None


def backtest(
    symbol: SymbolOpt = DEFAULT_SYMBOL,
    interval: IntervalOpt = "60",
    category: Annotated[str, typer.Option("--category", help=_HELP["category"])] = "linear",
    db: DbOpt = None,
    csv: Annotated[Path | None, typer.Option(help="Read candles from this CSV instead of the store.")] = None,
    positions: Annotated[Path | None, typer.Option(help="CSV timestamp,position: target positions in [-1, 1].")] = None,
    predictions: Annotated[Path | None, typer.Option(help=_HELP["predictions"])] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="Predict every bar with this checkpoint first.")] = None,
    funding_csv: Annotated[Path | None, typer.Option(help=_HELP["funding_csv"])] = None,
    mark_csv: Annotated[Path | None, typer.Option(help=_HELP["mark_csv"])] = None,
    symbols: Annotated[str | None, typer.Option(help=_HELP["symbols"])] = None,
    start: StartOpt = None,
    end: EndOpt = None,
    out: Annotated[Path | None, typer.Option(help=_HELP["out"])] = None,
    force: Annotated[bool, typer.Option("--force", help=_HELP["force"])] = False,
    as_json: JsonOpt = False,
    initial_capital: Annotated[float, typer.Option(help=_HELP["initial_capital"])] = 10_000.0,
    position_size: Annotated[float, typer.Option(help=_HELP["position_size"])] = 0.1,
    leverage: Annotated[float, typer.Option(help=_HELP["leverage"])] = 1.0,
    maintenance_margin_rate: Annotated[float | None, typer.Option(help=_HELP["mmr"])] = None,
    stop_loss: Annotated[float, typer.Option(help="Stop distance, fraction of entry price (0 = off).")] = 0.02,
    take_profit: Annotated[float, typer.Option(help="Target distance, fraction of entry (0 = off).")] = 0.04,
    commission: Annotated[float | None, typer.Option(help=_HELP["commission"])] = None,
    taker_fee: Annotated[float | None, typer.Option(help=_HELP["taker_fee"])] = None,
    maker_fee: Annotated[float | None, typer.Option(help=_HELP["maker_fee"])] = None,
    slippage: Annotated[float, typer.Option(help="Slippage, fraction of price, against the trader.")] = 0.0,
    allow_short: Annotated[bool | None, typer.Option(help=_HELP["allow_short"])] = None,
    borrow_rate: Annotated[float, typer.Option(help=_HELP["borrow_rate"])] = 0.05,
    funding: Annotated[bool, typer.Option(help="Apply --funding-csv rates (--no-funding: leave them out).")] = True,
    rebalance_band: Annotated[float, typer.Option(help=_HELP["rebalance_band"])] = 0.2,
    tick_size: Annotated[float, typer.Option(help=_HELP["tick_size"])] = 0.0,
    qty_step: Annotated[float, typer.Option(help=_HELP["qty_step"])] = 0.0,
    min_qty: Annotated[float, typer.Option(help=_HELP["min_qty"])] = 0.0,
    long_threshold: Annotated[float, typer.Option(help="Go long above this predicted return.")] = 0.0,
    short_threshold: Annotated[float, typer.Option(help=_HELP["short_threshold"])] = 0.0,
    vol_target: Annotated[float | None, typer.Option(help=_HELP["vol_target"])] = None,
    vol_window: Annotated[int, typer.Option(help=_HELP["vol_window"])] = 24,
    vol_forecast: Annotated[Path | None, typer.Option(help=_HELP["vol_forecast"])] = None,
    in_sample: Annotated[bool, typer.Option("--in-sample", help=_HELP["in_sample"])] = False,
) -> None:
    """Backtest target positions, predictions or a checkpoint: next-bar fills, margin and liquidation, stops, fees
    and funding. Predictions are traded from the model's out-of-sample period on when the checkpoint or the file
    says where it starts (--in-sample: every row)."""
    flags = dict(locals())  # every parameter by name: the options, the config and the instrument are built from them
    from ..pipelines import BacktestOptions, backtest_run

    options = BacktestOptions.from_flags({name: value for name, value in flags.items() if name != "as_json"})
    _print(backtest_run(options, say=lambda line: typer.echo(line, err=True)), as_json)


def _print(run: BacktestRun | PortfolioRun, as_json: bool) -> None:
    """The report files written, then the statistics: one JSON object on stdout, or the table."""
    from ..pipelines.portfolio import PortfolioRun

    console = Console(width=120, stderr=as_json)
    if isinstance(run, PortfolioRun):
        if as_json:
            print(json.dumps({**run.result.to_dict(), **run.extra}, default=str))
        else:
            console.print(_portfolio_table(run))
        return
    if run.written is not None:
        folder = next(iter(run.written.values())).parent
        console.print(f"wrote {', '.join(sorted(p.name for p in run.written.values()))} to {folder}")
    if as_json:
        print(json.dumps({**run.result.to_dict(), **run.extra}))
    else:
        console.print(_stats_table(run))


def _portfolio_table(run: PortfolioRun) -> Table:
    """The account's statistics, then each symbol's share."""
    from ..data.sync import format_ms

    result = run.result
    first, last = (format_ms(round(moment.timestamp() * 1000)) for moment in (result.start, result.end))
    table = Table(title=f"Portfolio {', '.join(run.symbols)} {first} .. {last}")
    table.add_column("statistic")
    table.add_column("portfolio", justify="right")
    for name in run.symbols:
        table.add_column(name, justify="right")
    stats = result.to_dict()
    for key in _SHOWN:
        if key != "total_return_usd":
            table.add_row(key, _fmt(key, stats.get(key), False), *("" for _ in run.symbols))
    for key in ("pnl", "contribution", "n_trades", "total_fees", "total_funding", "n_liquidations", "exposure"):
        shares = [getattr(share, key) for share in run.symbols.values()]
        label = "symbol " + key
        table.add_row(label, "", *(_fmt(key if key != "contribution" else "total_return", value, False)
                                   for value in shares))
    return table


def register(app: typer.Typer) -> None:
    app.command("backtest")(backtest)

"""`reformer backtest`: target positions, predictions or a checkpoint's predictions through the engine.

A thin command over `reformer.pipelines.backtest_run`; the statistics table is drawn here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from .common import DEFAULT_SYMBOL, CategoryOpt, DbOpt, EndOpt, IntervalOpt, JsonOpt, StartOpt, SymbolOpt

if TYPE_CHECKING:
    from ..pipelines import BacktestRun

__all__ = ["register"]

_SHOWN = ("total_return", "annualized_return", "volatility", "sharpe_ratio", "sortino_ratio", "max_drawdown",
          "calmar_ratio", "n_trades", "win_rate", "profit_factor", "avg_trade", "exposure", "total_fees",
          "total_funding", "ambiguous_bars")
_PERCENT = {"total_return", "annualized_return", "volatility", "max_drawdown", "win_rate", "avg_trade", "exposure"}
_HELP = {
    "predictions": "CSV timestamp,prediction (`reformer predict --all`, a walk-forward run's predictions.csv).",
    "out": "Write plots, trades.csv and stats.json into this folder (new or empty, or any with --force).",
    "force": "Replace the report files of a non-empty --out folder (never through a symbolic link).",
    "commission": "Fee per fill, fraction of notional (the default is Bybit's taker fee).",
    "short_threshold": "Go short below this predicted return (at most --long-threshold).",
    "in_sample": "With --checkpoint or --predictions, also trade the bars before the model's out-of-sample period "
                 "(it was fitted on them).",
}


def _fmt(key: str, value: object) -> str:
    if value is None:
        return "n/a"
    if key in _PERCENT and isinstance(value, float | int):
        return f"{100 * value:.2f} %"
    return f"{value:,.0f}" if isinstance(value, int) else f"{value:,.3f}" if isinstance(value, float) else str(value)


def _stats_table(run: BacktestRun) -> Table:
    """The strategy's statistics beside buy & hold (all equity long from the first fillable open, no fees)."""
    from ..data.sync import format_ms

    result, hold = run.result, run.buy_and_hold()
    first, last = (format_ms(round(moment.timestamp() * 1000)) for moment in (result.start, result.end))
    table = Table(title=f"Backtest {first} .. {last}", caption=_caption(run.traded))
    table.add_column("statistic")
    table.add_column("strategy", justify="right")
    table.add_column("buy & hold", justify="right")
    stats, hold_stats = result.to_dict(), hold.to_dict()
    for key in _SHOWN:
        table.add_row(key, _fmt(key, stats.get(key)), _fmt(key, hold_stats.get(key)))
    return table


def _caption(traded: dict[str, object]) -> str | None:
    """The stats table's warning when bars the model was fitted on were (or may have been) traded."""
    if not traded or traded["in_sample"] is False:
        return None
    if traded["in_sample"] is None:
        return "the predictions do not say where the model's out-of-sample period starts: all of them were traded"
    return f"{traded['in_sample_bars']} of the traded bars are in-sample (the model was fitted on them)"


def backtest(
    symbol: SymbolOpt = DEFAULT_SYMBOL,
    interval: IntervalOpt = "60",
    category: CategoryOpt = "linear",
    db: DbOpt = None,
    csv: Annotated[Path | None, typer.Option(help="Read candles from this CSV instead of the store.")] = None,
    positions: Annotated[Path | None, typer.Option(help="CSV timestamp,position: target positions in [-1, 1].")] = None,
    predictions: Annotated[Path | None, typer.Option(help=_HELP["predictions"])] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="Predict every bar with this checkpoint first.")] = None,
    funding_csv: Annotated[Path | None, typer.Option(help="CSV time,rate of perpetual funding.")] = None,
    start: StartOpt = None,
    end: EndOpt = None,
    out: Annotated[Path | None, typer.Option(help=_HELP["out"])] = None,
    force: Annotated[bool, typer.Option("--force", help=_HELP["force"])] = False,
    as_json: JsonOpt = False,
    initial_capital: Annotated[float, typer.Option(help="Starting equity, quote currency.")] = 10_000.0,
    position_size: Annotated[float, typer.Option(help="Fraction of equity at target +-1, in (0, 1].")] = 0.1,
    stop_loss: Annotated[float, typer.Option(help="Stop distance, fraction of entry price (0 = off).")] = 0.02,
    take_profit: Annotated[float, typer.Option(help="Target distance, fraction of entry (0 = off).")] = 0.04,
    commission: Annotated[float, typer.Option(help=_HELP["commission"])] = 0.00055,
    slippage: Annotated[float, typer.Option(help="Slippage, fraction of price, against the trader.")] = 0.0,
    allow_short: Annotated[bool, typer.Option(help="Allow short positions.")] = True,
    funding: Annotated[bool, typer.Option(help="Apply --funding-csv rates.")] = True,
    long_threshold: Annotated[float, typer.Option(help="Go long above this predicted return.")] = 0.0,
    short_threshold: Annotated[float, typer.Option(help=_HELP["short_threshold"])] = 0.0,
    vol_target: Annotated[float | None, typer.Option(help="Volatility target for position scaling.")] = None,
    vol_window: Annotated[int, typer.Option(help="Bars of realised volatility for scaling.")] = 24,
    in_sample: Annotated[bool, typer.Option("--in-sample", help=_HELP["in_sample"])] = False,
) -> None:
    """Backtest target positions, predictions or a checkpoint: next-bar fills, stops, fees and funding.
    Predictions are traded from the model's out-of-sample period on when the checkpoint or the file says where
    it starts (--in-sample: every row)."""
    from ..pipelines import BacktestOptions, backtest_run
    from ..strategy import BacktestConfig

    options = BacktestOptions(
        symbol=symbol, interval=interval, category=category, db=db, csv=csv, positions=positions,
        predictions=predictions, checkpoint=checkpoint, funding_csv=funding_csv, start=start, end=end, out=out,
        force=force, in_sample=in_sample, config=BacktestConfig(
            initial_capital=initial_capital, position_size=position_size, stop_loss=stop_loss, take_profit=take_profit,
            commission=commission, slippage=slippage, allow_short=allow_short, funding=funding,
            long_threshold=long_threshold, short_threshold=short_threshold, vol_target=vol_target,
            vol_window=vol_window))
    run = backtest_run(options, say=lambda line: typer.echo(line, err=True))
    console = Console(width=120, stderr=as_json)
    if run.written is not None:
        console.print(f"wrote {', '.join(sorted(p.name for p in run.written.values()))} to {out}")
    if as_json:
        print(json.dumps({**run.result.to_dict(), **run.extra}))
    else:
        console.print(_stats_table(run))


def register(app: typer.Typer) -> None:
    app.command("backtest")(backtest)

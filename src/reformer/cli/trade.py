"""`reformer trade --paper ...` and `reformer trade report`: paper trading on the live stream, and its statistics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .common import DEFAULT_SYMBOL, App, IntervalOpt, JsonOpt, SymbolOpt

__all__ = ["register"]

trade_app = App(help="Paper trading on the exchange's closed candles with the backtest's engine (no real orders).",
                invoke_without_command=True)

_HELP = {
    "paper": "Trade on paper: fills are simulated by the backtest's engine; no order reaches any exchange.",
    "state": "Folder of the run's state (state.sqlite): created on the first start, resumed on every later one.",
    "symbols": "Several symbols on one equity (e.g. BTCUSDT,ETHUSDT), as `backtest --symbols`.",
    "max_candles": "Stop after processing this many candle times (default: run until Ctrl-C).",
    "catch_up": "Process every candle that has closed since the last one, then exit (no stream).",
    "dashboard": "Also serve the dashboard at HOST:PORT (e.g. 127.0.0.1:8765), read-only.",
    "base_url": "REST root. Default: $BYBIT_BASE_URL, else Bybit's mainnet.",
    "ws_url": "WebSocket root. Default: $BYBIT_WS_URL, else Bybit's mainnet.",
}


@trade_app.callback()
def trade(
    ctx: typer.Context,
    paper: Annotated[bool, typer.Option("--paper", help=_HELP["paper"])] = False,
    checkpoint: Annotated[Path | None, typer.Option(help="A candle model's run or checkpoint.")] = None,
    symbol: SymbolOpt = DEFAULT_SYMBOL,
    symbols: Annotated[str | None, typer.Option(help=_HELP["symbols"])] = None,
    interval: IntervalOpt = "60",
    category: Annotated[str, typer.Option(help="linear, inverse or spot.")] = "linear",
    state: Annotated[Path | None, typer.Option(help=_HELP["state"])] = None,
    base_url: Annotated[str | None, typer.Option("--base-url", help=_HELP["base_url"])] = None,
    ws_url: Annotated[str | None, typer.Option("--ws-url", help=_HELP["ws_url"])] = None,
    max_candles: Annotated[int | None, typer.Option(help=_HELP["max_candles"])] = None,
    catch_up: Annotated[bool, typer.Option("--catch-up", help=_HELP["catch_up"])] = False,
    dashboard: Annotated[str | None, typer.Option(help=_HELP["dashboard"])] = None,
    initial_capital: Annotated[float, typer.Option(help="Starting equity, settle currency.")] = 10_000.0,
    position_size: Annotated[float, typer.Option(help="Notional at target +-1, x equity (up to --leverage).")] = 0.1,
    leverage: Annotated[float, typer.Option(help="Isolated-margin leverage.")] = 1.0,
    maintenance_margin_rate: Annotated[float | None, typer.Option(help="Default: the first risk tier's.")] = None,
    stop_loss: Annotated[float, typer.Option(help="Stop distance, fraction of entry (0 = off).")] = 0.02,
    take_profit: Annotated[float, typer.Option(help="Target distance, fraction of entry (0 = off).")] = 0.04,
    commission: Annotated[float | None, typer.Option(help="Both fee rates (default: base tier).")] = None,
    taker_fee: Annotated[float | None, typer.Option(help="Market fills' fee rate.")] = None,
    maker_fee: Annotated[float | None, typer.Option(help="Take-profit fills' fee rate.")] = None,
    slippage: Annotated[float, typer.Option(help="Fraction of price, against the trader.")] = 0.0,
    funding: Annotated[bool, typer.Option(help="Count funding (--no-funding: leave it out).")] = True,
    long_threshold: Annotated[float, typer.Option(help="Go long above this predicted return.")] = 0.0,
    short_threshold: Annotated[float, typer.Option(help="Go short below this predicted return.")] = 0.0,
    vol_target: Annotated[float | None, typer.Option(help="Per-bar volatility to scale positions to.")] = None,
    rebalance_band: Annotated[float, typer.Option(help="Same-side target changes smaller than this: held.")] = 0.2,
) -> None:
    """Trade a checkpoint's forecasts on paper on the exchange's closed candles, resumably (`--state`), with the
    backtest's fills, fees, stops, funding and liquidation. `reformer trade report --state DIR` summarises a run."""
    flags = {k: v for k, v in locals().items() if k not in ("ctx", "paper", "checkpoint", "symbols", "interval",
                                                             "state", "base_url", "ws_url", "max_candles", "catch_up",
                                                             "dashboard", "symbol")}  # the engine's settings
    if ctx.invoked_subcommand is not None:
        return
    from ..pipelines import BacktestOptions
    from ..trade.run import PaperRun, paper_run

    config = BacktestOptions.from_flags({**flags, "symbol": symbol}).config
    run = PaperRun(paper=paper, checkpoint=checkpoint, symbols=symbols or symbol, interval=interval,
                   category=category, state=state, base_url=base_url, ws_url=ws_url, max_candles=max_candles,
                   catch_up=catch_up, dashboard=dashboard, config=config)
    processed = paper_run(run, say=lambda line: typer.echo(line, err=True))
    typer.echo(f"processed {processed} candle time(s); state in {state}")


@trade_app.command("report")
def report(
    state: Annotated[Path, typer.Option(help="The run's --state folder.")],
    as_json: JsonOpt = False,
    out: Annotated[Path | None, typer.Option(help="Also write stats.json, trades.csv and plots to this folder "
                                                  "(new or empty).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the report files in a non-empty --out.")] = False,
) -> None:
    """The statistics of a paper-trading run so far: the backtest's fields, its trades and plots."""
    from ..trade.report import paper_report

    if out is not None:
        from ..files import check_output_dir
        from ..strategy.plots import REPORT_FILES

        check_output_dir(out, REPORT_FILES.values(), force)
    run = paper_report(state)
    if out is not None:
        from ..strategy import save_report

        first = next(iter(run.candles.values()))
        save_report(run.result, first, out)
    if as_json:
        print(json.dumps({**run.result.to_dict(), "symbols": run.symbols, "steps": run.steps}))
    else:
        typer.echo(run.result.summary())


def register(app: typer.Typer) -> None:
    app.add_typer(trade_app, name="trade")

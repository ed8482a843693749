"""`reformer demo`: the offline main job (see `reformer.demo`)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

__all__ = ["register"]


def _metrics_table(evaluation: dict[str, Any]) -> Table:
    table = Table(title=f"Test split: {evaluation['horizon']}-bar forward log return, "
                        f"{int(evaluation['model']['n'])} windows")
    for column in ("forecast", "MSE", "MAE", "dir. acc.", "IC (Spearman)", "MSE skill vs zero"):
        table.add_column(column, justify="right")
    rows = [("Reformer (LSH)", evaluation["model"]), *list(evaluation["baselines"].items())]
    for name, m in rows:
        ic = m.get("ic")
        table.add_row(name, f"{m['mse']:.3e}", f"{m['mae']:.3e}", f"{m['directional_accuracy']:.3f}",
                      "n/a" if ic is None else f"{ic:+.3f}", f"{m['mse_skill']:+.3f}")
    return table


def demo(
    out: Annotated[Path | None, typer.Option(help="Report folder (default: a new temporary folder).")] = None,
    bars: Annotated[int, typer.Option(help="Hourly candles of the synthetic market.")] = 20_000,
    seq_len: Annotated[int, typer.Option(help="Model input window, bars.")] = 256,
    epochs: Annotated[int, typer.Option(help="Training epochs (of 40 batches of 128 windows).")] = 10,
    seed: Annotated[int, typer.Option(help="Seed of market, model and training.")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Replace an earlier demo's report in --out.")] = False,
) -> None:
    """Offline end to end: fake exchange -> fetch -> store -> train -> evaluate -> predict -> backtest."""
    from ..data.sync import format_ms
    from ..demo import run_demo

    console = Console(width=120)
    report_dir = out if out is not None else Path(tempfile.mkdtemp(prefix="reformer-demo-"))
    result = run_demo(report_dir, n_bars=bars, seq_len=seq_len, epochs=epochs, seed=seed, force=force,
                      say=lambda text: console.print(f"[bold]>[/bold] {text}"))
    console.print(_metrics_table(result.evaluation))
    latest = result.latest
    console.print(f"latest closed candle {format_ms(latest['timestamp'])}: predicted {latest['horizon']}-bar log "
                  f"return {latest['predicted_return']:+.5f} ({latest['direction']}, confidence "
                  f"{latest['confidence']:.2f})")
    bt = result.backtest
    console.print(f"backtest of the test period (0.055% taker / 0.02% maker fees, funding on the mark price): total "
                  f"return {100 * bt['total_return']:+.2f} %, Sharpe {bt['sharpe_ratio'] or 0:.2f}, max drawdown "
                  f"{100 * bt['max_drawdown']:.2f} %, {bt['n_trades']} trades, funding paid "
                  f"{bt['total_funding']:+.2f}; "
                  f"buy & hold {100 * bt['buy_and_hold_return']:+.2f} %")
    console.print(f"report: {result.report_dir} (summary.json, run/, attention.png, backtest/) "
                  f"in {result.seconds:.0f} s")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)

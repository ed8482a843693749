"""`reformer backtest`: target positions, predictions or a checkpoint's predictions through the engine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from ..errors import UserInputError
from .common import DEFAULT_SYMBOL, DbOpt, SymbolOpt

if TYPE_CHECKING:
    import pandas as pd

    from ..strategy import BacktestResult

__all__ = ["register"]

_SHOWN = ("total_return", "annualized_return", "volatility", "sharpe_ratio", "sortino_ratio", "max_drawdown",
          "calmar_ratio", "n_trades", "win_rate", "profit_factor", "avg_trade", "exposure", "total_fees",
          "total_funding", "ambiguous_bars")
_PERCENT = {"total_return", "annualized_return", "volatility", "max_drawdown", "win_rate", "avg_trade", "exposure"}


def _load_klines(csv: Path | None, symbol: str, interval: str, category: str, db: Path | None,
                 start: int | None, end: int | None) -> pd.DataFrame:
    from ..data import KlineStore, read_klines_frame, require_series

    if csv is not None:
        frame = read_klines_frame(csv)
    else:
        with KlineStore(db) as store:
            frame = require_series(store, category, symbol, interval, alternative="or pass --csv")
    if start is not None:
        frame = frame[frame["timestamp"] >= start]
    if end is not None:
        frame = frame[frame["timestamp"] <= end]
    if len(frame) < 2:
        raise UserInputError("fewer than 2 candles in the chosen range: widen --start/--end")
    return frame.reset_index(drop=True)


def _fmt(key: str, value: object) -> str:
    if value is None:
        return "n/a"
    if key in _PERCENT and isinstance(value, float | int):
        return f"{100 * value:.2f} %"
    return f"{value:,.0f}" if isinstance(value, int) else f"{value:,.3f}" if isinstance(value, float) else str(value)


def _stats_table(result: BacktestResult, hold: BacktestResult) -> Table:
    """The strategy's statistics beside buy & hold (all equity long from the first fillable open, no fees)."""
    from ..data.sync import format_ms

    first, last = (format_ms(round(moment.timestamp() * 1000)) for moment in (result.start, result.end))
    table = Table(title=f"Backtest {first} .. {last}")
    table.add_column("statistic")
    table.add_column("strategy", justify="right")
    table.add_column("buy & hold", justify="right")
    stats, hold_stats = result.to_dict(), hold.to_dict()
    for key in _SHOWN:
        table.add_row(key, _fmt(key, stats.get(key)), _fmt(key, hold_stats.get(key)))
    return table


def _buy_and_hold(frame: pd.DataFrame, bar_times: pd.DatetimeIndex, initial_capital: float) -> BacktestResult:
    import pandas as pd

    from ..strategy import BacktestConfig, backtest_positions

    config = BacktestConfig(initial_capital=initial_capital, position_size=1.0, stop_loss=0.0, take_profit=0.0,
                            commission=0.0, slippage=0.0, funding=False)
    return backtest_positions(pd.Series([1.0], index=bar_times[:1]), frame, config)


def backtest(
    symbol: SymbolOpt = DEFAULT_SYMBOL,
    interval: Annotated[str, typer.Option(help="Bybit interval of the candles in the store.")] = "60",
    category: Annotated[str, typer.Option(help="spot, linear or inverse.")] = "linear",
    db: DbOpt = None,
    csv: Annotated[Path | None, typer.Option(help="Read candles from this CSV instead of the store.")] = None,
    positions: Annotated[Path | None, typer.Option(help="CSV timestamp,position: target positions in [-1, 1].")] = None,
    predictions: Annotated[Path | None, typer.Option(help="CSV timestamp,prediction (`reformer predict`).")] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="Predict every bar with this checkpoint first.")] = None,
    funding_csv: Annotated[Path | None, typer.Option(help="CSV time,rate of perpetual funding.")] = None,
    start: Annotated[str | None, typer.Option(help="First bar (ISO-8601 or epoch ms).")] = None,
    end: Annotated[str | None, typer.Option(help="Last bar (ISO-8601 or epoch ms).")] = None,
    out: Annotated[Path | None, typer.Option(help="Write plots, trades.csv and stats.json here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the statistics as one JSON object.")] = False,
    initial_capital: Annotated[float, typer.Option(help="Starting equity, quote currency.")] = 10_000.0,
    position_size: Annotated[float, typer.Option(help="Fraction of equity at target +-1, in (0, 1].")] = 0.1,
    stop_loss: Annotated[float, typer.Option(help="Stop distance, fraction of entry price (0 = off).")] = 0.02,
    take_profit: Annotated[float, typer.Option(help="Target distance, fraction of entry (0 = off).")] = 0.04,
    commission: Annotated[float, typer.Option(help="Fee per fill, fraction of notional (the default is Bybit's "
                                                    "taker fee).")] = 0.00055,
    slippage: Annotated[float, typer.Option(help="Slippage, fraction of price, against the trader.")] = 0.0,
    allow_short: Annotated[bool, typer.Option(help="Allow short positions.")] = True,
    funding: Annotated[bool, typer.Option(help="Apply --funding-csv rates.")] = True,
    long_threshold: Annotated[float, typer.Option(help="Go long above this predicted return.")] = 0.0,
    short_threshold: Annotated[float, typer.Option(help="Go short below this predicted return (at most "
                                                        "--long-threshold).")] = 0.0,
    vol_target: Annotated[float | None, typer.Option(help="Volatility target for position scaling.")] = None,
    vol_window: Annotated[int, typer.Option(help="Bars of realised volatility for scaling.")] = 24,
    in_sample: Annotated[bool, typer.Option("--in-sample", help="With --checkpoint, also trade the bars of its "
                                                                "training data (the model saw them).")] = False,
) -> None:
    """Backtest target positions, predictions or a checkpoint: next-bar fills, stops, fees and funding."""
    import pandas as pd

    from ..strategy import BacktestConfig, backtest_positions, run_backtest, save_report
    from ..strategy.io import check_bar_times, read_funding_csv, read_positions_csv, read_predictions_csv

    sources = [s for s in (positions, predictions, checkpoint) if s is not None]
    if len(sources) != 1:
        raise UserInputError("give exactly one of --positions POS.csv, --predictions PREDS.csv or --checkpoint PATH")
    if checkpoint is not None:  # a missing or wrong checkpoint is named before any data is read
        from ..training.checkpoint import resolve_checkpoint_dir
        from ..training.series import is_series_checkpoint

        if is_series_checkpoint(resolve_checkpoint_dir(checkpoint)):
            raise UserInputError(f"{checkpoint} is a series forecaster (trained with --target), which predicts no "
                                 "trade: backtest a candle model's checkpoint, or its predictions with --predictions")
    config = BacktestConfig(initial_capital=initial_capital, position_size=position_size, stop_loss=stop_loss,
                            take_profit=take_profit, commission=commission, slippage=slippage,
                            allow_short=allow_short, funding=funding, long_threshold=long_threshold,
                            short_threshold=short_threshold, vol_target=vol_target, vol_window=vol_window)
    from ..data.sync import parse_time_ms

    first = None if start is None else parse_time_ms(start, "--start")
    last = None if end is None else parse_time_ms(end, "--end")
    frame = _load_klines(csv, symbol, interval, category, db, first, last)
    bar_times = pd.DatetimeIndex(pd.to_datetime(frame["timestamp"], unit="ms", utc=True))
    rates = None
    if funding_csv is not None:
        rates = read_funding_csv(funding_csv)
    console = Console(width=120, stderr=as_json)
    if positions is not None:
        import numpy as np

        raw = read_positions_csv(positions)
        inside = np.ones(len(raw), dtype=bool)  # the rows --start/--end keep (named by their own file lines)
        if first is not None:
            inside &= np.asarray(raw.index >= bar_times[0])
        if last is not None:
            inside &= np.asarray(raw.index <= bar_times[-1])
        check_bar_times(positions, raw.index[inside], bar_times, lines=np.flatnonzero(inside) + 2)
        targets = _within(raw, bar_times, first is not None, last is not None)
        result = backtest_positions(targets, frame, config, funding_rates=rates)
    else:
        if predictions is not None:
            preds = read_predictions_csv(predictions)
            preds = preds[preds.index.isin(bar_times)]
        else:
            from ..training.crypto import predict_all

            assert checkpoint is not None
            table = predict_all(checkpoint, frame)
            if not in_sample:  # statistics and buy & hold over the traded bars only
                table, first_bar = _unseen(table, checkpoint)
                frame = frame[frame["timestamp"] >= first_bar].reset_index(drop=True)
                bar_times = pd.DatetimeIndex(pd.to_datetime(frame["timestamp"], unit="ms", utc=True))
            preds = pd.Series(table["prediction"].to_numpy(float),
                              index=pd.to_datetime(table["timestamp"], unit="ms", utc=True))
        if preds.empty:
            raise UserInputError("no prediction falls on a bar of the chosen candles: check --start/--end")
        result = run_backtest(preds, frame, config, funding_rates=rates)
    if out is not None:
        written = save_report(result, frame, out)
        console.print(f"wrote {', '.join(sorted(p.name for p in written.values()))} to {out}")
    if as_json:
        print(json.dumps(result.to_dict()))
    else:
        console.print(_stats_table(result, _buy_and_hold(frame, bar_times, initial_capital)))


def _unseen(table: pd.DataFrame, checkpoint: Path) -> tuple[pd.DataFrame, int]:
    """The predictions of bars no model weight was fitted on (`first_unseen_bar`), and the first such bar."""
    from ..data.sync import format_ms
    from ..training.crypto import first_unseen_bar

    first, where = first_unseen_bar(checkpoint)
    kept = table[table["timestamp"] >= first]
    if kept.empty:
        raise UserInputError(f"no candles {where} ({format_ms(first)}) for {checkpoint}: backtest newer candles, "
                             "or pass --in-sample to trade bars the model was fitted on")
    if len(kept) < len(table):
        Console(stderr=True).print(f"trading the {len(kept)} bars {where}, which no weight was fitted on; "
                                   f"--in-sample adds the {len(table) - len(kept)} before")
    return kept, first


def _within(targets: pd.Series, bars: pd.DatetimeIndex, cut_start: bool, cut_end: bool) -> pd.Series:
    """Positions restricted to the bars --start/--end chose: the last position set before the first bar carries
    in at that bar (it holds until the next row), rows after the last bar are dropped. Without --start/--end every
    row must be a bar (a wrong time unit is named rather than ignored)."""
    import pandas as pd

    if cut_end:
        targets = targets[targets.index <= bars[-1]]
    if cut_start:
        before = targets.index < bars[0]
        if before.any() and bars[0] not in targets.index:
            carried = pd.Series([targets[before].iloc[-1]], index=bars[:1], name=targets.name)
            targets = pd.concat([carried, targets[~before]])
        else:
            targets = targets[~before]
    return targets


def register(app: typer.Typer) -> None:
    app.command("backtest")(backtest)

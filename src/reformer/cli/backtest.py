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

    from ..predictions import Predictions
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


def _stats_table(result: BacktestResult, hold: BacktestResult, caption: str | None = None) -> Table:
    """The strategy's statistics beside buy & hold (all equity long from the first fillable open, no fees)."""
    from ..data.sync import format_ms

    first, last = (format_ms(round(moment.timestamp() * 1000)) for moment in (result.start, result.end))
    table = Table(title=f"Backtest {first} .. {last}", caption=caption)
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
    predictions: Annotated[Path | None, typer.Option(help="CSV timestamp,prediction (`reformer predict --all`, a "
                                                          "walk-forward run's predictions.csv).")] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="Predict every bar with this checkpoint first.")] = None,
    funding_csv: Annotated[Path | None, typer.Option(help="CSV time,rate of perpetual funding.")] = None,
    start: Annotated[str | None, typer.Option(help="First bar (ISO-8601 or epoch ms).")] = None,
    end: Annotated[str | None, typer.Option(help="Last bar (ISO-8601 or epoch ms).")] = None,
    out: Annotated[Path | None, typer.Option(help="Write plots, trades.csv and stats.json into this folder (new or "
                                                  "empty, or any with --force).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the report files of a non-empty --out folder "
                                                        "(never through a symbolic link).")] = False,
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
    in_sample: Annotated[bool, typer.Option("--in-sample", help="With --checkpoint or --predictions, also trade "
                                                                "the bars before the model's out-of-sample period "
                                                                "(it was fitted on them).")] = False,
) -> None:
    """Backtest target positions, predictions or a checkpoint: next-bar fills, stops, fees and funding.
    Predictions are traded from the model's out-of-sample period on when the checkpoint or the file says where
    it starts (--in-sample: every row)."""
    import pandas as pd

    from ..strategy import BacktestConfig, backtest_positions, run_backtest, save_report
    from ..strategy.io import check_bar_times, read_funding_csv, read_positions_csv

    sources = [s for s in (positions, predictions, checkpoint) if s is not None]
    if len(sources) != 1:
        raise UserInputError("give exactly one of --positions POS.csv, --predictions PREDS.csv or --checkpoint PATH")
    if out is not None:  # before any work: a refused folder costs nothing
        from ..files import check_output_dir
        from ..strategy.plots import REPORT_FILES

        check_output_dir(out, REPORT_FILES.values(), force)
    preds = None
    if predictions is not None:
        from ..predictions import Predictions

        preds = Predictions.from_csv(predictions)
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
    traded: dict[str, object] = {}
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
        candles = _candles_interval(frame, csv, interval)
        if preds is not None:
            _check_interval(preds.interval, candles, f"{predictions} holds predictions for", csv is not None)
            subject, where = str(predictions), "from the model's out-of-sample period on"
        else:
            from ..training.checkpoint import read_meta
            from ..training.crypto import data_interval, first_unseen_bar, predict_all_predictions

            assert checkpoint is not None
            # checked before the model runs; an older checkpoint without its interval is checked by predict_all
            trained = data_interval(read_meta(checkpoint).get("data") or {})
            _check_interval(trained, candles, f"{checkpoint} was trained on", csv is not None)
            preds = predict_all_predictions(checkpoint, frame)
            subject, where = str(checkpoint), first_unseen_bar(checkpoint)[1]
        values, frame, traded = _tradable(preds, frame, in_sample, subject, where)
        bar_times = pd.DatetimeIndex(pd.to_datetime(frame["timestamp"], unit="ms", utc=True))
        result = run_backtest(values, frame, config, funding_rates=rates)
    extra = {"predictions": traded} if traded else {}
    if out is not None:
        written = save_report(result, frame, out, extra)
        console.print(f"wrote {', '.join(sorted(p.name for p in written.values()))} to {out}")
    if as_json:
        print(json.dumps({**result.to_dict(), **extra}))
    else:
        console.print(_stats_table(result, _buy_and_hold(frame, bar_times, initial_capital), _caption(traded)))


def _candles_interval(frame: pd.DataFrame, csv: Path | None, interval: str) -> str | None:
    """The Bybit interval of the candles: --interval for the store's series, the bar spacing of a CSV (None when
    it is no Bybit interval)."""
    from ..api.intervals import parse_interval
    from ..data.windows import bar_step
    from ..predictions import interval_of_step

    return parse_interval(interval) if csv is None else interval_of_step(bar_step(frame["timestamp"].to_numpy()))


def _check_interval(expected: str | None, candles: str | None, subject: str, from_csv: bool) -> None:
    """Predictions of one interval are no signal on candles of another (24 hourly bars are not 24 4-hour bars):
    refused when both intervals are known and differ, or when the candles' spacing is no interval at all."""
    from ..predictions import interval_words

    if expected is None or candles == expected:
        return
    shown = "of no Bybit interval" if candles is None else f"{interval_words(candles)} bars (interval {candles})"
    words = interval_words(expected)
    fix = f"a CSV of {words} candles" if from_csv else f"--interval {expected}"
    raise UserInputError(f"the candles are {shown}, but {subject} {words} bars (interval {expected}): backtest on "
                         f"{words} candles ({fix})")


def _tradable(preds: Predictions, frame: pd.DataFrame, in_sample: bool, subject: str, where: str
              ) -> tuple[pd.Series | pd.DataFrame, pd.DataFrame, dict[str, object]]:
    """The predictions to trade, the candles to trade them on and what stats.json records of them, for a
    checkpoint's predictions and a file's alike. From the model's first out-of-sample bar on when it is known (the
    candles too, so the statistics and buy & hold cover the traded bars only); every row with `in_sample`, or when
    it is unknown. Each case says so in one line on stderr."""
    import pandas as pd

    from ..data.sync import format_ms

    bars = pd.DatetimeIndex(pd.to_datetime(frame["timestamp"], unit="ms", utc=True))
    values = preds.values[preds.values.index.isin(bars)]
    if values.empty:
        raise UserInputError("no prediction falls on a bar of the chosen candles: check --start/--end")
    first = preds.first_out_of_sample
    record: dict[str, object] = {"source": preds.source, "first_out_of_sample": None, "in_sample": None,
                                 "in_sample_bars": None, "bars": len(values)}
    if first is None:
        typer.echo(f"{subject} does not say where the model's out-of-sample period starts: trading all "
                   f"{len(values)} predictions (any of a bar the model was fitted on flatters the result)", err=True)
        return values, frame, record
    first_ms = int(first.value // 1_000_000)
    before = values.index < first
    n_before, n_after = int(before.sum()), int((~before).sum())
    record["first_out_of_sample"] = first.isoformat()
    if in_sample:
        if n_before:
            typer.echo(f"--in-sample: trading all {len(values)} bars, {n_before} of them before the model's "
                       f"out-of-sample period (first {format_ms(first_ms)}): it was fitted on those, which flatters "
                       "the result", err=True)
        record.update(in_sample=n_before > 0, in_sample_bars=n_before)
        return values, frame, record
    if not n_after:
        raise UserInputError(f"no candles {where} ({format_ms(first_ms)}) for {subject}: backtest newer candles, "
                             "or pass --in-sample to trade bars the model was fitted on")
    if n_before:
        typer.echo(f"trading the {n_after} bars {where} (first {format_ms(first_ms)}), which no weight of the model "
                   f"was fitted on; --in-sample adds the {n_before} before", err=True)
    record.update(in_sample=False, in_sample_bars=0, bars=n_after)
    return values[~before], frame[frame["timestamp"] >= first_ms].reset_index(drop=True), record


def _caption(traded: dict[str, object]) -> str | None:
    """The stats table's warning when bars the model was fitted on were (or may have been) traded."""
    if not traded or traded["in_sample"] is False:
        return None
    if traded["in_sample"] is None:
        return "the predictions do not say where the model's out-of-sample period starts: all of them were traded"
    return f"{traded['in_sample_bars']} of the traded bars are in-sample (the model was fitted on them)"


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

"""`reformer backtest`'s run: its settings (`BacktestOptions`), the candles, predictions and market inputs they
name, the strategy layer's backtest over them, and what it writes (`backtest_run`). The model-level
`run_backtest` of the original design is `model_backtest.py`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import ConfigError, UserInputError
from ..strategy import BacktestConfig, BacktestResult, Instrument
from ..strategy import run_backtest as backtest_predictions
from .backtest_inputs import (
    bar_times,
    candles_interval,
    check_funding_source,
    check_interval,
    check_range,
    check_signal_options,
    checkpoint_predictions,
    cost_record,
    mark_on_bars,
    positions_on_bars,
    stored_market,
    trailing_volatility,
    volatility_forecast,
)
from .portfolio import PortfolioRun, portfolio_run

if TYPE_CHECKING:
    from ..predictions import Predictions

__all__ = ["BacktestOptions", "BacktestRun", "backtest_run"]


_INSTRUMENT_FLAGS = ("tick_size", "qty_step", "min_qty")


@dataclass(frozen=True)
class BacktestOptions:
    """`reformer backtest`'s settings, each a flag of the command (see `reformer backtest --help`): the candles
    (a CSV, or the store's series), exactly one of `positions`, `predictions` or `checkpoint` to trade, the bars to
    trade (`start`, `end`: ISO-8601 or epoch ms), the market's funding rates and mark candles, the engine's
    `config` and the symbol's `instrument` rules.

    Raises:
        ConfigError: `category` differs from `config.category` (the store's series and the engine's contract are
            one category).
    """

    symbol: str = "BTCUSDT"
    interval: str = "60"
    category: str = "linear"
    """The store's series and the engine's contract: "linear", "inverse" or "spot" (`config.category` too)."""
    db: Path | None = None
    csv: Path | None = None
    positions: Path | None = None
    predictions: Path | None = None
    checkpoint: Path | None = None
    funding_csv: Path | None = None
    """FUNDING.csv: `timestamp,funding_rate` settlements (perpetuals only)."""
    mark_csv: Path | None = None
    """MARK.csv: mark-price candles `timestamp,open,high,low,close` on the traded bars (None: the last price)."""
    symbols: str | None = None
    """A portfolio of the store's series ("BTCUSDT,ETHUSDT") on one equity: `reformer.pipelines.portfolio`."""
    start: str | None = None
    end: str | None = None
    out: Path | None = None
    force: bool = False
    config: BacktestConfig = field(default_factory=BacktestConfig)
    """The engine's settings (by default the category's base-tier fees)."""
    instrument: Instrument | None = None
    """Tick, quantity step, minimum order (None: no rounding); an empty symbol is labelled with `symbol`."""
    in_sample: bool = False
    vol_forecast: Path | None = None
    """A volatility model's predictions (`--task realized-vol`): `vol_target` sizes by their forecast instead of
    the trailing realised volatility."""

    def __post_init__(self) -> None:
        if self.category != self.config.category:
            raise ConfigError(f"BacktestOptions.category={self.category!r} but config.category="
                              f"{self.config.category!r}: build the config with BacktestConfig("
                              f"category={self.category!r})")

    @classmethod
    def from_flags(cls, flags: Mapping[str, Any]) -> BacktestOptions:
        """The options of `reformer backtest`'s flags, keyed by parameter name: `BacktestConfig`'s fields build
        `config` (`category` sets the options' and the config's), tick_size, qty_step and min_qty build
        `instrument` (labelled with `symbol`), the rest are the options' own.

        Raises:
            ConfigError: a value out of range, named by its flag (`--leverage 200.0 is invalid: ...`).
        """
        config_names = {item.name for item in fields(BacktestConfig)}
        own = {item.name for item in fields(cls)} - {"config", "instrument"}
        unknown = set(flags) - config_names - own - set(_INSTRUMENT_FLAGS)
        assert not unknown, f"flags that are no option: {sorted(unknown)}"
        try:
            config = BacktestConfig(**{name: value for name, value in flags.items() if name in config_names})
            instrument = Instrument(str(flags.get("symbol", "")),
                                    **{name: flags.get(name) or 0.0 for name in _INSTRUMENT_FLAGS})
        except ConfigError as exc:
            # the config names its field; a command's user knows the flag
            raise ConfigError(re.sub(r"^(?:BacktestConfig|Instrument)\.(\w+)=(\S+)",
                                     lambda m: f"--{m[1].replace('_', '-')} {m[2]}", str(exc))) from None
        return cls(config=config, instrument=instrument, **{name: flags[name] for name in own if name in flags})


@dataclass(frozen=True)
class BacktestRun:
    """What `backtest_run` did: the result, the candles it covers, what stats.json records of the traded
    predictions (`traded`, empty for positions) and of the fees and funding (`costs`), and the report files
    written (`written`, with `out`)."""

    result: BacktestResult
    frame: pd.DataFrame
    traded: dict[str, object]
    written: dict[str, Path] | None
    initial_capital: float
    costs: dict[str, object] = field(default_factory=dict)
    """`cost_record`: "fee_rates"; on perpetuals "funding" ("none given", "off (--no-funding)", "applied")
    and, when applied, "funding_settlements"."""

    @property
    def extra(self) -> dict[str, object]:
        """stats.json's (and the JSON output's) record of the traded predictions, fees and funding."""
        return {**({"predictions": self.traded} if self.traded else {}), **self.costs}

    def buy_and_hold(self) -> BacktestResult:
        """Buy & hold over the same candles, no fees: all equity long from the first fillable open (spot: the
        coin bought then; inverse: the coin the equity is held in, which never trades)."""
        from ..strategy import backtest_positions

        category = self.result.config.category
        config = BacktestConfig(initial_capital=self.initial_capital, category=category, position_size=1.0,
                                stop_loss=0.0, take_profit=0.0, commission=0.0, slippage=0.0, funding=False)
        held = 0.0 if category == "inverse" else 1.0
        return backtest_positions(pd.Series([held], index=bar_times(self.frame)[:1]), self.frame, config)


def backtest_run(options: BacktestOptions, *, say: Callable[[str], None] | None = None
                 ) -> BacktestRun | PortfolioRun:
    """Backtest target positions, predictions or a checkpoint's predictions on candles, and write the report into
    `options.out`. Predictions are traded from the model's out-of-sample period on when the checkpoint or the
    file says where it starts (`in_sample`: every row).

    With a checkpoint, the candles before `start` feed the model's first windows, so that every bar from `start`
    on is predicted and traded; the statistics and buy & hold cover the bars from the first predicted one.

    Args:
        options: the command's settings.
        say: one-line notes on which predictions are traded (default: none).

    Raises:
        UserInputError: a `start` at or after `end`; not exactly one of positions, predictions and checkpoint;
            options that only shape positions made from predictions beside positions (`check_signal_options`);
            an `out` folder that may not be written; funding rates for spot; a series checkpoint; predictions of
            another interval than the candles'; fewer than 2 candles or no prediction in the chosen range; too
            few candles before `start` for a checkpoint's first window; a traded bar without a mark candle;
            anything the engine refuses.
    """
    from ..data.sync import parse_time_ms
    from ..strategy import save_report
    from ..strategy.io import read_funding_csv, read_mark_csv

    first = None if options.start is None else parse_time_ms(options.start, "--start")
    last = None if options.end is None else parse_time_ms(options.end, "--end")
    check_range(first, last, options.start, options.end)
    config = options.config
    sources = [s for s in (options.positions, options.predictions, options.checkpoint) if s is not None]
    if options.symbols is None and len(sources) != 1:
        raise UserInputError("give exactly one of --positions POS.csv, --predictions PREDS.csv or --checkpoint PATH")
    check_signal_options(config, options.positions is not None, options.in_sample, options.vol_forecast)
    if options.symbols is not None:
        return portfolio_run(options, say=say)
    check_funding_source(config, options.funding_csv)
    if options.out is not None:  # before any work: a refused folder costs nothing
        from ..files import check_output_dir
        from ..strategy.plots import REPORT_FILES

        check_output_dir(options.out, REPORT_FILES.values(), options.force)
    preds = _read_predictions(options)
    before, frame = _load_klines(options, first, last)
    rates = None if options.funding_csv is None else read_funding_csv(options.funding_csv)
    mark = None if options.mark_csv is None else read_mark_csv(options.mark_csv)
    volatility: Predictions | pd.Series | None = volatility_forecast(options.vol_forecast, config,
                                                                     options.positions is not None)
    if volatility is None and config.vol_target is not None and options.positions is None:
        volatility = trailing_volatility(pd.concat([before, frame], ignore_index=True), config.vol_window)
    traded: dict[str, object] = {}
    if options.positions is not None:
        cut = (first is not None, last is not None)
        values: pd.Series | pd.DataFrame = positions_on_bars(options.positions, frame, *cut)
    else:
        values, frame, traded = _predicted(options, preds, before, frame, say or (lambda line: None))
    instrument = _instrument(options)
    if options.csv is None and config.category != "spot":  # the store's own series: its funding, mark and tiers
        from ..api.intervals import parse_interval

        stored = stored_market(options.db, options.category, options.symbol, parse_interval(options.interval), frame)
        for note in stored.notes:
            (say or (lambda line: None))(note)
        rates = rates if options.funding_csv is not None else stored.funding
        mark = mark if options.mark_csv is not None else stored.mark
        if instrument.maintenance_margin_rate is None:
            instrument = dataclasses.replace(instrument, maintenance_margin_rate=stored.maintenance_margin_rate)
    inputs = {"funding_rates": rates, "instrument": instrument,
              "mark": None if mark is None else mark_on_bars(mark, frame, str(options.mark_csv or "the store"))}
    if options.positions is not None:
        from ..strategy import backtest_positions

        result = backtest_positions(values, frame, config, **inputs)
    else:
        result = backtest_predictions(values, frame, config, volatility=volatility, **inputs)
    run = BacktestRun(result, frame, traded, None, config.initial_capital,
                      cost_record(config, options.funding_csv, rates, frame))
    if options.out is None:
        return run
    return dataclasses.replace(run, written=save_report(result, frame, options.out, run.extra))


def _instrument(options: BacktestOptions) -> Instrument:
    """The options' instrument, labelled with `symbol` when it has no name of its own."""
    instrument = options.instrument or Instrument()
    return instrument if instrument.symbol else dataclasses.replace(instrument, symbol=options.symbol)


def _read_predictions(options: BacktestOptions) -> Predictions | None:
    """A --predictions file's predictions; a --checkpoint is checked (a missing or wrong one is named before any
    data is read)."""
    if options.checkpoint is not None:
        from ..training.checkpoint import resolve_checkpoint_dir
        from .series_models import is_series_checkpoint

        if is_series_checkpoint(resolve_checkpoint_dir(options.checkpoint)):
            raise UserInputError(f"{options.checkpoint} is a series forecaster (trained with --target), which "
                                 "predicts no trade: backtest a candle model's checkpoint, or its predictions with "
                                 "--predictions")
    if options.predictions is None:
        return None
    from ..predictions import Predictions

    return Predictions.from_csv(options.predictions)


def _load_klines(options: BacktestOptions, start: int | None, end: int | None
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The candles of the CSV or of the store's series (--interval as Bybit codes it) before `start` (a model's
    input, a volatility's warm-up; never traded), and those within [start, end]."""
    from ..api.intervals import parse_interval
    from ..data import read_klines_frame
    from ..data.stored import read_series

    if options.csv is not None:
        frame = read_klines_frame(options.csv)
    else:
        frame = read_series(options.db, options.category, options.symbol, parse_interval(options.interval),
                            alternative="or pass --csv")
    if end is not None:
        frame = frame[frame["timestamp"] <= end]
    inside = np.ones(len(frame), dtype=bool) if start is None else (frame["timestamp"] >= start).to_numpy()
    if int(inside.sum()) < 2:
        raise UserInputError("fewer than 2 candles in the chosen range: widen --start/--end")
    return frame[~inside].reset_index(drop=True), frame[inside].reset_index(drop=True)


def _predicted(options: BacktestOptions, preds: Predictions | None, before: pd.DataFrame, frame: pd.DataFrame,
               say: Callable[[str], None]) -> tuple[pd.Series | pd.DataFrame, pd.DataFrame, dict[str, object]]:
    """The predictions of the file or of the checkpoint (whose first windows read the candles `before` the
    range) to trade, with `_tradable`'s candles and record."""
    candles = candles_interval(frame, options.csv, options.interval)
    if preds is not None:
        preds.require_returns()
        check_interval(preds.interval, candles, f"{options.predictions} holds predictions for",
                        options.csv is not None)
        subject, where = str(options.predictions), "from the model's out-of-sample period on"
    else:
        from ..predictions import data_interval
        from ..training.meta import CandleMeta
        from .crypto import first_unseen_bar

        checkpoint = options.checkpoint
        assert checkpoint is not None
        # checked before the model runs; an older checkpoint without its interval is checked by predict_all
        candle_meta = CandleMeta.read(checkpoint, options.symbol)
        if candle_meta.task == "realized-vol":
            raise UserInputError(f"{checkpoint} forecasts the log realised variance (trained with --task "
                                 "realized-vol), not a return: it is no trading signal; backtest a return model")
        candle_data = candle_meta.data
        trained = data_interval(candle_data.interval, candle_data.bar_ms)
        check_interval(trained, candles, f"{checkpoint} was trained on", options.csv is not None)
        source = (str(options.csv) if options.csv is not None
                  else f"the store's {options.category} {options.symbol} series (--interval {options.interval})")
        preds = checkpoint_predictions(checkpoint, before, frame, options.symbol, options.start, source)
        subject, where = str(checkpoint), first_unseen_bar(checkpoint, options.symbol)[1]
    return _tradable(preds, frame, options.in_sample, subject, where, say, options.start is not None)


def _tradable(preds: Predictions, frame: pd.DataFrame, in_sample: bool, subject: str, where: str,
              say: Callable[[str], None], start_given: bool = False
              ) -> tuple[pd.Series | pd.DataFrame, pd.DataFrame, dict[str, object]]:
    """The predictions to trade, the candles to trade them on and what stats.json records of them, for a
    checkpoint's predictions and a file's alike. From the first bar with a prediction on (before it the strategy
    could only be flat while buy & hold runs), and from the model's first out-of-sample bar on when it is known
    (the candles too, so the statistics and buy & hold cover the traded bars only); every row with `in_sample`,
    or when it is unknown. Each case is said in one line (`say`), and so, after --start (`start_given`), are
    bars left out for want of a prediction."""
    from ..data.sync import format_ms

    times = bar_times(frame)
    values = preds.values[preds.values.index.isin(times)]
    if values.empty:
        raise UserInputError("no prediction falls on a bar of the chosen candles: check --start/--end")
    first = preds.first_out_of_sample
    unpredicted = int((times < values.index[0]).sum())
    if unpredicted:
        frame = frame[np.asarray(times >= values.index[0])].reset_index(drop=True)
        if start_given and (first is None or in_sample or first <= values.index[0]):
            say(f"{subject} has no prediction for the first {unpredicted} bars from --start: the backtest starts "
                f"at its first, {format_ms(int(values.index[0].value // 1_000_000))}")
    record: dict[str, object] = {"source": preds.source, "first_out_of_sample": None, "in_sample": None,
                                 "in_sample_bars": None, "bars": len(values)}
    if first is None:
        say(f"{subject} does not say where the model's out-of-sample period starts: trading all {len(values)} "
            "predictions (any of a bar the model was fitted on flatters the result)")
        return values, frame, record
    first_ms = int(first.value // 1_000_000)
    before = values.index < first
    n_before, n_after = int(before.sum()), int((~before).sum())
    record["first_out_of_sample"] = first.isoformat()
    if in_sample:
        if n_before:
            say(f"--in-sample: trading all {len(values)} bars, {n_before} of them before the model's out-of-sample "
                f"period (first {format_ms(first_ms)}): it was fitted on those, which flatters the result")
        record.update(in_sample=n_before > 0, in_sample_bars=n_before)
        return values, frame, record
    if not n_after:
        raise UserInputError(f"no candles {where} ({format_ms(first_ms)}) for {subject}: backtest newer candles, "
                             "or pass --in-sample to trade bars the model was fitted on")
    if n_before:
        say(f"trading the {n_after} bars {where} (first {format_ms(first_ms)}), which no weight of the model was "
            f"fitted on; --in-sample adds the {n_before} before")
    record.update(in_sample=False, in_sample_bars=0, bars=n_after)
    return values[~before], frame[frame["timestamp"] >= first_ms].reset_index(drop=True), record

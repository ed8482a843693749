"""What `reformer backtest` reads besides the candles: target positions on the chosen bars, funding rates, mark
candles, which interval the candles and the predictions are, and what the report records of the fees and funding.

A perpetual backtest without funding rates looks cheaper to hold than it is (at the resting rate of 0.01 % every
8 hours a long pays about 11 % of its notional a year), so the report says when none were given, and how many
settlements fell inside the traded bars when they were.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import UserInputError
from ..predictions import Predictions
from ..strategy import BacktestConfig, forecast_volatility, realized_volatility
from ..strategy.io import check_bar_times, read_positions_csv

__all__ = [
    "StoredMarket",
    "bar_times",
    "candles_interval",
    "check_funding_source",
    "check_interval",
    "check_range",
    "check_signal_options",
    "checkpoint_predictions",
    "cost_record",
    "mark_on_bars",
    "positions_on_bars",
    "stored_market",
    "trailing_volatility",
    "volatility_forecast",
    "within_range",
]


def check_funding_source(config: BacktestConfig, funding_csv: Path | None) -> None:
    """Refuse funding rates for spot, which settles none (before any file is read).

    Raises:
        UserInputError: `funding_csv` given with `config.category` "spot".
    """
    if funding_csv is not None and config.category == "spot":
        raise UserInputError(f"spot has no funding: leave out --funding-csv {funding_csv}, or backtest the "
                             "perpetual with --category linear (or inverse)")


def mark_on_bars(mark: pd.DataFrame, frame: pd.DataFrame, path: str) -> pd.DataFrame:
    """The mark candles of the traded bars; every bar must have one.

    Args:
        mark: `read_mark_csv`'s frame (UTC DatetimeIndex, open/high/low/close).
        frame: the traded candles (`timestamp`: open times, epoch ms).
        path: the mark file, for messages.

    Raises:
        UserInputError: a traded bar without a mark candle (the first is named).
    """
    times = bar_times(frame)
    missing = np.flatnonzero(~times.isin(mark.index))
    if missing.size:
        first = times[int(missing[0])]
        raise UserInputError(f"{path} has no mark candle at {first:%Y-%m-%d %H:%M} UTC ({missing.size} of the "
                             f"{len(times)} traded bars missing): give mark candles of the same interval for every "
                             "traded bar, or leave out --mark-csv to use the last price")
    return mark.loc[times]


@dataclass(frozen=True)
class StoredMarket:
    """What the store holds for a perpetual besides its candles, on the traded bars (None where it holds none)."""

    funding: pd.Series | None
    mark: pd.DataFrame | None
    maintenance_margin_rate: float | None
    """The first risk-limit tier's."""
    notes: tuple[str, ...]
    """One line per part the store lacks, with the command that fetches it."""


def stored_market(db: Path | None, category: str, symbol: str, interval: str, frame: pd.DataFrame) -> StoredMarket:
    """Funding, mark candles and the first risk tier of `symbol` from the store at `db`, for the traded candles.

    Mark candles are used only when the store has one for every traded bar: a partial series would price some
    bars' liquidation checks on the mark and others on the last price.
    """
    from ..data.derivatives_store import DerivativesStore

    times = bar_times(frame)
    fetch = f"reformer fetch --symbol {symbol} --interval {interval} --funding --mark"
    notes: list[str] = []
    with DerivativesStore(db) as store:
        end = int(frame["timestamp"].iloc[-1]) + int(np.median(np.diff(frame["timestamp"].to_numpy())))
        rates = store.load_funding(category, symbol, int(frame["timestamp"].iloc[0]), end)
        marks = store.load_mark_frame(category, symbol, interval, int(frame["timestamp"].iloc[0]),
                                      int(frame["timestamp"].iloc[-1]))
        tiers = store.load_risk_tiers(category, symbol)
    if rates.empty:
        rates = None
        notes.append(f"the store holds no funding for {symbol} over these bars: {fetch}")
    covered = times.isin(marks.index)
    mark = marks.loc[times] if covered.all() else None
    if mark is None:
        notes.append(f"the store's mark candles cover {int(covered.sum())} of {len(times)} traded bars: liquidation "
                     f"and funding use the last price ({fetch})")
    if not tiers:
        notes.append(f"the store holds no risk-limit tiers for {symbol}: the maintenance margin is the default 0.5% "
                     f"({fetch})")
    mmr = tiers[0].maintenance_margin_rate if tiers else None
    return StoredMarket(rates, mark, mmr, tuple(notes))


def cost_record(config: BacktestConfig, funding_csv: Path | None, rates: pd.Series | None,
                frame: pd.DataFrame) -> dict[str, object]:
    """stats.json's (and the JSON output's) record of the fees and funding a backtest counted.

    Returns:
        "fee_rates": the taker and maker fee applied; for a perpetual (linear, inverse) also "funding": "none
        given", "off (--no-funding)" or "applied", and with "applied" "funding_settlements": the settlements
        inside the traded bars (from the first bar's open to the last bar's end).
    """
    taker, maker = config.fees
    record: dict[str, object] = {"fee_rates": {"taker": taker, "maker": maker}}
    if config.category == "spot":
        return record
    if rates is None:
        record["funding"] = "none given"
    elif not config.funding:
        record["funding"] = "off (--no-funding)"
    else:
        times = frame["timestamp"].to_numpy(dtype="int64")
        step = int(np.median(np.diff(times)))
        settled = rates.index.as_unit("ms").asi8
        record["funding"] = "applied"
        record["funding_settlements"] = int(((settled >= times[0]) & (settled < times[-1] + step)).sum())
    return record


def bar_times(frame: pd.DataFrame) -> pd.DatetimeIndex:
    """The candles' open times (`timestamp`, epoch ms) as a UTC DatetimeIndex."""
    return pd.DatetimeIndex(pd.to_datetime(frame["timestamp"], unit="ms", utc=True))


def positions_on_bars(path: Path, frame: pd.DataFrame, cut_start: bool, cut_end: bool) -> pd.Series:
    """The target positions of `path` on the candles' bars; each row inside the chosen range must be a bar.

    Raises:
        DataFormatError, UserInputError: a malformed file; a row inside the range whose time is no bar (named by
            its file line).
    """
    times = bar_times(frame)
    raw = read_positions_csv(path)
    inside = np.ones(len(raw), dtype=bool)  # the rows --start/--end keep (named by their own file lines)
    if cut_start:
        inside &= np.asarray(raw.index >= times[0])
    if cut_end:
        inside &= np.asarray(raw.index <= times[-1])
    check_bar_times(path, raw.index[inside], times, lines=np.flatnonzero(inside) + 2)
    return within_range(raw, times, cut_start, cut_end)


def within_range(targets: pd.Series, bars: pd.DatetimeIndex, cut_start: bool, cut_end: bool) -> pd.Series:
    """Positions restricted to the bars --start/--end chose: the last position set before the first bar carries
    in at that bar (it holds until the next row), rows after the last bar are dropped. Without --start/--end every
    row must be a bar (a wrong time unit is named rather than ignored)."""
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


def candles_interval(frame: pd.DataFrame, csv: Path | None, interval: str) -> str | None:
    """The Bybit interval of the candles: --interval for the store's series, the bar spacing of a CSV (None when
    it is no Bybit interval)."""
    from ..api.intervals import parse_interval
    from ..data.windows import bar_step
    from ..predictions import interval_of_step

    return parse_interval(interval) if csv is None else interval_of_step(bar_step(frame["timestamp"].to_numpy()))


def check_interval(expected: str | None, candles: str | None, subject: str, from_csv: bool) -> None:
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


def volatility_forecast(path: Path | None, config: BacktestConfig, positions_given: bool) -> Predictions | None:
    """A --vol-forecast file's predictions, checked: a variance forecast, for a --vol-target on predictions."""
    if path is None:
        return None
    if config.vol_target is None or positions_given:
        raise UserInputError("--vol-forecast sizes positions to --vol-target: add --vol-target (a per-bar "
                             "volatility, e.g. 0.005) and trade --predictions or a --checkpoint")
    forecast = Predictions.from_csv(path)
    forecast_volatility(forecast)  # refuses a file without a variance forecast, before the backtest runs
    return forecast


def check_range(first: int | None, last: int | None, start: str | None, end: str | None) -> None:
    """Refuse a --start at or after --end before any candle is read (a backtest needs two bars at least).

    Raises:
        UserInputError: `first` >= `last` (both given, epoch ms), named by the flags' own text.
    """
    if first is not None and last is not None and first >= last:
        relation = "is after" if first > last else "is the same time as"
        raise UserInputError(f"--start {start} {relation} --end {end}: give a --start before --end")


_SIGNAL_OPTIONS = {
    "long_threshold": ("--long-threshold", "turns predictions into positions"),
    "short_threshold": ("--short-threshold", "turns predictions into positions"),
    "vol_target": ("--vol-target", "sizes positions made from predictions"),
    "vol_window": ("--vol-window", "sets the volatility window of --vol-target, which sizes positions made from "
                                   "predictions"),
}


def check_signal_options(config: BacktestConfig, positions_given: bool, in_sample: bool,
                         vol_forecast: Path | None) -> None:
    """Refuse options that would be ignored: those that only shape positions made from predictions (thresholds,
    volatility sizing, --in-sample) beside --positions, which are traded as given; --vol-window without
    --vol-target, or beside --vol-forecast (whose forecast replaces the realised volatility it measures).

    A config field counts as given when it differs from `BacktestConfig`'s default (the command's defaults are
    the same).

    Raises:
        UserInputError: such a combination, each option named by its flag.
    """
    defaults = {item.name: item.default for item in fields(BacktestConfig)}
    if positions_given:
        given = [(flag, what) for name, (flag, what) in _SIGNAL_OPTIONS.items()
                 if getattr(config, name) != defaults[name]]
        if vol_forecast is not None:
            given.append(("--vol-forecast", "sizes positions made from predictions"))
        if in_sample:
            given.append(("--in-sample", "chooses which predictions are traded"))
        if len(given) == 1:
            raise UserInputError(f"{given[0][0]} {given[0][1]}; --positions are used as given: drop one of them")
        if given:
            raise UserInputError(f"{', '.join(flag for flag, _ in given)} shape positions made from predictions; "
                                 "--positions are used as given: drop --positions or those options")
        return
    if config.vol_window != defaults["vol_window"]:
        if config.vol_target is None:
            raise UserInputError("--vol-window sets the volatility window of --vol-target: add --vol-target (a "
                                 "per-bar volatility, e.g. 0.005) or drop --vol-window")
        if vol_forecast is not None:
            raise UserInputError("--vol-forecast replaces the trailing realised volatility that --vol-window "
                                 "measures: drop one of them")


def checkpoint_predictions(checkpoint: Path, before: pd.DataFrame, frame: pd.DataFrame, symbol: str,
                           start: str | None, source: str) -> Predictions:
    """A candle checkpoint's predictions for every bar of `frame` from its first on (`predict_all_predictions`).

    The candles `before` the chosen range feed the first windows: each prediction still sees candles up to its
    own bar only. Of them, the window and its features' warm-up twice over are kept (as `reformer trade` keeps),
    so recursive features match those read from the whole history, without predicting every bar before it.

    Args:
        checkpoint: a candle model's run or checkpoint folder.
        before: the source's candles before `frame` (empty without --start).
        frame: the chosen range's candles.
        symbol: of a multi-symbol model, which symbol the candles are.
        start: --start as given (None: no history is required, the first windows end after the warm-up).
        source: where the candles come from, for the message.

    Raises:
        UserInputError: with `start`, fewer candles before it than the window ending at its first bar needs
            (the feature warm-up + seq_len - 1), with the times that would do.
    """
    from ..training.meta import CandleMeta
    from .crypto import predict_all_predictions

    meta = CandleMeta.read(checkpoint, symbol)
    warmup, seq_len = meta.feature_spec.warmup, meta.dataset.seq_len
    need = warmup + seq_len - 1
    if start is not None and len(before) < need:
        from ..data.windows import bar_step

        times = np.concatenate([before["timestamp"].to_numpy(np.int64), frame["timestamp"].to_numpy(np.int64)])
        first = int(frame["timestamp"].iloc[0])
        earliest = first - need * bar_step(frame["timestamp"].to_numpy())
        later = f", or --start {_iso(int(times[need]))} or later" if len(times) > need else ""
        raise UserInputError(f"{checkpoint} needs {need} candles before --start {start} for the window ending at "
                             f"its first bar (feature warm-up {warmup} + seq_len {seq_len} - 1), and {source} holds "
                             f"{len(before)}: give candles from {_iso(earliest)} on{later}")
    kept = before.iloc[max(0, len(before) - (seq_len + 2 * warmup)):]
    return predict_all_predictions(checkpoint, pd.concat([kept, frame], ignore_index=True), symbol=symbol)


def _iso(ms: int) -> str:
    """Epoch ms as a time --start takes (ISO-8601, UTC)."""
    return pd.Timestamp(ms, unit="ms", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def trailing_volatility(candles: pd.DataFrame, window: int) -> pd.Series:
    """`realized_volatility` of the candles' closes, by bar time: measured over the candles before the traded
    bars too, so that --vol-target sizes from the first traded bar on rather than `window` bars later."""
    close = pd.Series(candles["close"].to_numpy(dtype="float64"), index=bar_times(candles))
    return realized_volatility(close, window)

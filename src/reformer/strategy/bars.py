"""Input normalisation: klines to a bar frame, sparse positions and funding rates aligned to the bars.

Every public entry point of the strategy layer funnels its inputs through here, so the engine only ever sees
a UTC `DatetimeIndex` of strictly increasing bar open times and float OHLC columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..api.types import Kline
from ..bars import bar_frame
from ..errors import UserInputError

__all__ = ["KlinesLike", "align_mark", "align_positions", "bar_spacing", "funding_per_bar", "to_bar_frame",
           "to_bar_times"]

KlinesLike = pd.DataFrame | Sequence[Kline]
"""A DataFrame with a `timestamp` column (epoch ms) or a DatetimeIndex plus open/high/low/close, or Klines."""



def to_bar_frame(klines: Any) -> pd.DataFrame:
    """Klines as bars indexed by UTC open time ("time"): `reformer.bars.bar_frame`, the one conversion.

    Raises:
        DataFormatError: missing columns, fewer than 2 bars, unsorted or duplicate times, non-positive or missing
            prices.
    """
    return bar_frame(klines)


def bar_spacing(index: pd.DatetimeIndex) -> pd.Timedelta:
    """The typical bar length: the median gap between consecutive bar open times."""
    return pd.Timedelta(pd.Series(index).diff().median())


def to_bar_times(index: pd.Index, what: str) -> pd.DatetimeIndex:
    """Convert an index of epoch milliseconds or datetimes to a UTC DatetimeIndex.

    Raises:
        UserInputError: the index is neither datetimes nor integers (`what` names the argument).
    """
    if isinstance(index, pd.DatetimeIndex):
        return index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    if pd.api.types.is_integer_dtype(index.dtype):
        return pd.DatetimeIndex(pd.to_datetime(np.asarray(index, dtype="int64"), unit="ms", utc=True))
    raise UserInputError(f"{what} must be indexed by bar times (DatetimeIndex or epoch ms integers), "
                         f"not {type(index).__name__} of {index.dtype}")


def align_positions(positions: pd.Series, bars: pd.DatetimeIndex, *, what: str = "positions") -> np.ndarray:
    """Expand sparse target positions to one value per bar.

    The position at a row holds until the next row; bars before the first row are flat (0).

    Args:
        positions: target positions in [-1, 1], indexed by bar open times (DatetimeIndex or epoch ms).
        bars: the bar open times of the klines (UTC).
        what: the argument name used in error messages.

    Returns:
        float64 array of length len(bars).

    Raises:
        UserInputError: a row whose time is not a bar, a duplicate time, or a value that is missing or outside
            [-1, 1]; the message names the row.
    """
    if not isinstance(positions, pd.Series):
        raise UserInputError(f"{what} must be a pandas Series indexed by bar time, not {type(positions).__name__}")
    times = to_bar_times(positions.index, what)
    values = pd.to_numeric(positions, errors="coerce").to_numpy(dtype="float64")
    bad = np.flatnonzero(~np.isfinite(values) | (np.abs(values) > 1))
    if bad.size:
        row = int(bad[0])
        raise UserInputError(f"{what} row {row} ({times[row]}) has {positions.iloc[row]!r}: a target "
                             "position must be a number in [-1, 1] (use 0 for flat)")
    locations = bars.get_indexer(times)
    bad = np.flatnonzero(locations < 0)
    if bad.size:
        row = int(bad[0])
        raise UserInputError(f"{what} row {row} has time {times[row]}, which is not a bar open time of the "
                             f"klines ({bars[0]} .. {bars[-1]}): use the klines' timestamps")
    if times.has_duplicates:
        duplicate = int(np.flatnonzero(times.duplicated())[0])
        raise UserInputError(f"{what} row {duplicate} repeats time {times[duplicate]}: give one target per bar")
    dense = np.full(len(bars), np.nan)
    dense[locations] = values
    # forward-fill: a sparse target holds until the next row; before the first row the strategy is flat
    filled = pd.Series(dense).ffill().fillna(0.0).to_numpy()
    return filled


def funding_per_bar(rates: pd.Series | None, bars: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
    """Map funding rates to bars: those at a bar's open time, and those strictly inside a bar.

    Args:
        rates: funding rates (fractions, positive = longs pay) indexed by funding time; None for no funding.
        bars: the bar open times (UTC).

    Returns:
        (at_open, inside): float64 arrays of summed rates per bar. Times before the first bar or at/after the
        end of the last bar (its open plus the bar spacing) are ignored.

    Raises:
        UserInputError: a rate that is not a finite number (the message names the row).
    """
    at_open = np.zeros(len(bars))
    inside = np.zeros(len(bars))
    if rates is None or len(rates) == 0:
        return at_open, inside
    if not isinstance(rates, pd.Series):
        raise UserInputError(f"funding_rates must be a Series of rates indexed by funding time, "
                             f"not {type(rates).__name__}")
    times = to_bar_times(rates.index, "funding_rates")
    values = pd.to_numeric(rates, errors="coerce").to_numpy(dtype="float64")
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        row = int(bad[0])
        raise UserInputError(f"funding_rates row {row} ({times[row]}) has {rates.iloc[row]!r}: "
                             "pass a finite rate (a fraction, e.g. 0.0001)")
    end = bars[-1] + bar_spacing(bars)
    keep = (times >= bars[0]) & (times < end)
    times, values = times[keep], values[keep]
    bar_of = bars.searchsorted(times, side="right") - 1  # the last bar opening at or before the funding time
    on_open = bars[bar_of] == times
    np.add.at(at_open, bar_of[on_open], values[on_open])
    np.add.at(inside, bar_of[~on_open], values[~on_open])
    return at_open, inside


def align_mark(mark: Any, bars: pd.DataFrame) -> pd.DataFrame | None:
    """Mark-price candles on the bars' times (open/high/low/close), or None when `mark` is None.

    Raises:
        UserInputError: a bar without a mark candle (the message names the first).
    """
    if mark is None:
        return None
    frame = to_bar_frame(mark)
    aligned = frame.reindex(bars.index)[["open", "high", "low", "close"]]
    missing = np.flatnonzero(aligned.isna().any(axis=1).to_numpy())
    if missing.size:
        raise UserInputError(f"the mark-price candles have no bar at {bars.index[int(missing[0])]} "
                             f"({missing.size} of {len(bars)} bars missing): fetch mark candles for the whole "
                             "range (reformer fetch --mark), or leave them out to use the last price")
    return aligned

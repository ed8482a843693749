"""Candles as a pandas frame: the one conversion every layer uses (pandas and numpy only; no torch).

Two views of the same validated candles, in bar open time order:

* `candle_frame`: a `timestamp` column of epoch milliseconds UTC (the machine format of the store and the files)
  and float open/high/low/close/volume[/turnover]; the data layer computes features on it;
* `bar_frame`: the rows indexed by a UTC `DatetimeIndex` named "time", open/high/low/close as floats and any other
  column kept; the strategy layer trades on it.

Both take a `Kline` sequence (or 7-tuples in its order) or a DataFrame whose times are a `timestamp` (or
`start_time`) column of epoch ms or datetimes, or a `DatetimeIndex`. Datetimes are converted through their own
unit: reading their int64 as milliseconds would put 2024 in the year 55969 (pandas stores them in us or ns).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .api.types import Kline
from .errors import DataFormatError

__all__ = ["CANDLE_COLUMNS", "OHLC", "bar_frame", "candle_frame", "ms_to_times", "times_to_ms"]

CANDLE_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume", "turnover")
OHLC = ("open", "high", "low", "close")


def times_to_ms(times: Any) -> np.ndarray:
    """Datetimes (naive = UTC) to epoch milliseconds, (n,) int64."""
    return pd.DatetimeIndex(pd.to_datetime(times, utc=True)).as_unit("ms").asi8


def ms_to_times(ms: Any) -> pd.DatetimeIndex:
    """Epoch milliseconds to a UTC `DatetimeIndex`."""
    return pd.DatetimeIndex(pd.to_datetime(np.asarray(ms, dtype=np.int64), unit="ms", utc=True))


def candle_frame(klines: Any) -> pd.DataFrame:
    """Validated candles with a `timestamp` column of epoch ms and float prices and volumes.

    Returns:
        A new DataFrame with columns timestamp (int64), open, high, low, close, volume (float64) and turnover
        when known (a turnover column that is all NaN is dropped).

    Raises:
        DataFormatError: no candles, missing columns, a value that is not a number, non-positive prices, or times
            that do not strictly increase.
    """
    frame = _timestamped(klines)
    missing = [c for c in CANDLE_COLUMNS[:-1] if c not in frame.columns]
    if missing:
        raise DataFormatError(f"candles lack columns {missing}; expected {list(CANDLE_COLUMNS)} (turnover optional)")
    frame = frame[[c for c in CANDLE_COLUMNS if c in frame.columns]].copy()
    if "turnover" in frame.columns and frame["turnover"].isna().all():
        frame = frame.drop(columns="turnover")
    for column in frame.columns[1:]:
        frame[column] = _numbers(frame, column)
    _check_prices(frame)
    return frame


def bar_frame(klines: Any) -> pd.DataFrame:
    """Validated bars indexed by their UTC open time ("time"), open/high/low/close as floats, other columns kept.

    Raises:
        DataFormatError: missing open/high/low/close, fewer than 2 bars, missing or non-positive prices, or times
            that do not strictly increase.
    """
    frame = _timestamped(klines)
    missing = [name for name in OHLC if name not in frame.columns]
    if missing:
        raise DataFormatError(f"klines lack the column(s) {missing}: open, high, low and close are required")
    if len(frame) < 2:
        raise DataFormatError(f"klines hold {len(frame)} bar(s): a backtest needs at least 2 (signal, then fill)")
    frame = frame.copy()
    for name in OHLC:
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
    _check_prices(frame)
    frame.index = ms_to_times(frame.pop("timestamp"))
    frame.index.name = "time"
    return frame


def _timestamped(klines: Any) -> pd.DataFrame:
    """The candles as a frame with an int64 `timestamp` column (epoch ms), strictly increasing; other columns as
    given."""
    if isinstance(klines, pd.DataFrame):
        frame = klines.rename(columns={"start_time": "timestamp"})
        if "timestamp" in frame.columns:
            if pd.api.types.is_datetime64_any_dtype(frame["timestamp"]):
                frame = frame.assign(timestamp=times_to_ms(frame["timestamp"]))
        elif isinstance(frame.index, pd.DatetimeIndex):
            frame = frame.assign(timestamp=times_to_ms(frame.index))
        else:
            raise DataFormatError("candles need a `timestamp` column (epoch ms) or a DatetimeIndex of bar open times")
        frame = frame.reset_index(drop=True)
    elif isinstance(klines, Sequence) and not isinstance(klines, str | bytes):
        rows = [tuple(kline) for kline in klines]
        if any(len(row) != len(Kline._fields) for row in rows):
            raise DataFormatError("candles: a sequence must hold Kline tuples (or 7-tuples in their order); pass a "
                                  "DataFrame otherwise")
        frame = pd.DataFrame(rows, columns=list(CANDLE_COLUMNS))
    else:
        raise DataFormatError(f"candles of type {type(klines).__name__} are not supported: pass a DataFrame "
                              "(timestamp in epoch ms or a DatetimeIndex, plus open/high/low/close) or Klines")
    if frame.empty:
        raise DataFormatError("no candles given")
    frame["timestamp"] = _numbers(frame, "timestamp").astype(np.int64)
    step = np.diff(frame["timestamp"].to_numpy())
    if (step <= 0).any():
        row = int(np.flatnonzero(step <= 0)[0]) + 1
        raise DataFormatError(f"candle times must strictly increase; row {row} does not: sort them and drop "
                              "duplicate bars")
    return frame


def _numbers(frame: pd.DataFrame, column: str) -> pd.Series:
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = np.flatnonzero(values.isna().to_numpy())
    if bad.size:
        raise DataFormatError(f"candle row {bad[0]}, column {column!r}: {frame[column].iloc[bad[0]]!r} is not a "
                              "number; fill or drop that candle")
    return values.astype(np.float64)


def _check_prices(frame: pd.DataFrame) -> None:
    prices = frame[list(OHLC)].to_numpy()
    bad = np.flatnonzero(~(np.isfinite(prices) & (prices > 0)).all(axis=1))
    if bad.size:
        row = int(bad[0])
        raise DataFormatError(f"candle row {row} (open time {int(frame['timestamp'].iloc[row])} ms) has a missing or "
                              f"non-positive price: {frame.iloc[row][list(OHLC)].to_dict()}; drop or repair it")

"""Reading target positions and predictions from CSV files, with errors that name the file line.

POS.csv: `timestamp,position` — the target position in [-1, 1] (a fraction of `position_size`, negative =
short) decided at the close of the bar whose open time is `timestamp` (epoch ms UTC, or ISO-8601). Rows may be
sparse: a position holds until the next row; flat before the first.

PREDS.csv: `timestamp,prediction` (a predicted log return) and optionally `p_down,p_flat,p_up`, under an optional
metadata line (`reformer.predictions`: interval, horizon, first out-of-sample bar).

FUNDING.csv: `timestamp,funding_rate` — a perpetual's funding settlements (epoch ms UTC or ISO-8601; the rate as a
fraction, positive: longs pay shorts); the older header `time,rate` reads the same.

MARK.csv: `timestamp,open,high,low,close` — mark-price candles on the traded bars' open times (any other column,
such as a volume, is ignored).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataFormatError, UserInputError
from ..predictions import Predictions, parse_numbers, parse_times
from ..textio import check_csv_file, header_separator

__all__ = ["check_bar_times", "read_funding_csv", "read_mark_csv", "read_positions_csv",
           "read_predictions_csv"]


_FUNDING_HEADERS = (("timestamp", "funding_rate"), ("time", "rate"))
_MARK_COLUMNS = ("timestamp", "open", "high", "low", "close")


def _read(path: Path, required: tuple[str, ...], also: tuple[tuple[str, ...], ...] = ()) -> pd.DataFrame:
    """The CSV with the columns `required` (or one of the older headers `also`, which messages do not name)."""
    check_csv_file(path, f"give the path of a CSV with columns {','.join(required)}")
    try:
        frame = pd.read_csv(path, sep=header_separator(path))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]}); "
                              f"expected columns {','.join(required)}") from None
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    missing = [c for c in required if c not in frame.columns]
    if missing and any(set(header) <= set(frame.columns) for header in also):
        missing = []
    if missing:
        raise DataFormatError(f"{path}: missing column(s) {missing}; expected a header {','.join(required)}")
    if frame.empty:
        raise DataFormatError(f"{path}: no data rows; add rows under the header {','.join(required)}")
    return frame


def read_positions_csv(path: str | Path) -> pd.Series:
    """Target positions indexed by bar open time (UTC).

    Raises:
        DataFormatError: missing columns, unparsable rows; UserInputError: a position outside [-1, 1].
    """
    path = Path(path)
    frame = _read(path, ("timestamp", "position"))
    values = parse_numbers(path, frame, "position")
    outside = np.flatnonzero(np.abs(values) > 1.0)
    if outside.size:
        row = int(outside[0])
        raise UserInputError(f"{path} line {row + 2}: position {values[row]} is outside [-1, 1]; positions are "
                             "fractions of --position-size (1 = fully long, -1 = fully short)")
    return pd.Series(values, index=parse_times(path, frame["timestamp"]), name="position")


def read_predictions_csv(path: str | Path) -> pd.Series | pd.DataFrame:
    """Predictions indexed by bar open time: a Series, or a DataFrame when p_down/p_flat/p_up are present (the
    values of `Predictions.from_csv`, which also reads the file's metadata)."""
    return Predictions.from_csv(path).values


def read_funding_csv(path: str | Path) -> pd.Series:
    """Funding rates indexed by settlement time (UTC), sorted.

    Raises:
        UserInputError: no such file; DataFormatError: missing columns, unparsable rows.
    """
    path = Path(path)
    frame = _read(path, _FUNDING_HEADERS[0], also=_FUNDING_HEADERS[1:])
    time, rate = next(header for header in _FUNDING_HEADERS if set(header) <= set(frame.columns))
    rates = pd.Series(parse_numbers(path, frame, rate), index=parse_times(path, frame[time]), name="funding_rate")
    return rates.sort_index()


def read_mark_csv(path: str | Path) -> pd.DataFrame:
    """Mark-price candles indexed by open time (UTC), sorted, with float open/high/low/close.

    Raises:
        UserInputError: no such file; DataFormatError: missing columns, unparsable or repeated times, a price that
            is not a positive number, a high below its low (each named by its file line).
    """
    path = Path(path)
    frame = _read(path, _MARK_COLUMNS)
    times = parse_times(path, frame["timestamp"])
    prices = {name: parse_numbers(path, frame, name) for name in _MARK_COLUMNS[1:]}
    for name, values in prices.items():
        bad = np.flatnonzero(values <= 0)
        if bad.size:
            raise DataFormatError(f"{path} line {int(bad[0]) + 2}, column {name!r}: {values[bad[0]]} is not > 0; "
                                  "prices must be positive: fix or delete that row")
    crossed = np.flatnonzero(prices["high"] < prices["low"])
    if crossed.size:
        raise DataFormatError(f"{path} line {int(crossed[0]) + 2}: high {prices['high'][crossed[0]]} is below low "
                              f"{prices['low'][crossed[0]]}; swap them or delete that row")
    return pd.DataFrame(prices, index=times).sort_index()


def check_bar_times(path: str | Path, index: pd.DatetimeIndex, bars: pd.DatetimeIndex,
                    lines: np.ndarray | None = None) -> None:
    """Every time in `index` must be a bar of the klines; the first that is not is named by its file line
    (`lines[i]` for row i when the rows are a subset of the file's, else i + 2)."""
    missing = np.flatnonzero(~index.isin(bars))
    if missing.size:
        row = int(missing[0])
        line = int(lines[row]) if lines is not None else row + 2
        raise UserInputError(f"{path} line {line}: timestamp {index[row]} is not a bar of the klines "
                             f"({bars[0]} .. {bars[-1]}); use the open time of an existing bar")

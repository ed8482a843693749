"""Generic CSV time series (ETT, ECL, Weather, ... not only klines) and the standard LSTF split protocol.

Protocol (Informer2020 / TSLib / LTSF-Linear `data_loader.py`): borders are rows
[0, n_train), [n_train, n_train + n_val), [n_train + n_val, n_train + n_val + n_test); the validation and test
slices start `seq_len` rows before their border (inputs may reach back, targets never do), i.e.
border1s = [0, n_train - seq_len, n_train + n_val - seq_len]; a slice of length L holds L - seq_len - pred_len + 1
windows (stride 1). ETTh: 12/4/4 months of 30 days (8640/2880/2880 rows), ETTm: the same x4, others 70/10/20
(test = the last 20% of rows, val = the rest). The scaler is fitted on the training rows only.

Shapes: `n` rows, `c` columns (channels).
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from reformer.data.scaling import StandardScaler
from reformer.errors import ConfigError, DataFormatError, first_line
from reformer.textio import (
    binary_file_problem,
    check_csv_file,
    epoch_ms_cells,
    finite_cells,
    first_non_utf8_line,
    header_names,
    header_separator,
)

__all__ = ["FEATURE_MODES", "LSTFSplits", "TimeSeries", "check_features", "load_timeseries_csv", "lstf_borders",
           "lstf_splits"]

_DATE_NAMES = ("date", "datetime", "timestamp", "time", "start_time")
_YEARS = (1900, 2100)
"""Years a date column may hold (a compact YYYYMMDD integer, or a text cell that names a column of dates)."""
_COMPACT_FORMATS = {8: "%Y%m%d", 10: "%Y%m%d%H", 12: "%Y%m%d%H%M", 14: "%Y%m%d%H%M%S"}
_YEAR_FIRST = re.compile(r"\s*\d{4}\D")
_DECIMAL_COMMA = r"[+-]?(\d+|\d{1,3}(\.\d{3})+),\d+"
Protocol = Literal["ett_hour", "ett_minute", "ratio"]
# a text column beside the series (a second date, a label) is named as such, with the way out
_TEXT_COLUMN_FIX = ("remove it from the file (or, where the command takes --features, pass --features S to read the "
                    "target only)")
FEATURE_MODES = ("M", "S", "MS")
"""`M` all columns in and out, `S` the target only, `MS` all columns in and the target out."""


def check_features(features: str, name: str = "features") -> None:
    """Refuse a feature mode other than `FEATURE_MODES` (the one check of the library and the CLI).

    Args:
        features: the mode given.
        name: what the caller calls it in the message (e.g. "--features").

    Raises:
        ConfigError: naming the choices.
    """
    if features not in FEATURE_MODES:
        raise ConfigError(f"{name} {features!r} is invalid: use M (all columns in and out), S (the target only) "
                          "or MS (all in, the target out)")


@dataclass(frozen=True)
class TimeSeries:
    """A loaded multichannel series."""

    values: np.ndarray
    """`[n, c]` float64; for `M`/`MS` the target is the last column, for `S` it is the only one."""
    columns: tuple[str, ...]
    """Column names, `[c]`."""
    timestamps: np.ndarray | None
    """`[n]` int64 epoch ms UTC from the date column, or None if the file has none."""
    target: str
    """Target column name."""
    path: str
    """Source file."""


def load_timeseries_csv(path: str | Path, target: str = "OT", features: Literal["M", "S", "MS"] = "M",
                        date_col: str | None = "auto") -> TimeSeries:
    """Read a time-series CSV: one optional date column, then numeric columns.

    Args:
        path: CSV file (UTF-8) with a header row naming each column once.
        target: target column (ETT: `OT`).
        features: `M` all columns (target moved last, as TSLib does), `MS` the same inputs (the target, last, is
            what a model predicts), `S` the target column only.
        date_col: name of the date column; "auto" picks the first of date/datetime/timestamp/time/start_time
            (case-insensitive) if present; None means the file has no date column. Numeric dates are epoch ms or
            seconds (`api.intervals.epoch_in_seconds` of the first; one unit for the column), except that integers
            of 8, 10, 12 or 14 digits which all read as calendar dates of the years 1900-2100 are YYYYMMDD[HH[MM[SS]]]
            stamps. Text dates are UTC (an offset such as +02:00 is converted); text that does not start with the
            year is read month-first and day-first: the reading under which every row is a date wins, and when both
            are, the one whose rows run forward the most evenly spaced (else the file must write YYYY-MM-DD).

    Returns:
        `TimeSeries`.

    Raises:
        UserInputError: the file does not exist, or is a folder.
        DataFormatError: empty file, not UTF-8 text (Parquet, UTF-16, Latin-1), a repeated header name, missing
            target or date column, non-numeric or empty cells, bad or ambiguous dates.
    """
    path = Path(path)
    check_features(features)
    check_csv_file(path)
    frame = _read_frame(path)
    if date_col == "auto":
        date_col = next((c for c in frame.columns if str(c).strip().lower() in _DATE_NAMES), None)
    elif date_col is not None and date_col not in frame.columns:
        raise DataFormatError(f"{path}: date column {date_col!r} not found in {list(frame.columns)}; "
                              "pass date_col=<one of them> or None")
    value_columns = [c for c in frame.columns if c != date_col]
    if target not in value_columns:
        raise DataFormatError(f"{path}: target column {target!r} not found in {value_columns}; "
                              "choose one of them (--target / target=)")
    ordered = [c for c in value_columns if c != target] + [target] if features != "S" else [target]
    values = np.empty((len(frame), len(ordered)))
    for j, column in enumerate(ordered):
        values[:, j] = _value_cells(frame[column], column, path, date_col)
    timestamps = None if date_col is None else _parse_dates(frame[date_col], path, date_col)
    if timestamps is not None and len(timestamps) > 1:
        behind = np.flatnonzero(np.diff(timestamps) <= 0)
        if behind.size:  # a model reads windows of consecutive rows: they must run forward in time
            row = int(behind[0]) + 1
            raise DataFormatError(f"{path}: line {row + 2}, column {date_col!r}: {frame[date_col].iloc[row]!r} is not "
                                  f"after the previous row's {frame[date_col].iloc[row - 1]!r} ({behind.size} such "
                                  "rows); sort the file by date and remove repeated rows")
    return TimeSeries(values, tuple(ordered), timestamps, target, str(path))


def _read_frame(path: Path) -> pd.DataFrame:
    """The file's cells as text, one column per header name; refuses what is no UTF-8 CSV, and repeated names."""
    problem = binary_file_problem(path)
    if problem is not None:  # read as CSV it would fail on a byte, or worse, read as garbage columns
        raise DataFormatError(f"{path} is {problem}")
    separator = header_separator(path)
    try:
        frame = pd.read_csv(path, sep=separator, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError as exc:
        raise DataFormatError(f"{path}: the file is empty; expected a header row and data rows") from exc
    except UnicodeDecodeError as exc:
        line = first_non_utf8_line(path)
        where = f"line {line} is" if line is not None else "it is"
        raise DataFormatError(f"{path}: not UTF-8 text ({where} in another encoding, such as Latin-1 or "
                              "Windows-1252); re-save it as UTF-8 CSV") from exc
    except pd.errors.ParserError as exc:
        first = first_line(exc)
        raise DataFormatError(f"{path}: not a readable CSV ({first}); fix the file's row/column structure") from exc
    if frame.empty:
        raise DataFormatError(f"{path}: no data rows under the header; the file needs at least one row")
    counts = Counter(name for name in header_names(path, separator) if name.strip())
    repeated = [repr(name) for name, count in counts.items() if count > 1]
    if repeated:  # pandas would rename a repeat to "OT.1" and read the wrong column as the target
        raise DataFormatError(f"{path}: the header names {', '.join(repeated)} more than once; rename or remove the "
                              "repeat so each column name is used once")
    return frame


def _value_cells(cells: pd.Series, name: str, path: Path, date_col: str | None) -> np.ndarray:
    """A value column as float64 (`textio.finite_cells`); text that is numbers with a decimal comma, or dates, is
    named as such, since "holds text" would send the user to the wrong fix."""
    numbers = pd.to_numeric(cells, errors="coerce")
    if numbers.notna().all():  # read once: finite_cells takes the numbers as they are (and refuses infinities)
        return finite_cells(numbers, name, str(path), text_fix=_TEXT_COLUMN_FIX)
    text = cells[numbers.isna().to_numpy() & (cells.fillna("").str.strip() != "").to_numpy()]
    if len(text):
        stripped = text.str.strip()
        if stripped.str.fullmatch(_DECIMAL_COMMA).all():
            more = f" ({len(text)} such cells)" if len(text) > 1 else ""
            raise DataFormatError(f"{path}: line {int(text.index[0]) + 2}, column {name!r}: {text.iloc[0]!r} is a "
                                  f"number with a decimal comma{more}; use a decimal point (re-save the file with "
                                  "'.' as the decimal separator and no thousands separators)")
        if 2 * len(text) > len(cells) and _mostly_dates(stripped):
            if date_col is not None:
                fix = f"the date column is {date_col!r}: {_TEXT_COLUMN_FIX}"
            elif name.strip().lower() in _DATE_NAMES:  # the caller said the file has no date column
                fix = _TEXT_COLUMN_FIX
            else:
                fix = "rename it to date, time or timestamp so it is read as the date column"
            raise DataFormatError(f"{path}: column {name!r} holds dates, not numbers (e.g. {text.iloc[0]!r}); {fix}")
    return finite_cells(cells, name, str(path), text_fix=_TEXT_COLUMN_FIX)


def _mostly_dates(text: pd.Series) -> bool:
    """Whether most of (the first 100 of) these cells are dates of the years 1900-2100 (dateutil reads words such
    as "march" or "T1" as dates of the year 1)."""
    sample = text.iloc[:100]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        parsed = pd.to_datetime(sample, errors="coerce", utc=True, format="mixed")
    dates = parsed.notna() & parsed.dt.year.between(*_YEARS)
    return 2 * int(dates.sum()) > len(sample)


def _parse_dates(column: pd.Series, path: Path, name: str) -> np.ndarray:
    numeric = pd.to_numeric(column, errors="coerce")
    if numeric.notna().all():
        compact = _compact_stamps(column.str.strip())
        if compact is not None:
            return compact
        return epoch_ms_cells(column, numeric.to_numpy(dtype=np.float64), name, str(path))
    first = next((cell for cell in column if isinstance(cell, str) and cell.strip()), "")
    # pandas reads a year-first date day-first as year, day, month: a year-first date is only ever read month-first
    orders = (False,) if _YEAR_FIRST.match(first) else (False, True)
    readings = [_text_dates(column, dayfirst) for dayfirst in orders]
    complete = [_epoch_ms(parsed) for parsed in readings if not parsed.isna().any()]
    if not complete:
        row = max(int(np.argmax(parsed.isna().to_numpy())) for parsed in readings)  # the reading that got further
        raise DataFormatError(f"{path}: line {row + 2}, column {name!r}: {column.iloc[row]!r} is not a date; "
                              "write dates as ISO 'YYYY-MM-DD HH:MM:SS' or epoch ms")
    if len(complete) == 1 or np.array_equal(complete[0], complete[1]):
        return complete[0]
    month_first, day_first = (_spacing_rank(stamps) for stamps in complete)
    if month_first == day_first:
        row = int(np.argmax(complete[0] != complete[1]))
        raise DataFormatError(f"{path}: line {row + 2}, column {name!r}: {column.iloc[row]!r} reads as a date both "
                              "month-first and day-first, and the rows' spacing does not tell which; write dates as "
                              "YYYY-MM-DD")
    return complete[0] if month_first < day_first else complete[1]


def _text_dates(column: pd.Series, dayfirst: bool) -> pd.Series:
    """Text dates, UTC, month-first or day-first (pandas reads the column in the format it infers from the first
    cell, else cell by cell); NaT where a cell is no date in that reading."""
    with warnings.catch_warnings():  # pandas warns about the order it infers: both orders are weighed here
        warnings.simplefilter("ignore", UserWarning)
        return pd.to_datetime(column, errors="coerce", utc=True, dayfirst=dayfirst)


def _epoch_ms(parsed: pd.Series) -> np.ndarray:
    """UTC datetimes (no NaT) as `[n]` int64 epoch ms."""
    return np.asarray(parsed.dt.as_unit("ms").astype("int64"), dtype=np.int64)


def _spacing_rank(stamps: np.ndarray) -> tuple[bool, int]:
    """Lower is likelier the right reading: rows running forward, then the fewest distinct steps between rows
    (1 July, 2 July, ... read month-first is 7 January, 7 February, ...: steps of 28 to 31 days)."""
    steps = np.diff(stamps)
    return bool((steps <= 0).any()), int(np.unique(steps).size)


def _compact_stamps(cells: pd.Series) -> np.ndarray | None:
    """YYYYMMDD[HH[MM[SS]]] integers as int64 epoch ms UTC, or None unless every cell is one (same width, a real
    calendar date of the years 1900-2100). Epoch seconds of the same width fail on some row: 1467331200 has month
    33, and a step of 3600 s soon gives a day beyond 31."""
    width = len(cells.iloc[0])
    fmt = _COMPACT_FORMATS.get(width)
    if fmt is None or not (cells.str.fullmatch(r"\d+") & (cells.str.len() == width)).all():
        return None
    parsed = pd.to_datetime(cells, format=fmt, errors="coerce", utc=True)
    if parsed.isna().any() or not parsed.dt.year.between(*_YEARS).all():
        return None
    if not (parsed.dt.strftime(fmt) == cells).all():  # each field read at its full width, nothing else
        return None
    return _epoch_ms(parsed)


def lstf_borders(n_rows: int, seq_len: int, protocol: Protocol = "ett_hour") -> tuple[list[int], list[int]]:
    """Row borders of the train/val/test slices under the standard protocol.

    Args:
        n_rows: rows in the file.
        seq_len: input length (val/test slices start this many rows before their border).
        protocol: `ett_hour` (8640/2880/2880 rows), `ett_minute` (x4), `ratio` (70/10/20 of `n_rows`).

    Returns:
        (border1s, border2s): slice k is rows [border1s[k], border2s[k]).

    Raises:
        ConfigError: unknown protocol, or the file is too short for it.
    """
    if protocol in ("ett_hour", "ett_minute"):
        month = 30 * 24 * (4 if protocol == "ett_minute" else 1)
        n_train, n_val, n_test = 12 * month, 4 * month, 4 * month
    elif protocol == "ratio":
        n_train, n_test = int(n_rows * 0.7), int(n_rows * 0.2)
        n_val = n_rows - n_train - n_test
    else:
        raise ConfigError(f"protocol={protocol!r} must be 'ett_hour', 'ett_minute' or 'ratio'")
    if n_train + n_val + n_test > n_rows or seq_len > n_train:
        other = "" if protocol == "ratio" else "protocol 'ratio', "
        raise ConfigError(f"protocol {protocol!r} needs {n_train + n_val + n_test} rows and seq_len <= {n_train} (its "
                          f"training rows); got {n_rows} rows and seq_len={seq_len}: use {other}a shorter seq_len or "
                          "a longer file")
    border1s = [0, n_train - seq_len, n_train + n_val - seq_len]
    border2s = [n_train, n_train + n_val, n_train + n_val + n_test]
    return border1s, border2s


@dataclass(frozen=True)
class LSTFSplits:
    """Scaled train/val/test slices of a `TimeSeries` under the standard protocol."""

    train: np.ndarray
    """`[n_train_slice, c]` float32, scaled with `scaler`."""
    val: np.ndarray
    """`[n_val_slice, c]` float32 (starts seq_len rows before the border)."""
    test: np.ndarray
    """`[n_test_slice, c]` float32 (starts seq_len rows before the border)."""
    scaler: StandardScaler
    """Fitted on the training rows only."""
    border1s: tuple[int, int, int]
    border2s: tuple[int, int, int]
    seq_len: int
    pred_len: int

    def n_windows(self) -> tuple[int, int, int]:
        """Stride-1 windows per slice: len - seq_len - pred_len + 1 (all kept, no drop_last)."""
        return tuple(max(len(s) - self.seq_len - self.pred_len + 1, 0)  # type: ignore[return-value]
                     for s in (self.train, self.val, self.test))


def lstf_splits(series: TimeSeries, seq_len: int, pred_len: int, protocol: Protocol = "ett_hour",
                scale: bool = True) -> LSTFSplits:
    """Cut and z-score a series with the standard protocol (scaler fitted on the training rows only).

    Args:
        series: from `load_timeseries_csv`.
        seq_len: input length.
        pred_len: horizon.
        protocol: see `lstf_borders`.
        scale: False keeps raw values (the scaler is still fitted, for reference).

    Returns:
        `LSTFSplits`.
    """
    if seq_len < 1 or pred_len < 1:
        raise ConfigError(f"seq_len={seq_len} and pred_len={pred_len} must be >= 1")
    border1s, border2s = lstf_borders(len(series.values), seq_len, protocol)
    scaler = StandardScaler().fit(series.values[border1s[0]:border2s[0]])
    data = scaler.transform(series.values) if scale else series.values
    parts = [data[b1:b2].astype(np.float32) for b1, b2 in zip(border1s, border2s, strict=True)]
    return LSTFSplits(parts[0], parts[1], parts[2], scaler, (border1s[0], border1s[1], border1s[2]),
                      (border2s[0], border2s[1], border2s[2]), seq_len, pred_len)

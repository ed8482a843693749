"""Kline files: read OHLCV CSV / Parquet from many sources, write the project's own export format.

The export format (what `write_klines` writes, and the shared BTC file minus its `timestamp_string` column):

    timestamp,open,high,low,close,volume,turnover
    1585130400000,6500.0,6591.5,6500.0,6591.5,0.004,26.366

`timestamp` is the candle open time in epoch milliseconds UTC, rows ascending, floats written with the shortest
text that reads back to the same float, so export -> import is exact. An unknown turnover is an empty field.
Funding rates (`write_funding`: timestamp,funding_rate) and mark-price candles (`write_mark_klines`:
timestamp,open,high,low,close) are written the same way.

Reading is lenient about the source and strict about the values. Column names are matched case-insensitively;
the time column may be called timestamp, start_time, open_time, time, datetime or date (first found in that
order) and hold epoch seconds, epoch milliseconds (told apart by magnitude) or ISO-8601 text (no offset = UTC).
`turnover` is optional and stays NaN when absent: it is never invented from price x volume, because the
exchange's turnover is a sum over trades, not that product. Extra columns are ignored.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Hashable, Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..api.types import Kline
from ..bars import times_to_ms
from ..errors import DataFormatError, UserInputError
from ..files import atomic_write
from ..textio import Where, check_csv_file, epoch_ms_cells, finite_cells, header_separator, show_cell

__all__ = ["EXPORT_COLUMNS", "FUNDING_COLUMNS", "MARK_COLUMNS", "NotCandlesError", "read_klines", "read_klines_frame",
           "write_funding", "write_klines", "write_mark_klines"]

EXPORT_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume", "turnover")
"""Columns of every kline frame this module returns and every kline file it writes, in order."""
FUNDING_COLUMNS = ("timestamp", "funding_rate")
"""Columns of a funding file (`write_funding`): settlement time in epoch ms UTC, the rate as a fraction."""
MARK_COLUMNS = ("timestamp", "open", "high", "low", "close")
"""Columns of a mark-price candle file (`write_mark_klines`): open time in epoch ms UTC, then the prices."""



class NotCandlesError(DataFormatError):
    """A file without the candle columns: a command that also reads other series can say how to ask for one."""


_TIME_NAMES = ("timestamp", "start_time", "open_time", "time", "datetime", "date")
_PRICES = ("open", "high", "low", "close")
_REQUIRED = (*_PRICES, "volume")
_SUFFIXES = (".csv", ".parquet")
# Seconds or milliseconds: `epoch_in_seconds` (below 1e11, the year 5138 in seconds, a number means seconds);
# 1e14 ms is again the year 5138, so from there on a number is micro- or nanoseconds.
_MILLISECONDS_BELOW = 1e14


def read_klines_frame(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a kline CSV (or .parquet) file into a checked, ascending frame.

    Args:
        path: the file. `.parquet` is read with pyarrow; anything else as CSV.

    Returns:
        Columns `EXPORT_COLUMNS`: timestamp int64 (epoch ms UTC, candle open, unique, ascending), the rest
        float64; turnover NaN where unknown. Default RangeIndex. Exact duplicate rows are kept once.

    Raises:
        DataFormatError: one line naming the file, the line (1-based, as an editor shows it) or column, and the
            fix: an empty file, a missing column, a non-numeric or missing value, a non-positive price, negative
            volume, high < low, an unreadable or mixed-unit timestamp, or two rows for one time that disagree.
        UserInputError: `path` is a folder or no file (`textio.check_csv_file`).
    """
    path = check_csv_file(path)
    if path.suffix.lower() == ".parquet":
        raw = _read_parquet(path)
        return _normalise(raw, str(path), lambda position: f"row {position + 1}")
    try:
        # skip_blank_lines=False keeps row position == line - 2, so messages can name the line an editor shows.
        raw = pd.read_csv(path, sep=header_separator(path), skip_blank_lines=False, skipinitialspace=True)
    except pd.errors.EmptyDataError as exc:
        raise DataFormatError(
            f"{path}: the file is empty; expected a header such as {','.join(EXPORT_COLUMNS)} and data rows"
        ) from exc
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        reason = " ".join(str(exc).split())  # pandas messages span lines; ours must not
        raise DataFormatError(f"{path}: not a readable CSV ({reason}); save it as plain comma-separated UTF-8") from exc
    # Blank lines read as all-NaN rows; dropping them keeps the original positions for the line numbers.
    raw = raw[raw.notna().any(axis=1)]
    return _normalise(raw, str(path), lambda position: f"line {position + 2}")


def read_klines(path: str | os.PathLike[str]) -> list[Kline]:
    """Read a kline file (see `read_klines_frame`) as `Kline`s, ascending; an unknown turnover is NaN.

    Raises:
        DataFormatError, UserInputError: as `read_klines_frame`.
    """
    frame = read_klines_frame(path)
    columns = [frame[name].tolist() for name in EXPORT_COLUMNS]  # tolist: Python int/float, not numpy scalars
    return list(map(Kline._make, zip(*columns, strict=True)))


def write_klines(klines: pd.DataFrame | Iterable[Sequence[float]], path: str | os.PathLike[str]) -> int:
    """Write klines to `.csv` (the export format above) or `.parquet`, atomically.

    The file is written to a temporary name in the same folder and renamed over `path`, so a crash leaves
    either the old file or the complete new one, never half of it. Missing folders are created.

    Args:
        klines: a frame with the `EXPORT_COLUMNS` (turnover optional), or `Kline`s / 7-sequences. Any order;
            checked as `read_klines_frame` checks a file, so whatever is written reads back.
        path: the target file; its suffix picks the format.

    Returns:
        The number of candles written.

    Raises:
        DataFormatError: an unsupported suffix, or klines that would not read back (see `read_klines_frame`).
        UserInputError: `path` is a directory, or `.parquet` without pyarrow installed.
    """
    path = _check_target(path)
    if isinstance(klines, pd.DataFrame):
        raw = klines.reset_index(drop=True)
    else:
        raw = pd.DataFrame.from_records(list(klines), columns=list(EXPORT_COLUMNS))
    frame = _normalise(raw, "klines to write", lambda position: f"row {position + 1}")
    return _write_frame(frame, path)


def write_funding(rates: pd.Series, path: str | os.PathLike[str]) -> int:
    """Write funding rates as `FUNDING_COLUMNS` (timestamp = settlement time, epoch ms; ascending) to `.csv` or
    `.parquet`, atomically (as `write_klines`).

    Args:
        rates: a float Series indexed by settlement time (DatetimeIndex or epoch ms), as
            `DerivativesStore.load_funding` returns it.
        path: the target file; its suffix picks the format.

    Returns:
        The number of settlements written.

    Raises:
        DataFormatError: an unsupported suffix, a rate that is not a finite number, or repeated times.
        UserInputError: `path` is a directory, or `.parquet` without pyarrow installed.
    """
    path = _check_target(path)
    index = rates.index
    times = times_to_ms(index) if isinstance(index, pd.DatetimeIndex) else np.asarray(index, dtype=np.int64)
    frame = pd.DataFrame({"timestamp": times, "funding_rate": pd.to_numeric(rates, errors="coerce").to_numpy()})
    return _write_frame(_sorted_finite(frame, "funding rates to write"), path)


def write_mark_klines(frame: pd.DataFrame, path: str | os.PathLike[str]) -> int:
    """Write mark-price candles as `MARK_COLUMNS` (timestamp = open time, epoch ms; ascending) to `.csv` or
    `.parquet`, atomically (as `write_klines`).

    Args:
        frame: open/high/low/close indexed by open time (as `DerivativesStore.load_mark_frame` returns them), or
            with a `timestamp` column of epoch ms.
        path: the target file; its suffix picks the format.

    Returns:
        The number of candles written.

    Raises:
        DataFormatError: an unsupported suffix, a missing column, a price that is not a positive number, or
            repeated times.
        UserInputError: `path` is a directory, or `.parquet` without pyarrow installed.
    """
    path = _check_target(path)
    missing = [name for name in _PRICES if name not in frame.columns]
    if missing:
        raise DataFormatError(f"mark candles to write lack the column(s) {missing}: pass open, high, low, close")
    times = frame["timestamp"] if "timestamp" in frame.columns else times_to_ms(frame.index)
    table = pd.DataFrame({"timestamp": np.asarray(times, dtype=np.int64),
                          **{name: pd.to_numeric(frame[name], errors="coerce").to_numpy() for name in _PRICES}})
    table = _sorted_finite(table, "mark candles to write")
    if (table[list(_PRICES)] <= 0).any(axis=None):
        raise DataFormatError(f"{path}: mark candles to write hold a price that is not > 0; drop or fix that candle")
    return _write_frame(table, path)


def _check_target(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    if path.is_dir():
        raise UserInputError(f"{path} is a directory; name a file in it, e.g. {path / 'klines.csv'}")
    if path.suffix.lower() not in _SUFFIXES:
        raise DataFormatError(
            f"{path}: unsupported suffix {path.suffix!r}; use one of {', '.join(_SUFFIXES)}"
        )
    return path


def _sorted_finite(frame: pd.DataFrame, what: str) -> pd.DataFrame:
    """`frame` by ascending timestamp, refusing a value that is not a finite number and repeated times."""
    values = frame.drop(columns="timestamp").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
    if bad.size:
        raise DataFormatError(f"{what}: row {bad[0] + 1} holds a value that is not a finite number; drop or fix it")
    frame = frame.sort_values("timestamp", kind="stable").reset_index(drop=True)
    repeated = frame["timestamp"].duplicated().to_numpy()
    if repeated.any():
        raise DataFormatError(f"{what}: timestamp {frame['timestamp'].iat[int(np.flatnonzero(repeated)[0])]} "
                              "appears twice; keep one row per time")
    return frame


def _write_frame(frame: pd.DataFrame, path: Path) -> int:
    """Write a checked frame to `path` (.csv or .parquet, by its suffix) atomically; returns its row count."""
    if path.suffix.lower() == ".csv":
        atomic_write(path, lambda target: frame.to_csv(target, index=False, lineterminator="\n"))
    else:
        if importlib.util.find_spec("pyarrow") is None:  # fail before touching the disk
            raise UserInputError(
                f"{path}: writing .parquet needs pyarrow; pip install 'reformer-crypto[parquet]' or use .csv"
            )
        atomic_write(path, lambda target: frame.to_parquet(target, engine="pyarrow", index=False))
    return len(frame)


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path, engine="pyarrow").reset_index(drop=True)
    except ImportError as exc:
        raise UserInputError(f"{path}: reading .parquet needs pyarrow; pip install pyarrow") from exc
    except Exception as exc:  # pyarrow raises its own types for corrupt files
        reason = " ".join(str(exc).split())
        raise DataFormatError(f"{path}: not a readable Parquet file ({reason}); export it again") from exc


def _normalise(raw: pd.DataFrame, source: str, where: Where) -> pd.DataFrame:
    """Find, convert and check the columns; sort; drop exact duplicates. Positions of `raw` must be 0..n-1
    (gaps allowed), as `where` turns them into line or row numbers."""
    by_name: dict[str, Hashable] = {}  # lower-case name -> the frame's own label
    for column in raw.columns:
        key = str(column).strip().lower()
        if key in by_name:
            raise DataFormatError(f"{source}: columns {by_name[key]!r} and {column!r} clash; rename one")
        by_name[key] = column
    time_name = next((by_name[name] for name in _TIME_NAMES if name in by_name), None)
    found = ", ".join(map(str, raw.columns))
    if time_name is None:
        raise DataFormatError(
            f"{source}: no time column (found: {found}); name the candle open time one of {', '.join(_TIME_NAMES)}"
        )
    missing = [name for name in _REQUIRED if name not in by_name]
    if missing:
        raise NotCandlesError(
            f"{source}: missing column {missing[0]!r} (found: {found}); expected {','.join(EXPORT_COLUMNS)} "
            "(turnover optional)"
        )
    if raw.empty:
        raise DataFormatError(f"{source}: no data rows under the header; add candles or pick another file")

    positions = np.asarray(raw.index, dtype=np.int64)
    columns: dict[str, np.ndarray] = {"timestamp": _epoch_ms(raw[time_name], str(time_name), source, where)}
    for name in (*_REQUIRED, "turnover"):
        if name == "turnover" and name not in by_name:
            columns[name] = np.full(len(raw), np.nan)
            continue
        columns[name] = finite_cells(raw[by_name[name]], str(by_name[name]), source, where=where,
                                     optional=name == "turnover")

    checks = [
        *((columns[name] <= 0, name, "is not > 0", "prices must be positive; fix or delete that row")
          for name in _PRICES),
        (columns["volume"] < 0, "volume", "is negative", "fix or delete that row"),
        (columns["turnover"] < 0, "turnover", "is negative", "fix it, or leave it empty if unknown"),
        (columns["high"] < columns["low"], "high", "is below low", "swap high and low or delete that row"),
    ]
    for mask, name, problem, fix in checks:
        if mask.any():
            row = int(np.flatnonzero(mask)[0])
            raise DataFormatError(
                f"{source}: {where(positions[row])}, column {name!r}: {show_cell(columns[name][row])} {problem}; {fix}"
            )

    frame = pd.DataFrame(columns, index=positions)
    frame = frame.sort_values("timestamp", kind="stable")  # stable: the first-seen of equal rows comes first
    frame = frame[~frame.duplicated()]  # identical rows (NaN equal to NaN) are one candle listed twice
    clashes = frame["timestamp"].duplicated(keep=False).to_numpy()
    if clashes.any():
        first, second = np.flatnonzero(clashes)[:2]
        raise DataFormatError(
            f"{source}: {where(frame.index[first])} and {where(frame.index[second])} both have timestamp "
            f"{frame['timestamp'].iat[first]} with different values; keep one of them"
        )
    return frame.reset_index(drop=True)


def _epoch_ms(values: pd.Series, name: str, source: str, where: Where) -> np.ndarray:
    """The time column as int64 epoch ms: datetimes, epoch s / ms numbers, or ISO-8601 text (naive = UTC)."""
    if pd.api.types.is_datetime64_any_dtype(values):
        stamps = values if values.dt.tz is not None else values.dt.tz_localize("UTC")
        return _datetimes_to_ms(stamps, values, name, source, where)
    first = values.iat[0]
    numeric_first = pd.api.types.is_numeric_dtype(values) or not np.isnan(pd.to_numeric(first, errors="coerce"))
    if not numeric_first:
        stamps = pd.to_datetime(values, utc=True, format="ISO8601", errors="coerce")
        return _datetimes_to_ms(stamps, values, name, source, where)

    numbers = finite_cells(values, name, source, where=where)
    for mask, problem, fix in (
        (numbers <= 0, "is not a positive epoch time", "fix or delete that row"),
        (numbers >= _MILLISECONDS_BELOW, "looks like micro- or nanoseconds",
         "convert the column to epoch milliseconds"),
    ):
        if mask.any():
            row = int(np.flatnonzero(mask)[0])
            raise DataFormatError(
                f"{source}: {where(values.index[row])}, column {name!r}: {show_cell(values.iat[row])} {problem}; {fix}"
            )
    return epoch_ms_cells(values, numbers, name, source, where)


def _datetimes_to_ms(stamps: pd.Series, values: pd.Series, name: str, source: str, where: Where) -> np.ndarray:
    unparsed = stamps.isna().to_numpy()
    if unparsed.any():
        row = int(np.flatnonzero(unparsed)[0])
        cell = values.iat[row]
        problem = "is empty" if pd.isna(cell) else f"has {show_cell(cell)}, not an ISO-8601 time or epoch s/ms"
        raise DataFormatError(
            f"{source}: {where(values.index[row])}, column {name!r} {problem}; write ISO-8601 as YYYY-MM-DDTHH:MM:SSZ"
        )
    # Resolution differs by input (s, ms, us, ns); fixing it to ms makes the int64 view epoch milliseconds.
    return stamps.dt.as_unit("ms").astype("int64").to_numpy()


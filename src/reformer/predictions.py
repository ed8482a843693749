"""A model's predictions with what a backtest must know about them: bar interval, horizon and where the model's
out-of-sample period starts.

A prediction for a bar the model was fitted on is no forecast: traded, it makes a backtest look far better than
the model is. `Predictions` carries the first bar no weight of the model was fitted on (`first_out_of_sample`), so
that `reformer backtest` trades from there on unless told otherwise, and the interval of the bars, so that hourly
predictions are not traded on 4-hour candles. The metadata travels inside the CSV file, on a first comment line,
so a copied file keeps it:

    # reformer predictions: interval=60 horizon=24 first_out_of_sample=<ISO-8601 UTC time> source=runs/btc
    timestamp,prediction
    <bar open time, epoch ms>,<predicted log return>
    ...

`timestamp` is the bar's open time in epoch ms UTC; `prediction` a predicted log return (for a classifier
p_up - p_down, with columns p_down, p_flat, p_up beside it). A volatility model's predictions say so on the
metadata line, `target=log-variance`: `prediction` is then the forecast of ln RV, the log of the realised variance
over the horizon, with the variance forecast itself in a `variance` column; they are no trading signal, and the
backtest refuses them (`require_returns`). `pd.read_csv(path, comment="#")` reads the table. A file without the
comment line (written by hand or by an older version) reads with unknown metadata, as returns; its timestamps may
also be epoch seconds or ISO-8601 text.

    preds = Predictions.from_csv("preds.csv")
    preds.out_of_sample().values          # the rows from the first out-of-sample bar on

pandas and numpy only: the strategy layer and the training pipelines both use it.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import DataFormatError, UserInputError
from .files import atomic_write
from .textio import check_csv_file, epoch_ms_cells, finite_cells

__all__ = ["HEADER_PREFIX", "LOG_VARIANCE", "PROBABILITY_COLUMNS", "RETURN", "TARGETS", "Predictions", "data_interval",
           "interval_of_step", "interval_words", "parse_numbers", "parse_times", "write_predictions_csv"]

HEADER_PREFIX = "# reformer predictions:"
"""How the metadata line of a predictions CSV begins."""
PROBABILITY_COLUMNS = ("p_down", "p_flat", "p_up")
RETURN, LOG_VARIANCE = "return", "log-variance"
TARGETS = (RETURN, LOG_VARIANCE)
"""What `prediction` forecasts: a log return (or a classifier's p_up - p_down), or ln of the realised variance."""
_MONTH_MS = (28 * 86_400_000, 31 * 86_400_000)
_SOURCE = re.compile(r"(?:^|\s)source=(.*)$")


def data_interval(named: str | None, bar_ms: int | None = None, timestamps: np.ndarray | None = None) -> str | None:
    """The Bybit interval of a model's candles: the one their source names (store candles), else that of their
    bar step (`bar_ms`; for an older checkpoint, the spacing of `timestamps`); or None."""
    from .api.intervals import parse_interval
    from .data.windows import bar_step

    if named:
        return parse_interval(named)
    step = int(bar_ms or 0)
    if not step and timestamps is not None and len(timestamps) > 1:
        step = bar_step(np.asarray(timestamps))
    return interval_of_step(step) if step else None


def interval_of_step(step_ms: int) -> str | None:
    """The Bybit interval code of bars `step_ms` apart ("60" for 3,600,000), "M" for 28-31 days, else None."""
    from .api.intervals import INTERVAL_MS

    for code, length in INTERVAL_MS.items():
        if length == step_ms:
            return code
    return "M" if _MONTH_MS[0] <= step_ms <= _MONTH_MS[1] else None


def interval_words(code: str) -> str:
    """An interval code in words, as "<words> bars" reads: "60" -> "1-hour", "240" -> "4-hour", "D" -> "1-day"."""
    from .api.intervals import INTERVAL_MS

    named = {"W": "1-week", "M": "1-month"}
    if code in named:
        return named[code]
    ms = INTERVAL_MS[code]
    for unit, size in (("day", 86_400_000), ("hour", 3_600_000), ("minute", 60_000)):
        if ms % size == 0:
            return f"{ms // size}-{unit}"
    return f"{ms / 1000:g}-second"


def _interval(value: object) -> str | None:
    if value is None:
        return None
    from .api.intervals import parse_interval

    return parse_interval(str(value))


def _horizon(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or int(value) < 1:
        raise UserInputError(f"horizon={value!r} is invalid: give the forecast horizon in bars (1 or more)")
    return int(value)


def _target(value: object) -> str:
    if value not in TARGETS:
        raise UserInputError(f"target={value!r} is invalid: use one of {', '.join(TARGETS)}")
    return str(value)


def _timestamp(value: object) -> pd.Timestamp | None:
    """A time as a UTC Timestamp at millisecond resolution (epoch ms for a number; naive times are UTC)."""
    if value is None:
        return None
    stamp = pd.Timestamp(int(value), unit="ms") if isinstance(value, int | np.integer) else pd.Timestamp(value)
    if pd.isna(stamp):
        raise UserInputError(f"first_out_of_sample={value!r} is not a time")
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    # rounded up: a sub-millisecond start never lets an earlier bar count as out of sample
    return stamp.ceil("ms")


def _iso(stamp: pd.Timestamp) -> str:
    millis = f".{stamp.microsecond // 1000:03d}" if stamp.microsecond else ""
    return f"{stamp:%Y-%m-%dT%H:%M:%S}{millis}Z"


def _epoch_ms(index: pd.DatetimeIndex) -> np.ndarray:
    return np.asarray((index - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1), dtype=np.int64)


def _header(interval: str | None, horizon: int | None, first: pd.Timestamp | None, source: str | None,
            target: str = RETURN) -> str:
    """The metadata line; unknown fields (and the default target, a return) are left out, the source (free text)
    goes last."""
    fields = [f"interval={interval}" if interval is not None else "",
              f"horizon={horizon}" if horizon is not None else "",
              f"first_out_of_sample={_iso(first)}" if first is not None else "",
              f"target={target}" if target != RETURN else "",
              "source=" + " ".join(source.split()) if source else ""]
    return " ".join([HEADER_PREFIX, *(f for f in fields if f)])


@dataclass(frozen=True, eq=False)
class Predictions:
    """Predictions per bar with the metadata a backtest needs.

    Attributes:
        values: a Series `prediction` (predicted log returns), or a DataFrame with `prediction` and class
            probabilities p_down/p_flat/p_up (or, for `target` "log-variance", `variance`); indexed by bar open
            time (a UTC `DatetimeIndex`, ascending, unique; a naive index is taken as UTC), float64.
        interval: the Bybit interval code of the bars ("60"; "1h" is accepted and stored as "60"), None if unknown.
        horizon: the forecast horizon in bars, None if unknown.
        first_out_of_sample: the open time of the first bar no weight of the model was fitted on (UTC Timestamp;
            epoch ms or text accepted), None if unknown.
        source: where the predictions came from (a checkpoint path, a file), for messages and the file header.
        target: what `prediction` forecasts: "return" (the default), or "log-variance" (ln of the realised
            variance over the horizon, a volatility model's).
    """

    values: pd.Series | pd.DataFrame
    interval: str | None = None
    horizon: int | None = None
    first_out_of_sample: pd.Timestamp | None = None
    source: str | None = None
    target: str = RETURN

    def __post_init__(self) -> None:
        values = self.values
        if isinstance(values, pd.Series):
            values = values.rename("prediction")
        elif not isinstance(values, pd.DataFrame) or "prediction" not in values.columns:
            raise UserInputError("Predictions.values must be a Series of predictions or a DataFrame with a "
                                 "'prediction' column")
        if not isinstance(values.index, pd.DatetimeIndex):
            raise UserInputError(f"Predictions.values must be indexed by bar open time (a DatetimeIndex), not "
                                 f"{type(values.index).__name__}")
        index = values.index
        # one dtype and no freq whatever made the index (pandas picks the unit by source): equal predictions are equal
        index = pd.DatetimeIndex((index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC"))
                                 .as_unit("ns"), freq=None)
        if not index.is_unique or not index.is_monotonic_increasing:
            raise UserInputError("Predictions.values: bar times must be unique and ascending; sort the rows and "
                                 "drop repeated times")
        try:
            values = values.astype("float64")
        except (TypeError, ValueError):
            raise UserInputError("Predictions.values must be numbers") from None
        object.__setattr__(self, "values", values.set_axis(index.rename("timestamp")))
        object.__setattr__(self, "interval", _interval(self.interval))
        object.__setattr__(self, "horizon", _horizon(self.horizon))
        object.__setattr__(self, "first_out_of_sample", _timestamp(self.first_out_of_sample))
        object.__setattr__(self, "source", None if self.source is None else str(self.source))
        object.__setattr__(self, "target", _target(self.target))

    def require_returns(self) -> None:
        """Refuse predictions that forecast no return (a trading signal needs one).

        Raises:
            UserInputError: `target` is "log-variance".
        """
        if self.target != RETURN:
            raise UserInputError(f"{self.source or 'these predictions'} forecast the log realised variance (a "
                                 "volatility model's), not a return: they are no trading signal; backtest a return "
                                 "model's predictions")

    def __len__(self) -> int:
        return len(self.values)

    def out_of_sample(self) -> Predictions:
        """The rows from `first_out_of_sample` on (same metadata).

        Raises:
            UserInputError: `first_out_of_sample` is unknown.
        """
        if self.first_out_of_sample is None:
            raise UserInputError(f"{self.source or 'these predictions'}: where the model's out-of-sample period "
                                 "starts is unknown")
        kept = self.values[self.values.index >= self.first_out_of_sample]
        return Predictions(kept, self.interval, self.horizon, self.first_out_of_sample, self.source, self.target)

    def table(self) -> pd.DataFrame:
        """The values as the CSV holds them: `timestamp` (epoch ms) first, then the value columns."""
        frame = self.values.to_frame() if isinstance(self.values, pd.Series) else self.values.copy()
        frame.insert(0, "timestamp", _epoch_ms(pd.DatetimeIndex(self.values.index)))
        return frame.reset_index(drop=True)

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write the metadata line and the table to `path`, atomically (a symbolic link there is refused)."""
        return write_predictions_csv(path, self.table(), interval=self.interval, horizon=self.horizon,
                                     first_out_of_sample=self.first_out_of_sample, source=self.source,
                                     target=self.target)

    @classmethod
    def from_csv(cls, path: str | os.PathLike[str]) -> Predictions:
        """Read a predictions CSV (see the module docstring); `source` is the file's own header value, else the
        path. Columns other than `timestamp`, `prediction`, the probabilities and a volatility model's `variance`
        (a walk-forward run's fold, realised return, baselines) are not read.

        Raises:
            UserInputError: no such file. DataFormatError: a bad metadata line, missing columns, no rows, a bad,
                repeated or out-of-order timestamp, a prediction that is not a finite number (one line naming
                the file line).
        """
        path = check_csv_file(path, "give the path of a CSV with columns timestamp,prediction")
        try:
            lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        except UnicodeDecodeError as exc:
            raise DataFormatError(f"{path}: not a text CSV ({exc.reason}); expected columns timestamp,prediction"
                                  ) from None
        meta: dict[str, Any] = {}
        skipped = 0
        if lines and lines[0].startswith("#"):  # the metadata line, or another tool's comment: never data
            meta = _parse_header(path, lines[0]) if lines[0].startswith(HEADER_PREFIX) else {}
            skipped = 1
        frame = _table(path, "".join(lines[skipped:]), lines[skipped] if len(lines) > skipped else "")
        first_line = skipped + 2  # the file line of the first data row
        index = parse_times(path, frame["timestamp"], first_line)
        late = np.flatnonzero(np.diff(index.asi8) < 0)
        if late.size:
            row = int(late[0]) + 1
            raise DataFormatError(f"{path} line {row + first_line}: timestamp {index[row]} comes before the "
                                  f"previous line's {index[row - 1]}; sort the rows by time")
        probabilities = [c for c in PROBABILITY_COLUMNS if c in frame.columns]
        target = meta.get("target", RETURN)
        extra = (["variance"] if target == LOG_VARIANCE and "variance" in frame.columns
                 else probabilities if {"p_down", "p_up"} <= set(probabilities) else [])
        values: pd.Series | pd.DataFrame
        if extra:
            columns = ["prediction", *extra]
            values = pd.DataFrame({c: parse_numbers(path, frame, c, first_line) for c in columns}, index=index)
        else:
            values = pd.Series(parse_numbers(path, frame, "prediction", first_line), index=index, name="prediction")
        return cls(values, meta.get("interval"), meta.get("horizon"), meta.get("first_out_of_sample"),
                   meta.get("source") or str(path), target)


def write_predictions_csv(path: str | os.PathLike[str], table: pd.DataFrame, *, interval: str | None = None,
                          horizon: int | None = None, first_out_of_sample: object = None,
                          source: str | None = None, target: str = RETURN) -> Path:
    """Write `table` (columns `timestamp` in epoch ms and `prediction`, then any others: a walk-forward run adds
    its folds, realised targets and baselines) under the metadata line, atomically; `Predictions.from_csv` reads
    it back. Returns `path`.

    Raises:
        UserInputError: `table` lacks those columns, bad metadata, or `path` is a symbolic link.
    """
    if list(table.columns[:1]) != ["timestamp"] or "prediction" not in table.columns:
        raise UserInputError(f"a predictions table starts with a timestamp column and has a prediction column; got "
                             f"{list(table.columns)}")
    header = _header(_interval(interval), _horizon(horizon), _timestamp(first_out_of_sample), source,
                     _target(target))

    def write(temp: Path) -> None:
        with open(temp, "w", encoding="utf-8", newline="") as handle:
            handle.write(header + "\n")
            table.to_csv(handle, index=False, lineterminator="\n")

    return atomic_write(path, write)


def _parse_header(path: Path, line: str) -> dict[str, Any]:
    """The metadata of the first line; a field this version does not know is skipped (a newer writer's)."""
    body = line[len(HEADER_PREFIX):].strip()
    meta: dict[str, Any] = {}
    source = _SOURCE.search(body)
    if source is not None:
        meta["source"] = source.group(1).strip() or None
        body = body[:source.start()]
    for field in body.split():
        key, _, text = field.partition("=")
        try:
            if key == "interval":
                meta["interval"] = _interval(text)
            elif key == "horizon":
                meta["horizon"] = _horizon(int(text))
            elif key == "first_out_of_sample":
                meta["first_out_of_sample"] = _timestamp(text)
            elif key == "target":
                meta["target"] = _target(text)
        except (ValueError, TypeError) as exc:  # UserInputError is a ValueError
            raise DataFormatError(f"{path} line 1: {key}={text!r} is invalid ({str(exc).splitlines()[0]}); fix the "
                                  "value, or delete the line to read the file without its metadata") from None
    return meta


def _table(path: Path, text: str, header: str) -> pd.DataFrame:
    """The CSV table below the metadata line: the separator from its header (a spreadsheet's ';' or tab too),
    lower-case column names, `timestamp` and `prediction` required."""
    required = "timestamp,prediction"
    separator = "," if "," in header else next((s for s in (";", "\t") if s in header), ",")
    try:
        frame = pd.read_csv(io.StringIO(text), sep=separator)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataFormatError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]}); expected columns "
                              f"{required}") from None
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    missing = [c for c in ("timestamp", "prediction") if c not in frame.columns]
    if missing:
        raise DataFormatError(f"{path}: missing column(s) {missing}; expected a header {required}")
    if frame.empty:
        raise DataFormatError(f"{path}: no data rows; add rows under the header {required}")
    return frame


def parse_times(path: str | os.PathLike[str], column: pd.Series, first_line: int = 2) -> pd.DatetimeIndex:
    """Epoch ms (or s) integers or ISO-8601 text -> a UTC `DatetimeIndex`; a bad or repeated time names its file
    line (`first_line`: the line of row 0).

    Raises:
        DataFormatError: an unparsable or repeated time.
    """
    numeric = pd.to_numeric(column, errors="coerce")
    epoch = numeric.notna().to_numpy()
    times = pd.Series(pd.NaT, index=column.index, dtype="datetime64[ns, UTC]")
    if epoch.any():
        ms = epoch_ms_cells(column[epoch], numeric[epoch].to_numpy(dtype=np.float64), "timestamp", str(path),
                            where=lambda position: f"line {position + first_line}")
        times[epoch] = pd.to_datetime(ms, unit="ms", utc=True)
    if not epoch.all():  # the rest as ISO-8601 text; a cell that is neither is named by its own line
        times[~epoch] = pd.to_datetime(column[~epoch], utc=True, errors="coerce", format="ISO8601")
    bad = np.flatnonzero(times.isna().to_numpy())
    if bad.size:
        raise DataFormatError(f"{path} line {int(bad[0]) + first_line}: timestamp {column.iloc[bad[0]]!r} is neither "
                              "epoch ms nor ISO-8601; fix that row")
    index = pd.DatetimeIndex(times)
    repeated = np.flatnonzero(index.duplicated())
    if repeated.size:
        row = int(repeated[0])
        earlier = int(np.flatnonzero(index[:row] == index[row])[0])
        raise DataFormatError(f"{path} line {row + first_line}: timestamp {index[row]} repeats line "
                              f"{earlier + first_line}; give one row per time")
    return index


def parse_numbers(path: str | os.PathLike[str], frame: pd.DataFrame, name: str, first_line: int = 2) -> np.ndarray:
    """Column `name` as finite floats; the first cell that is not names its file line.

    Raises:
        DataFormatError: an empty, non-numeric or infinite cell.
    """
    return finite_cells(frame[name], name, str(path), where=lambda position: f"line {position + first_line}")

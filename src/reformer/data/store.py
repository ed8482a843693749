"""The embedded kline store: one SQLite file, one row per candle, safe to share between processes.

Layout: table `klines`, primary key (category, symbol, interval, start_time), WITHOUT ROWID so the rows of one
series sit together in key order and a range read is one b-tree walk. `start_time` is the candle open time in
epoch milliseconds UTC; prices and volumes are REAL; a NULL turnover means "unknown" and reads back as NaN.

Durability: WAL mode, `synchronous=NORMAL`. Every `insert` is one transaction, so a process killed at any
instant leaves the page either fully stored or not at all. A power cut may lose the last committed pages (it
never corrupts the file); a fetcher simply fetches them again. Stored candles get other values only when the
caller asks (`replace=True`). A store SQLite may not write (read-only file, folder or filesystem) opens read-only:
reads work where SQLite can (a WAL store needs its -shm file beside it), writes are refused in one clear error.
"""

from __future__ import annotations

import contextlib
import math
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, NamedTuple

from ..api.intervals import GRID_OFFSET_MS, INTERVAL_MS
from ..api.types import Kline
from ..errors import UserInputError
from ._store_access import FIX_PERMISSIONS, make_folder, open_error, resolve_path, writable
from ._store_keys import _bounds, _check_key, _Row, _step_ms, _to_row

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DEFAULT_DB_PATH", "ConflictingCandlesError", "Coverage", "Inserted", "KlineStore", "SeriesInfo"]

DEFAULT_DB_PATH = Path("~/.reformer/klines.sqlite")
"""Where the store lives unless `REFORMER_DB` or an explicit path says otherwise (`~` is expanded)."""

_SCHEMA_VERSION = 1
# Bybit interval keys with a fixed length. "M" (calendar month) has none, so grid arithmetic refuses it.
_INTERVAL_MS = INTERVAL_MS
_GRID_OFFSET_MS = GRID_OFFSET_MS

_SCHEMA = """
CREATE TABLE IF NOT EXISTS klines (
    category TEXT NOT NULL, symbol TEXT NOT NULL, interval TEXT NOT NULL, start_time INTEGER NOT NULL,
    open REAL NOT NULL, high REAL NOT NULL, low REAL NOT NULL, close REAL NOT NULL, volume REAL NOT NULL,
    turnover REAL,
    PRIMARY KEY (category, symbol, interval, start_time)
) WITHOUT ROWID
"""

# Rows whose values are unchanged are skipped, so re-storing a page already held writes nothing to the WAL.
_UPSERT = """
INSERT INTO klines VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (category, symbol, interval, start_time) DO UPDATE SET
    open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close,
    volume = excluded.volume, turnover = excluded.turnover
WHERE open IS NOT excluded.open OR high IS NOT excluded.high OR low IS NOT excluded.low
   OR close IS NOT excluded.close OR volume IS NOT excluded.volume OR turnover IS NOT excluded.turnover
"""

_KEY = "category = ? AND symbol = ? AND interval = ?"
_COLUMNS = "start_time, open, high, low, close, volume, turnover"


class ConflictingCandlesError(UserInputError):
    """Stored candles hold other values than the ones given, and replacing them was not asked for: `count` of
    them, the first opening at `first_start` (epoch ms)."""

    def __init__(self, message: str, count: int, first_start: int) -> None:
        super().__init__(message)
        self.count, self.first_start = count, first_start


class Inserted(NamedTuple):
    """What one `KlineStore.insert` did: candles new to the store, stored candles given other values."""

    added: int
    replaced: int


class Coverage(NamedTuple):
    """What one series holds: first and last candle open time (epoch ms UTC) and the number of candles."""

    first_start: int
    last_start: int
    candle_count: int


class SeriesInfo(NamedTuple):
    """One stored series, as listed by `KlineStore.series`."""

    category: str
    symbol: str
    interval: str
    candle_count: int
    first_start: int
    last_start: int


class KlineStore:
    """Klines in one SQLite file, keyed by (category, symbol, interval, candle open time).

    Several processes may open the same file: readers never block, writers wait up to `busy_timeout_s`.
    Use as a context manager, or call `close()`.

    Args:
        path: the database file. None: the `REFORMER_DB` environment variable, else
            `~/.reformer/klines.sqlite`. Missing parent folders are created.
        busy_timeout_s: how long a write waits for another process's write to finish.

    Attributes:
        read_only: the store could only be opened for reading (see the module's notes).

    Raises:
        DataFormatError: the file exists but is not a kline store (not SQLite, or another schema version).
        UserInputError: the folder is not writable (or is a file), or the store is read-only and unreadable.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, busy_timeout_s: float = 30.0) -> None:
        self.path = resolve_path(path, DEFAULT_DB_PATH)
        folder = self.path.parent
        make_folder(folder)
        exists = self.path.exists()
        if not exists and not os.access(folder, os.W_OK):
            raise UserInputError(f"the folder {folder} is not writable: {FIX_PERMISSIONS}")
        self.read_only = exists and not writable(self.path)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a transaction spans exactly one call.
        target = f"{self.path.resolve().as_uri()}?mode=ro" if self.read_only else str(self.path)
        try:  # a place SQLite cannot create a file in, though the folder reads as writable (/proc, a FUSE mount)
            self._conn = sqlite3.connect(target, timeout=busy_timeout_s, isolation_level=None, uri=self.read_only)
        except sqlite3.OperationalError as exc:
            raise open_error(self.path, self.read_only, exc) from None
        try:
            if not self.read_only:
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
            self._init_schema()
        except BaseException as exc:
            self._conn.close()
            if isinstance(exc, sqlite3.DatabaseError):
                raise open_error(self.path, self.read_only, exc) from exc
            raise

    def __repr__(self) -> str:
        return f"KlineStore({str(self.path)!r})"

    def __enter__(self) -> KlineStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self._conn.close()

    def check_writable(self) -> None:
        """Raise the error every write would raise on a read-only store (call it before work that ends in one)."""
        if self.read_only:
            raise UserInputError(f"the store {self.path} is read-only: {FIX_PERMISSIONS}")

    def insert(self, category: str, symbol: str, interval: str, klines: Iterable[Sequence[float]], *,
               replace: bool = False) -> Inserted:
        """Store candles in one transaction: all of them land, or none. Candles stored with the same values
        change nothing, so storing a page twice is harmless.

        Args:
            category, symbol, interval: the series ("linear", "BTCUSDT", a Bybit interval key such as "60").
            klines: `Kline`s, or 7-sequences in `Kline` field order; any order (for one open time given twice,
                the last wins). A NaN turnover is stored as unknown.
            replace: overwrite stored candles that hold other values (the exchange revising a candle). False:
                refuse, and store nothing.

        Returns:
            `Inserted(added, replaced)`.

        Raises:
            ConflictingCandlesError: `replace` is False and stored candles hold other values.
            UserInputError: a bad key, start time or price, or a read-only store.
        """
        _check_key(category, symbol, interval)
        rows = [_to_row(category, symbol, interval, index, kline) for index, kline in enumerate(klines)]
        if not rows:
            return Inserted(0, 0)
        self.check_writable()
        starts = [row[3] for row in rows]
        bounds = (category, symbol, interval, min(starts), max(starts))
        count_sql = f"SELECT COUNT(*) FROM klines WHERE {_KEY} AND start_time BETWEEN ? AND ?"
        with self._write():  # the counts and the comparison see no other writer
            changed = self._changed(rows)
            if changed and not replace:
                raise ConflictingCandlesError(
                    f"{len(changed)} stored {category} {symbol} {interval} candle(s) hold other values than the "
                    f"ones given (the first opens at epoch ms {changed[0]}); pass replace=True to overwrite them",
                    len(changed), changed[0])
            before = self._conn.execute(count_sql, bounds).fetchone()[0]
            self._conn.executemany(_UPSERT, rows)
            after = self._conn.execute(count_sql, bounds).fetchone()[0]
        return Inserted(int(after - before), len(changed))

    def upsert(self, category: str, symbol: str, interval: str, klines: Iterable[Sequence[float]], *,
               replace: bool = False) -> int:
        """`insert(...).added`: how many candles were new (for callers that only count those)."""
        return self.insert(category, symbol, interval, klines, replace=replace).added

    def _changed(self, rows: list[_Row]) -> list[int]:
        """Open times, ascending, of stored candles whose values differ from `rows` (the last row per time)."""
        given = {row[3]: row[4:] for row in rows}
        times = sorted(given)
        changed = []
        for first in range(0, len(times), 500):  # well under SQLite's limit on bound parameters
            chunk = times[first:first + 500]
            stored = self._conn.execute(f"SELECT {_COLUMNS} FROM klines WHERE {_KEY} AND start_time IN "
                                        f"({','.join('?' * len(chunk))})", (*rows[0][:3], *chunk))
            changed += [start for start, *values in stored if tuple(values) != given[start]]
        return sorted(changed)

    def load(self, category: str, symbol: str, interval: str, start: int | None = None,
             end: int | None = None) -> list[Kline]:
        """Read candles with `start <= start_time <= end` (None: unbounded), ascending.

        Returns:
            The candles; an unknown turnover reads as NaN. Empty if nothing is stored.
        """
        klines = list(map(Kline._make, self._select(category, symbol, interval, start, end)))
        if any(kline.turnover is None for kline in klines):  # rare: only imports without turnover
            klines = [kline._replace(turnover=math.nan) if kline.turnover is None else kline for kline in klines]
        return klines

    def load_frame(self, category: str, symbol: str, interval: str, start: int | None = None,
                   end: int | None = None) -> pd.DataFrame:
        """Like `load`, as a DataFrame with columns timestamp (int64 ms), open, high, low, close, volume,
        turnover (float64), ascending, with a default RangeIndex."""
        import pandas as pd  # imported here: fetchers that only write never pay for pandas

        rows = self._select(category, symbol, interval, start, end)
        columns = ["timestamp", "open", "high", "low", "close", "volume", "turnover"]
        frame = pd.DataFrame(rows, columns=columns)
        # astype turns the NULL turnovers (None) into NaN and fixes the dtypes of an empty result.
        return frame.astype({"timestamp": "int64", **dict.fromkeys(columns[1:], "float64")})

    def coverage(self, category: str, symbol: str, interval: str) -> Coverage | None:
        """First and last candle open time and candle count of one series, or None if nothing is stored."""
        _check_key(category, symbol, interval)
        first, last, count = self._conn.execute(
            f"SELECT MIN(start_time), MAX(start_time), COUNT(*) FROM klines WHERE {_KEY}", (category, symbol, interval)
        ).fetchone()
        return None if count == 0 else Coverage(first, last, count)

    def series(self) -> list[SeriesInfo]:
        """Every stored series with its count and first/last candle open time, sorted by key."""
        rows = self._conn.execute("SELECT category, symbol, interval, COUNT(*), MIN(start_time), MAX(start_time) "
                                  "FROM klines GROUP BY category, symbol, interval ORDER BY 1, 2, 3").fetchall()
        return [SeriesInfo(*row) for row in rows]

    def gaps(self, category: str, symbol: str, interval: str, interval_ms: int | None = None,
             start: int | None = None, end: int | None = None) -> list[tuple[int, int]]:
        """Holes between stored candles: where the next candle opens more than one interval after the last.

        Only stored candles within [start, end] are considered, so nothing before the first or after the last
        of them counts as a gap (use `missing_ranges` for what a fetch must ask for). Gaps are reported, never
        filled.

        Args:
            interval_ms: the candle length; None derives it from `interval` ("M", calendar months, is refused).
            start, end: inclusive bounds on candle open times (epoch ms); None: unbounded.

        Returns:
            (first missing open time, last missing open time) pairs, inclusive, ascending.

        Raises:
            UserInputError: a bad key, an interval_ms that contradicts `interval`, or start > end.
        """
        step = _step_ms(interval, interval_ms)
        low, high = _bounds(start, end)
        return self._holes("klines", category, symbol, interval, step, low, high, on_grid_only=False)

    def missing_ranges(self, category: str, symbol: str, interval: str, interval_ms: int | None, start: int,
                       end: int) -> list[tuple[int, int]]:
        """Which candles in [start, end] the store lacks: exactly what an incremental fetch must request.

        Times are aligned to the interval grid (multiples of the interval since the epoch; weekly candles on
        Mondays 00:00 UTC): `start` rounds up and `end` down to a candle open time. Stored rows off that grid
        fill nothing.

        Args:
            interval_ms: the candle length; None derives it from `interval` ("M" is refused).
            start, end: inclusive bounds on candle open times, epoch ms.

        Returns:
            Inclusive (first open time, last open time) ranges, ascending; empty when everything is stored.

        Raises:
            UserInputError: a bad key, an interval_ms that contradicts `interval`, or start > end.
        """
        return self._missing("klines", category, symbol, interval, interval_ms, start, end)

    def _missing(self, table: str, category: str, symbol: str, interval: str, interval_ms: int | None, start: int,
                 end: int) -> list[tuple[int, int]]:
        """`missing_ranges` of any table keyed like `klines` (the mark-price candles too)."""
        step = _step_ms(interval, interval_ms)
        _bounds(start, end)
        offset = _GRID_OFFSET_MS.get(interval, 0)
        first = start + (offset - start) % step  # round up onto the grid
        last = end - (end - offset) % step  # round down
        if first > last:
            return []
        kept = self._conn.execute(f"SELECT MIN(start_time), MAX(start_time) FROM {table} WHERE {_KEY} "
                                  "AND start_time BETWEEN ? AND ? AND (start_time - ?) % ? = 0",
                                  (category, symbol, interval, first, last, offset, step)).fetchone()
        if kept[0] is None:
            return [(first, last)]
        ranges = [(first, kept[0] - step)] if kept[0] > first else []
        ranges += self._holes(table, category, symbol, interval, step, first, last, on_grid_only=True)
        if kept[1] < last:
            ranges.append((kept[1] + step, last))
        return ranges

    def _holes(self, table: str, category: str, symbol: str, interval: str, step: int, low: int, high: int,
               on_grid_only: bool) -> list[tuple[int, int]]:
        # The window function keeps the scan inside SQLite: only the holes come back to Python. A hole must
        # fit at least one whole candle (2 steps between neighbours), so off-grid jitter is never one.
        grid = f"AND (start_time - {_GRID_OFFSET_MS.get(interval, 0)}) % {step} = 0" if on_grid_only else ""
        rows = self._conn.execute(
            "SELECT previous + ?, start_time - ? FROM ("
            f"  SELECT start_time, LAG(start_time) OVER (ORDER BY start_time) AS previous FROM {table}"
            f"  WHERE {_KEY} AND start_time BETWEEN ? AND ? {grid}"
            ") WHERE start_time - previous >= ? ORDER BY start_time",
            (step, step, category, symbol, interval, low, high, 2 * step),
        ).fetchall()
        return [(int(gap_start), int(gap_end)) for gap_start, gap_end in rows]

    def _select(self, category: str, symbol: str, interval: str, start: int | None,
                end: int | None) -> list[tuple[int, float, float, float, float, float, float | None]]:
        _check_key(category, symbol, interval)
        return self._conn.execute(f"SELECT {_COLUMNS} FROM klines WHERE {_KEY} AND start_time BETWEEN ? AND ? "
                                  "ORDER BY start_time", (category, symbol, interval, *_bounds(start, end))).fetchall()

    def _init_schema(self) -> None:
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, _SCHEMA_VERSION):
            raise sqlite3.DatabaseError(f"schema version {version}, this code reads {_SCHEMA_VERSION}")
        if version == 0 and self.read_only:  # an empty file: the schema cannot be written
            raise UserInputError(f"the store {self.path} is read-only and empty: {FIX_PERMISSIONS}")
        if version == 0:
            with self._write():
                self._conn.execute(_SCHEMA)
                self._conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")

    @contextlib.contextmanager
    def _write(self) -> Iterator[None]:
        """One write transaction; IMMEDIATE takes the write lock up front, so what it reads stays as read."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._conn.execute("COMMIT")
        except BaseException:
            # SQLite may already have rolled back (e.g. disk full); a second ROLLBACK would mask the cause.
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

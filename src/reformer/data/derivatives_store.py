"""The perpetuals' market data in the kline store's SQLite file: funding rates, mark-price candles, risk-limit tiers.

`DerivativesStore` is a `KlineStore` (same file, connection, locking and one-transaction-per-call writes) with
three more tables, created when a writable store is opened, so a store written before they existed gains them
on its next open. A read-only store without them gets empty temporary ones for the connection's lifetime: it
reads as holding none of these rows, and writes are refused as ever:

    funding_rates  (category, symbol, time_ms)                          -> rate
    mark_klines    (category, symbol, interval, start_time)             -> open, high, low, close
    risk_limits    (category, symbol, tier_id)                          -> risk_limit_value,
                                                                           maintenance_margin_rate,
                                                                           initial_margin_rate, max_leverage

Writes behave as `KlineStore.insert`: all rows land or none, rows stored with the same values change nothing, and
stored rows with other values are refused unless `replace=True`. A risk-limit table is one snapshot: storing it
again with `replace=True` also drops tiers the new table no longer has.

Funding settlements are checked against Bybit's grids: consecutive settlements 1, 4 or 8 hours apart, at
multiples of that spacing since the epoch (00:00, 08:00, 16:00 UTC for 8 hours). Anything else (a missing
settlement, an odd time) is an irregular stretch, reported by `funding_irregular`, never repaired.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..api.types import MarkKline, RiskLimitTier
from ..errors import UserInputError
from ._store_keys import _bounds, _check_key, _step_ms
from .store import ConflictingCandlesError, Coverage, Inserted, KlineStore

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FUNDING_SPACINGS_MS", "PERPETUAL_CATEGORIES", "ConflictingRowsError", "DerivativesStore"]

PERPETUAL_CATEGORIES = ("linear", "inverse")
"""The categories that have funding, mark prices and risk limits (spot has none)."""
FUNDING_SPACINGS_MS = (3_600_000, 4 * 3_600_000, 8 * 3_600_000)
"""Regular distances between two funding settlements: 1, 4 and 8 hours."""


@dataclass(frozen=True)
class _Table:
    """One table: its series key columns, the column ordering rows within a series, its value columns."""

    name: str
    keys: tuple[str, ...]
    order: str
    values: tuple[str, ...]
    noun: str

    @property
    def where(self) -> str:
        return " AND ".join(f"{key} = ?" for key in self.keys)

    def schema(self, temporary: bool = False) -> str:
        columns = ", ".join([*(f"{key} TEXT NOT NULL" for key in self.keys), f"{self.order} INTEGER NOT NULL",
                             *(f"{value} REAL NOT NULL" for value in self.values)])
        return (f"CREATE {'TEMP ' if temporary else ''}TABLE IF NOT EXISTS {self.name} ({columns}, "
                f"PRIMARY KEY ({', '.join(self.keys)}, {self.order})) WITHOUT ROWID")

    def upsert(self) -> str:
        # Unchanged rows are skipped, so storing a page again writes nothing to the WAL.
        columns = [*self.keys, self.order, *self.values]
        updates = ", ".join(f"{value} = excluded.{value}" for value in self.values)
        differs = " OR ".join(f"{value} IS NOT excluded.{value}" for value in self.values)
        return (f"INSERT INTO {self.name} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
                f"ON CONFLICT ({', '.join(self.keys)}, {self.order}) DO UPDATE SET {updates} WHERE {differs}")


FUNDING = _Table("funding_rates", ("category", "symbol"), "time_ms", ("rate",), "funding settlement")
MARK = _Table("mark_klines", ("category", "symbol", "interval"), "start_time", ("open", "high", "low", "close"),
              "mark-price candle")
RISK = _Table("risk_limits", ("category", "symbol"), "tier_id",
              ("risk_limit_value", "maintenance_margin_rate", "initial_margin_rate", "max_leverage"), "risk-limit tier")
_TABLES = (FUNDING, MARK, RISK)
_Row = tuple[int, ...] | tuple[float, ...]


class ConflictingRowsError(ConflictingCandlesError):
    """Stored funding settlements, mark candles or risk tiers hold other values than the ones given, and replacing
    them was not asked for: `count` of them, the first at `first_start` (epoch ms, or a tier id)."""


class DerivativesStore(KlineStore):
    """A `KlineStore` that also keeps funding rates, mark-price candles and risk-limit tiers (see the module).

    Args, Attributes, Raises: as `KlineStore`.
    """

    def __repr__(self) -> str:
        return f"DerivativesStore({str(self.path)!r})"

    def __enter__(self) -> DerivativesStore:
        return self

    def _init_schema(self) -> None:
        super()._init_schema()
        present = {name for (name,) in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        missing = [table for table in _TABLES if table.name not in present]
        if missing and self.read_only:
            for table in missing:  # the temp schema is the connection's own: writable on a read-only file
                self._conn.execute(table.schema(temporary=True))
        elif missing:
            with self._write():
                for table in missing:
                    self._conn.execute(table.schema())

    # ---- funding -------------------------------------------------------------------------------------------

    def insert_funding(self, category: str, symbol: str, rates: Iterable[Sequence[float]], *,
                       replace: bool = False) -> Inserted:
        """Store funding settlements in one transaction (see the module for the rules).

        Args:
            category, symbol: "linear" or "inverse", e.g. "BTCUSDT".
            rates: `FundingRate`s or (time_ms, rate) pairs, any order.
            replace: overwrite settlements stored with another rate; False refuses and stores nothing.

        Returns:
            `Inserted(added, replaced)`.

        Raises:
            ConflictingRowsError: `replace` is False and stored settlements hold other rates.
            UserInputError: a bad key, time or rate, or a read-only store.
        """
        _check_perpetual(category, symbol)
        rows = [_row(FUNDING, index, rate) for index, rate in enumerate(rates)]
        return self._upsert(FUNDING, (category, symbol), rows, replace=replace)

    def load_funding(self, category: str, symbol: str, start: int | None = None, end: int | None = None
                     ) -> pd.Series:
        """Funding rates settled in [start, end] (epoch ms, None: unbounded): a float64 Series named
        "funding_rate", indexed by the settlement times as a UTC DatetimeIndex named "time", ascending."""
        import pandas as pd

        from ..bars import ms_to_times

        rows = self._rows(FUNDING, (category, symbol), start, end)
        index = ms_to_times([time for time, _ in rows]).rename("time")
        return pd.Series([rate for _, rate in rows], index=index, name="funding_rate", dtype="float64")

    def funding_coverage(self, category: str, symbol: str) -> Coverage | None:
        """First and last settlement time and the number of settlements stored, or None."""
        return self._coverage(FUNDING, (category, symbol))

    def funding_irregular(self, category: str, symbol: str, start: int | None = None,
                          end: int | None = None) -> list[tuple[int, int]]:
        """Stretches where stored settlements leave Bybit's 1/4/8-hour grids (a missing settlement, an odd time).

        Args:
            start, end: consider settlements at times in [start, end] (epoch ms; None: unbounded), each with the
                stored one before it (so a hole just before `start` counts).

        Returns:
            (settlement before the stretch, settlement after it) pairs of epoch ms, ascending; adjacent irregular
            spacings are merged into one stretch.
        """
        _check_perpetual(category, symbol)
        spacings = ", ".join(map(str, FUNDING_SPACINGS_MS))
        pairs = self._conn.execute(
            "SELECT previous, time_ms FROM ("
            "  SELECT time_ms, LAG(time_ms) OVER (ORDER BY time_ms) AS previous FROM funding_rates"
            f"  WHERE {FUNDING.where}"
            ") WHERE previous IS NOT NULL AND time_ms BETWEEN ? AND ? "
            f"AND NOT (time_ms - previous IN ({spacings}) AND time_ms % (time_ms - previous) = 0) ORDER BY time_ms",
            (category, symbol, *_bounds(start, end))).fetchall()
        stretches: list[tuple[int, int]] = []
        for before, after in pairs:
            if stretches and stretches[-1][1] == before:
                stretches[-1] = (stretches[-1][0], int(after))
            else:
                stretches.append((int(before), int(after)))
        return stretches

    # ---- mark-price candles ----------------------------------------------------------------------------------

    def insert_mark_klines(self, category: str, symbol: str, interval: str, klines: Iterable[Sequence[float]], *,
                           replace: bool = False) -> Inserted:
        """Store mark-price candles in one transaction (rules as `KlineStore.insert`).

        Args:
            category, symbol, interval: the series ("linear", "BTCUSDT", a Bybit interval key such as "60").
            klines: `MarkKline`s or (start_time, open, high, low, close) tuples, any order.
            replace: overwrite candles stored with other values; False refuses and stores nothing.

        Returns:
            `Inserted(added, replaced)`.

        Raises:
            ConflictingRowsError: `replace` is False and stored candles hold other values.
            UserInputError: a bad key, time or price (not > 0, or high below low), or a read-only store.
        """
        _check_perpetual(category, symbol, interval)
        rows = [_row(MARK, index, kline) for index, kline in enumerate(klines)]
        return self._upsert(MARK, (category, symbol, interval), rows, replace=replace)

    def load_mark_klines(self, category: str, symbol: str, interval: str, start: int | None = None,
                         end: int | None = None) -> list[MarkKline]:
        """Mark-price candles opening in [start, end] (epoch ms, None: unbounded), ascending."""
        return [MarkKline(*row) for row in self._rows(MARK, (category, symbol, interval), start, end)]

    def load_mark_frame(self, category: str, symbol: str, interval: str, start: int | None = None,
                        end: int | None = None) -> pd.DataFrame:
        """Like `load_mark_klines`, as the bars' frame (`reformer.bars.bar_frame`'s layout): float64 open, high,
        low, close indexed by the candles' open times, a UTC DatetimeIndex named "time"."""
        import pandas as pd

        from ..bars import OHLC, ms_to_times

        rows = self._rows(MARK, (category, symbol, interval), start, end)
        index = ms_to_times([row[0] for row in rows]).rename("time")
        return pd.DataFrame([row[1:] for row in rows], index=index, columns=list(OHLC), dtype="float64")

    def mark_coverage(self, category: str, symbol: str, interval: str) -> Coverage | None:
        """First and last mark candle open time and the number of candles stored, or None."""
        return self._coverage(MARK, (category, symbol, interval))

    def mark_gaps(self, category: str, symbol: str, interval: str, start: int | None = None,
                  end: int | None = None) -> list[tuple[int, int]]:
        """Holes between stored mark candles within [start, end]: `KlineStore.gaps` for the mark series."""
        _check_perpetual(category, symbol, interval)
        step = _step_ms(interval, None)
        low, high = _bounds(start, end)
        return self._holes(MARK.name, category, symbol, interval, step, low, high, on_grid_only=False)

    def mark_missing_ranges(self, category: str, symbol: str, interval: str, start: int,
                            end: int) -> list[tuple[int, int]]:
        """Which mark candles in [start, end] the store lacks: `KlineStore.missing_ranges` for the mark series."""
        _check_perpetual(category, symbol, interval)
        return self._missing(MARK.name, category, symbol, interval, None, start, end)

    # ---- risk limits ---------------------------------------------------------------------------------------

    def insert_risk_tiers(self, category: str, symbol: str, tiers: Iterable[Sequence[float]], *,
                          replace: bool = False) -> Inserted:
        """Store a symbol's risk-limit table in one transaction.

        Args:
            category, symbol: "linear" or "inverse", e.g. "BTCUSDT".
            tiers: `RiskLimitTier`s (or 5-tuples in its field order): the whole table.
            replace: make the stored table exactly `tiers` (tiers with other values are overwritten, tiers no
                longer listed dropped); False refuses any such difference and stores nothing.

        Returns:
            `Inserted(added, replaced)`: tiers new to the store; stored tiers overwritten or dropped.

        Raises:
            ConflictingRowsError: `replace` is False and the stored table differs in a tier both hold, or holds
                tiers `tiers` lacks.
            UserInputError: a bad key or value (not > 0), or a read-only store.
        """
        _check_perpetual(category, symbol)
        rows = [_row(RISK, index, tier) for index, tier in enumerate(tiers)]
        return self._upsert(RISK, (category, symbol), rows, replace=replace, snapshot=True)

    def load_risk_tiers(self, category: str, symbol: str) -> list[RiskLimitTier]:
        """The stored risk-limit table, lowest tier first (empty if none is stored)."""
        rows = self._rows(RISK, (category, symbol), None, None)
        tiers = [RiskLimitTier(int(row[0]), *row[1:]) for row in rows]
        return sorted(tiers, key=lambda tier: (tier.risk_limit_value, tier.tier_id))

    # ---- shared --------------------------------------------------------------------------------------------

    def _upsert(self, table: _Table, key: tuple[str, ...], rows: list[_Row], *, replace: bool,
                snapshot: bool = False) -> Inserted:
        if not rows:
            return Inserted(0, 0)
        self.check_writable()
        given = {int(row[0]): tuple(float(v) for v in row[1:]) for row in rows}  # the last row per time wins
        with self._write():  # what is compared is what is written: no other writer in between
            stored = self._stored(table, key, None if snapshot else sorted(given))
            changed = [t for t, values in stored.items() if t in given and values != given[t]]
            dropped = [t for t in stored if t not in given]  # only a snapshot reads rows beyond the given ones
            conflicts = sorted(changed + dropped)
            if conflicts and not replace:
                raise ConflictingRowsError(
                    f"{len(conflicts)} stored {' '.join(key)} {table.noun}(s) hold other values than the ones given "
                    f"(the first at {conflicts[0]}); pass replace=True to overwrite them", len(conflicts), conflicts[0])
            self._conn.executemany(table.upsert(), [(*key, t, *values) for t, values in given.items()])
            self._conn.executemany(f"DELETE FROM {table.name} WHERE {table.where} AND {table.order} = ?",
                                   [(*key, t) for t in dropped])
        return Inserted(sum(1 for t in given if t not in stored), len(conflicts))

    def _stored(self, table: _Table, key: tuple[str, ...], times: list[int] | None) -> dict[int, tuple[float, ...]]:
        """Stored values by time (or tier id): of `times` only, or the whole series when None."""
        select = f"SELECT {table.order}, {', '.join(table.values)} FROM {table.name} WHERE {table.where}"
        if times is None:
            return {int(row[0]): tuple(row[1:]) for row in self._conn.execute(select, key)}
        stored: dict[int, tuple[float, ...]] = {}
        for first in range(0, len(times), 500):  # well under SQLite's limit on bound parameters
            chunk = times[first:first + 500]
            rows = self._conn.execute(f"{select} AND {table.order} IN ({','.join('?' * len(chunk))})", (*key, *chunk))
            stored.update((int(row[0]), tuple(row[1:])) for row in rows)
        return stored

    def _rows(self, table: _Table, key: tuple[str, ...], start: int | None, end: int | None) -> list[tuple]:
        _check_perpetual(*key)
        low, high = _bounds(start, end)
        return self._conn.execute(f"SELECT {table.order}, {', '.join(table.values)} FROM {table.name} "
                                  f"WHERE {table.where} AND {table.order} BETWEEN ? AND ? ORDER BY {table.order}",
                                  (*key, low, high)).fetchall()

    def _coverage(self, table: _Table, key: tuple[str, ...]) -> Coverage | None:
        _check_perpetual(*key)
        first, last, count = self._conn.execute(
            f"SELECT MIN({table.order}), MAX({table.order}), COUNT(*) FROM {table.name} WHERE {table.where}", key
        ).fetchone()
        return None if count == 0 else Coverage(first, last, count)


def _check_perpetual(category: str, symbol: str, interval: str = "60") -> None:
    if category not in PERPETUAL_CATEGORIES:
        raise UserInputError(f"category={category!r} has no funding, mark price or risk limits; use one of "
                             f"{', '.join(PERPETUAL_CATEGORIES)}")
    _check_key(category, symbol, interval)


def _row(table: _Table, index: int, row: Sequence[float]) -> _Row:
    """One given row, checked: an integer time (or tier id), then finite values (prices and limits > 0)."""
    if len(row) != 1 + len(table.values):
        raise UserInputError(f"{table.name}[{index}] has {len(row)} fields; pass ({table.order}, "
                             f"{', '.join(table.values)})")
    first = row[0]
    if isinstance(first, bool) or first != int(first):
        raise UserInputError(f"{table.name}[{index}].{table.order}={first!r} must be an integer")
    numbers = tuple(float(value) for value in row[1:])
    for name, value in zip(table.values, numbers, strict=True):
        if not math.isfinite(value) or (table is not FUNDING and value <= 0):
            need = "a finite number" if table is FUNDING else "a finite number > 0"
            raise UserInputError(f"{table.name}[{index}].{name}={value!r} must be {need}; drop or fix that row")
    if table is MARK and numbers[1] < numbers[2]:
        raise UserInputError(f"{table.name}[{index}]: high {numbers[1]!r} is below low {numbers[2]!r}; "
                             "swap them or drop that candle")
    return (int(first), *numbers)

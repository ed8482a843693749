"""The candle store's keys and rows, checked before SQLite sees them: category, symbol and interval, time bounds,
and one candle as a row of the klines table."""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..api.intervals import INTERVAL_MS
from ..api.types import Kline
from ..errors import UserInputError

_CATEGORIES = ("spot", "linear", "inverse")
_INTERVAL_MS = INTERVAL_MS
_INTERVALS = (*_INTERVAL_MS, "M")
_MIN_TIME, _MAX_TIME = -(2**63), 2**63 - 1  # SQLite INTEGER range: "no bound"


def _check_key(category: str, symbol: str, interval: str) -> None:
    if category not in _CATEGORIES:
        raise UserInputError(f"category={category!r} is not supported; use one of {', '.join(_CATEGORIES)}")
    if not isinstance(symbol, str) or not symbol or symbol != symbol.strip():
        raise UserInputError(f"symbol={symbol!r} must be a non-empty name without spaces, e.g. 'BTCUSDT'")
    if interval not in _INTERVALS:
        raise UserInputError(f"interval={interval!r} is not a Bybit interval; use one of {', '.join(_INTERVALS)}")


def _step_ms(interval: str, interval_ms: int | None) -> int:
    if interval not in _INTERVAL_MS:
        raise UserInputError(f"interval={interval!r} has no fixed length, so gaps cannot be computed; use one of "
                             f"{', '.join(_INTERVAL_MS)}")
    expected = _INTERVAL_MS[interval]
    if interval_ms is not None and interval_ms != expected:
        raise UserInputError(f"interval_ms={interval_ms!r} contradicts interval={interval!r} ({expected} ms); "
                             f"pass {expected} or None")
    return expected


def _bounds(start: int | None, end: int | None) -> tuple[int, int]:
    low = _MIN_TIME if start is None else int(start)
    high = _MAX_TIME if end is None else int(end)
    if low > high:
        raise UserInputError(f"start={start!r} is after end={end!r}; swap them")
    return low, high


_Row = tuple[str, str, str, int, float, float, float, float, float, float | None]


def _to_row(category: str, symbol: str, interval: str, index: int, kline: Sequence[float]) -> _Row:
    if len(kline) != len(Kline._fields):
        raise UserInputError(f"klines[{index}] has {len(kline)} fields; pass Kline objects "
                             f"({', '.join(Kline._fields)})")
    start_time = kline[0]
    if isinstance(start_time, bool) or start_time != int(start_time):
        raise UserInputError(f"klines[{index}].start_time={start_time!r} must be an integer epoch ms")
    open_, high, low, close, volume, turnover = (float(value) for value in kline[1:])
    for name, value in zip(Kline._fields[1:6], (open_, high, low, close, volume), strict=True):
        if not math.isfinite(value):
            raise UserInputError(f"klines[{index}].{name}={value!r} must be a finite number; drop or fix the candle")
    # NaN turnover = unknown, stored as NULL
    return (category, symbol, interval, int(start_time), open_, high, low, close, volume,
            None if math.isnan(turnover) else turnover)

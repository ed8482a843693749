"""Bybit kline intervals: parsing user spellings and converting to bucket lengths in milliseconds.

Bybit names intervals "1","3","5","15","30","60","120","240","360","720" (minutes), "D", "W", "M".
Friendly spellings ("1m", "1h", "4h", "1d", "1w", "1M") and integers (minutes) are accepted and mapped onto them.

Epoch numbers (user files, command-line times) are told apart by magnitude alone: `epoch_in_seconds`.

"M" (calendar month) has no fixed length, so `interval_ms` rejects it: the client pages by arithmetic windows
and decides "closed" by `start + length <= now`, neither of which works for months. "W" has a fixed length
(7 days) and works, whatever weekday Bybit aligns weeks to, because the client never aligns timestamps itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, overload

from ..errors import InvalidIntervalError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = ["EPOCH_MS_FROM", "GRID_OFFSET_MS", "INTERVAL_MS", "VALID_INTERVALS", "epoch_in_seconds", "interval_ms",
           "parse_interval"]

EPOCH_MS_FROM = 10**11
"""Below this magnitude an epoch number is seconds, from it on milliseconds: 1e11 s is the year 5138 while 1e11 ms
is 1973, so for market data a smaller number can only mean seconds."""


@overload
def epoch_in_seconds(value: int | float) -> bool: ...
@overload
def epoch_in_seconds(value: np.ndarray) -> np.ndarray: ...
@overload
def epoch_in_seconds(value: pd.Series) -> pd.Series: ...
def epoch_in_seconds(value: Any) -> Any:
    """Whether epoch numbers are seconds rather than milliseconds (`abs(value) < EPOCH_MS_FROM`): a bool for one
    number, elementwise booleans for a numpy array or pandas Series. The one place this guess is made."""
    return abs(value) < EPOCH_MS_FROM

_MINUTE_MS = 60_000

VALID_INTERVALS: tuple[str, ...] = (
    "1", "3", "5", "15", "30", "60", "120", "240", "360", "720", "D", "W", "M",
)

INTERVAL_MS: dict[str, int] = {
    **{code: int(code) * _MINUTE_MS for code in VALID_INTERVALS[:10]},
    "D": 1_440 * _MINUTE_MS,
    "W": 7 * 1_440 * _MINUTE_MS,
}
"""Candle length of every interval with a fixed length ("M", a calendar month, has none)."""
_LENGTH_MS = INTERVAL_MS

GRID_OFFSET_MS: dict[str, int] = {"W": 4 * 1_440 * _MINUTE_MS}
"""Candles open on multiples of their length since the epoch, except weekly ones, which open on Mondays 00:00 UTC:
1970-01-01 was a Thursday, so the weekly grid is shifted by four days."""

# Friendly spellings. Case matters only for "1m" (minute) vs "1M" (month), as in most trading tools.
_ALIASES: dict[str, str] = {
    **{f"{code}m": code for code in VALID_INTERVALS[:10]},
    "1h": "60", "2h": "120", "4h": "240", "6h": "360", "12h": "720",
    "1d": "D", "d": "D", "1440": "D", "1w": "W", "w": "W", "1M": "M",
}


def parse_interval(interval: str | int) -> str:
    """Normalise an interval to Bybit's code.

    Args:
        interval: a Bybit code ("60", "D"), a friendly spelling ("1h", "1d", "1M") or minutes as an int (60).

    Returns:
        The Bybit interval code, e.g. "60".

    Raises:
        InvalidIntervalError: the value names no Bybit interval; the message lists the valid ones.
    """
    text = str(interval).strip()
    if text in VALID_INTERVALS:
        return text
    if text in _ALIASES:
        return _ALIASES[text]
    raise InvalidIntervalError(
        f"invalid interval {interval!r}: use one of {', '.join(VALID_INTERVALS)} "
        f"(minutes, D, W, M) or 1m/1h/4h/1d/1w/1M"
    )


def interval_ms(interval: str | int) -> int:
    """Length of one candle in milliseconds.

    Args:
        interval: anything `parse_interval` accepts, except the calendar month.

    Returns:
        The bucket length in ms (e.g. 3_600_000 for "60").

    Raises:
        InvalidIntervalError: unknown interval, or "M", whose length varies by month.
    """
    code = parse_interval(interval)
    if code == "M":
        raise InvalidIntervalError(
            "interval 'M' (calendar month) has no fixed length and cannot be paged or streamed here: "
            "fetch 'D' candles and resample them to months"
        )
    return _LENGTH_MS[code]

"""Wire rules for the Bybit client: V5 envelope checks, error classification, backoff, rate limiting, parsing.

Kept apart from `client.py` so the rules "which answer is retried, which is fatal" read in one place and are
unit-tested without a socket.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import httpx

from ..errors import (
    BadRequestError,
    ExchangeBannedError,
    ExchangeError,
    InvalidSymbolError,
    RetryableExchangeError,
)
from .types import Kline, MarkKline, RiskLimitTier

Sleep = Callable[[float], Awaitable[None]]

# retCodes that mean "the server is busy or restarting" in Bybit's V5 error-code table: retry with backoff.
RETRYABLE_CODES = {10000: "server timeout", 10006: "too many visits (rate limit)", 10016: "server error"}
RATE_LIMIT_CODES = {10006}
RATE_LIMIT_PAUSE_S = 1.0
"""Shortest wait after a rate-limit answer that names no reset time (the wait is jittered over 1-2x this)."""
_SYMBOL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")  # dated futures look like "BTC-27DEC24"


def parse_envelope(response: httpx.Response, *, symbol: str | None = None,
                   category: str | None = None) -> dict[str, Any]:
    """Check one V5 answer and return its `result` object.

    Args:
        response: the HTTP answer, body already read.
        symbol, category: what the request was about, to name them in errors.

    Returns:
        The envelope's `result` (an empty dict when the exchange sent something else there).

    Raises:
        ExchangeBannedError: HTTP 403 (IP limit breached or region blocked).
        RetryableExchangeError: HTTP 429 / 5xx, retCode 10000 / 10006 / 10016, or a body that is not a
            complete JSON envelope (truncated, HTML error page).
        InvalidSymbolError: retCode 10001 about the symbol.
        BadRequestError: any other retCode 10001.
        ExchangeError: other HTTP statuses and retCodes (bugs or account problems: no retry).
    """
    status = response.status_code
    try:
        path = response.request.url.path
    except RuntimeError:  # a Response built by hand, without a request
        path = "?"
    if status == 403:
        raise ExchangeBannedError(
            f"HTTP 403 from Bybit on {path} ({response.text[:60].strip()!r}): the IP request limit was breached "
            "or the region is blocked; stop all sessions and wait at least 10 minutes before retrying",
            http_status=403,
        )
    if status == 429 or status >= 500:
        raise RetryableExchangeError(f"HTTP {status} from Bybit on {path}: transient, retry later",
                                     http_status=status)
    if status != 200:
        raise ExchangeError(f"HTTP {status} from Bybit on {path}: wrong route or parameters; check the request",
                            http_status=status)
    try:
        envelope = response.json()
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        raise RetryableExchangeError(f"truncated or invalid JSON from Bybit on {path}: retry",
                                     http_status=status) from exc
    if not isinstance(envelope, dict) or not isinstance(envelope.get("retCode"), int):
        raise RetryableExchangeError(f"answer without a V5 envelope on {path}: retry", http_status=status)
    code: int = envelope["retCode"]
    message = str(envelope.get("retMsg", ""))
    if code == 0:
        result = envelope.get("result")
        return result if isinstance(result, dict) else {}
    if code in RETRYABLE_CODES:
        raise RetryableExchangeError(
            f"Bybit retCode {code} ({message or RETRYABLE_CODES[code]}) on {path}: retry after a pause",
            code=code, http_status=status, retry_at_ms=_reset_header(response) if code == 10006 else None,
        )
    if code == 10001:
        if symbol is not None and "symbol" in message.lower():
            raise InvalidSymbolError(symbol, category or "linear", code=code)
        raise BadRequestError(f"Bybit rejected the parameters of {path} (10001 {message!r}): fix the request",
                              code=code, http_status=status)
    raise ExchangeError(f"Bybit retCode {code} ({message!r}) on {path}: not retryable, see Bybit's error table",
                        code=code, http_status=status)


def _reset_header(response: httpx.Response) -> int | None:
    # Public endpoints may answer 10006 without any X-Bapi-* header (pybit#340): the header is optional.
    raw = response.headers.get("X-Bapi-Limit-Reset-Timestamp")
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def backoff_delay(attempt: int, error: RetryableExchangeError, *, base: float, cap: float,
                  rng: random.Random, now_ms: int | None = None) -> float:
    """Seconds to wait before retry number `attempt + 1`.

    Full jitter: uniform(0, min(cap, base * 2**attempt)). Rate-limit answers (10006, HTTP 429) wait at least
    half that step, so a throttled client never tight-loops; 10006 with `X-Bapi-Limit-Reset-Timestamp` waits
    until the reset time, and one without it (public endpoints send none, pybit#340) at least 1-2 s (jittered),
    the back-off Bybit advises when no reset time is given. Every wait is bounded by `cap`.

    Args:
        attempt: 0 for the first retry.
        error: the failure being retried.
        base, cap: backoff base and upper bound, seconds.
        rng: the jitter source (seed it for reproducible tests).
        now_ms: wall-clock epoch ms to compare the reset header against (default: now).

    Returns:
        A delay in [0, cap] seconds.
    """
    step = min(cap, base * (2.0 ** attempt))
    delay = rng.uniform(0.0, step)
    if error.code in RATE_LIMIT_CODES or error.http_status == 429:
        delay = max(delay, step / 2)
        if error.retry_at_ms is None:
            delay = max(delay, rng.uniform(RATE_LIMIT_PAUSE_S, 2 * RATE_LIMIT_PAUSE_S))
    if error.retry_at_ms is not None:
        now = int(time.time() * 1000) if now_ms is None else now_ms
        delay = max(delay, (error.retry_at_ms - now) / 1000.0)
    return min(cap, max(0.0, delay))


class RateLimiter:
    """Spaces request starts at least `1 / rate` seconds apart.

    Stricter than a token bucket with a burst: any window of one second holds at most `rate` request starts,
    including across concurrent callers, which queue in FIFO order on a lock. The spacing is measured from
    the moment each caller actually went ahead, so a caller woken late never lets the next one in early.
    Not shared between event loops or threads.

    Args:
        rate: requests per second; None or <= 0 disables limiting.
        clock, sleep: monotonic seconds and the matching sleep (injectable together, for virtual time in tests).
    """

    def __init__(self, rate: float | None, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Sleep = asyncio.sleep) -> None:
        self.interval = 1.0 / rate if rate and rate > 0 else 0.0
        self._clock = clock
        self._sleep = sleep
        self._last = float("-inf")
        self._lock: asyncio.Lock | None = None

    async def acquire(self) -> None:
        """Wait for this caller's turn."""
        if self.interval == 0.0:
            return
        if self._lock is None:  # created lazily, inside the loop that uses it
            self._lock = asyncio.Lock()
        async with self._lock:
            while (wait := self._last + self.interval - self._clock()) > 0:
                await self._sleep(wait)
            self._last = self._clock()


def check_market(symbol: str, category: str, allowed: tuple[str, ...]) -> tuple[str, str]:
    """Validate a category and symbol before any request; returns them normalised (symbol upper-cased)."""
    if category not in allowed:
        raise BadRequestError(f"invalid category {category!r}: use one of {', '.join(allowed)}")
    if not isinstance(symbol, str) or not _SYMBOL.fullmatch(symbol.strip()):
        raise InvalidSymbolError(str(symbol), category, code=None)
    # Bybit accepts upper case only ("btcusdt" is "Not supported symbols").
    return symbol.strip().upper(), category


def parse_kline_row(row: list[str], category: str) -> Kline:
    """One REST kline row (7 strings) as a `Kline`."""
    try:
        start, open_, high, low, close, volume, turnover = row[:7]
        if category == "inverse":
            # Inverse contracts report volume in USD contracts and turnover in the base coin; `Kline`
            # means base quantity / quote value, so swap them (ccxt does the same).
            volume, turnover = turnover, volume
        return Kline(int(start), float(open_), float(high), float(low), float(close), float(volume),
                     float(turnover))
    except (TypeError, ValueError) as exc:
        raise ExchangeError(f"malformed kline row {row!r} from Bybit: expected 7 numeric strings") from exc


def parse_mark_row(row: list[str], category: str) -> MarkKline:
    """One REST mark-price kline row (5 strings: start, open, high, low, close) as a `MarkKline`."""
    try:
        start, open_, high, low, close = row[:5]
        return MarkKline(int(start), float(open_), float(high), float(low), float(close))
    except (TypeError, ValueError) as exc:
        raise ExchangeError(f"malformed mark-price kline row {row!r} from Bybit: expected 5 numeric strings") from exc


def parse_risk_tier(item: dict[str, Any]) -> RiskLimitTier:
    """One /v5/market/risk-limit item as a `RiskLimitTier` (margins come as strings or numbers: both read)."""
    try:
        return RiskLimitTier(int(item["id"]), float(item["riskLimitValue"]), float(item["maintenanceMargin"]),
                             float(item["initialMargin"]), float(item["maxLeverage"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ExchangeError(f"malformed risk-limit item {item!r} from Bybit: expected id, riskLimitValue, "
                            "maintenanceMargin, initialMargin and maxLeverage") from exc


class Timed(Protocol):
    """A row with an open time (what the kline pager sorts and deduplicates on)."""

    @property
    def start_time(self) -> int: ...


RowT = TypeVar("RowT", bound=Timed)


@dataclass(frozen=True)
class KlineRoute(Generic[RowT]):
    """One kline-shaped endpoint: same parameters, paging and newest-first lists, its own row shape.

    Attributes:
        path: the REST path.
        categories: the categories it serves.
        parse: one row of its `list` (and the category) to a typed row.
    """

    path: str
    categories: tuple[str, ...]
    parse: Callable[[list[str], str], RowT]


KLINES = KlineRoute("/v5/market/kline", ("spot", "linear", "inverse"), parse_kline_row)
MARK_KLINES = KlineRoute("/v5/market/mark-price-kline", ("linear", "inverse"), parse_mark_row)

"""Async Bybit V5 REST client for public market data: klines, server time, instrument info, and (from
`derivatives.py`) mark-price klines, funding history and risk-limit tiers.

Every request passes a client-side rate limiter, and transient failures (10006 / 429 rate limits, 10000, 10016,
5xx, timeouts, dropped connections, truncated bodies) are retried with bounded, jittered exponential backoff;
HTTP 403 and parameter errors fail at once (rules in `_http.py`). Klines are paged in explicit windows of at
most 1000 buckets, so the result never depends on which candles Bybit picks for a larger range, and the
still-open last candle is always dropped (closed means `start_time + interval <= server time`).
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

from ..errors import (
    BadRequestError,
    ExchangeUnavailableError,
    InvalidSymbolError,
    RetryableExchangeError,
)
from ._http import KLINES, KlineRoute, RateLimiter, RowT, Sleep, backoff_delay, check_market, parse_envelope
from .derivatives import DerivativesMixin
from .intervals import interval_ms, parse_interval
from .types import FundingRate, Kline

__all__ = [
    "MAINNET_BASE_URL",
    "TESTNET_BASE_URL",
    "BybitClient",
    "FundingRate",
    "InstrumentInfo",
]

MAINNET_BASE_URL = "https://api.bybit.com"
TESTNET_BASE_URL = "https://api-testnet.bybit.com"
MAINNET_WS_URL = "wss://stream.bybit.com/v5/public"
TESTNET_WS_URL = "wss://stream-testnet.bybit.com/v5/public"
KLINE_CATEGORIES = KLINES.categories
KLINE_PAGE = 1000  # Bybit's maximum `limit` for /v5/market/kline (and the mark-price klines)


@dataclass(frozen=True)
class InstrumentInfo:
    """The parts of /v5/market/instruments-info a data or backtest layer uses.

    Attributes:
        symbol, category: as listed by the exchange.
        status: "Trading", "PreLaunch", "Settling", ...
        launch_time: listing time, epoch ms UTC; None where Bybit does not publish it (spot).
        contract_type: e.g. "LinearPerpetual"; None for spot.
        base_coin, quote_coin: e.g. "BTC", "USDT".
        tick_size: price increment; None if absent.
        qty_step: order size increment (spot: basePrecision); None if absent.
        min_order_qty: smallest order size; None if absent.
        funding_interval_min: minutes between funding settlements (e.g. 480); None for spot.
    """

    symbol: str
    category: str
    status: str
    launch_time: int | None
    contract_type: str | None = None
    base_coin: str | None = None
    quote_coin: str | None = None
    tick_size: float | None = None
    qty_step: float | None = None
    min_order_qty: float | None = None
    funding_interval_min: int | None = None


def rest_root(base_url: str | None = None, testnet: bool = False) -> str:
    """The REST root a client talks to: `base_url`, else testnet's, else `$BYBIT_BASE_URL`, else mainnet's."""
    default_url = TESTNET_BASE_URL if testnet else os.environ.get("BYBIT_BASE_URL") or MAINNET_BASE_URL
    return (base_url or default_url).rstrip("/")


class BybitClient(DerivativesMixin):
    """Async client for Bybit's public V5 market endpoints, on `httpx.AsyncClient`.

    Args:
        base_url: REST root. Default: `BYBIT_BASE_URL` from the environment, else mainnet
            (or testnet when `testnet`). An explicit value always wins.
        testnet: use https://api-testnet.bybit.com (a thin, separate market: never train on it).
        timeout: seconds per HTTP attempt.
        max_retries: retries after the first attempt for transient failures.
        backoff_base, backoff_max: exponential backoff base and cap, seconds (full jitter).
        rate_limit: most requests started per second, across concurrent calls; None disables.
        transport: an httpx transport (e.g. `httpx.MockTransport` in unit tests).
        ws_url: public WebSocket root for `BybitStream`, e.g. "wss://stream.bybit.com/v5/public".
            Default: `BYBIT_WS_URL` from the environment, else mainnet / testnet.
        sleep: awaitable used for backoff pauses (inject a fast one in tests); rate limiting always
            uses real time.
        seed: seeds the backoff jitter for reproducible runs.
    """

    def __init__(self, base_url: str | None = None, *, testnet: bool = False, timeout: float = 10.0,
                 max_retries: int = 8, backoff_base: float = 0.2, backoff_max: float = 5.0,
                 rate_limit: float | None = 10.0, transport: httpx.AsyncBaseTransport | None = None,
                 ws_url: str | None = None, sleep: Sleep | None = None, seed: int | None = None) -> None:
        if max_retries < 0 or backoff_base < 0 or backoff_max < 0 or timeout <= 0:
            raise BadRequestError(
                f"invalid client settings (timeout={timeout}, max_retries={max_retries}, "
                f"backoff_base={backoff_base}, backoff_max={backoff_max}): use timeout > 0 and values >= 0"
            )
        self.base_url = rest_root(base_url, testnet)
        default_ws = TESTNET_WS_URL if testnet else os.environ.get("BYBIT_WS_URL") or MAINNET_WS_URL
        self.ws_url = ws_url or default_ws
        # a URL without its scheme fails every request alike: named at once, not after all the retries
        if not self.base_url.startswith(("http://", "https://")):
            raise BadRequestError(f"base URL {self.base_url!r} is not an http(s) URL: give e.g. https://api.bybit.com "
                                  "(--base-url / BYBIT_BASE_URL)")
        if not self.ws_url.startswith(("ws://", "wss://")):
            raise BadRequestError(f"WebSocket URL {self.ws_url!r} is not a ws(s) URL: give e.g. "
                                  "wss://stream.bybit.com/v5/public (--ws-url / BYBIT_WS_URL)")
        self.testnet = testnet
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._limiter = RateLimiter(rate_limit)
        self._sleep = sleep
        self._rng = random.Random(seed)
        self._instruments: dict[tuple[str, str], InstrumentInfo] = {}
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout, transport=transport,
                                       headers={"Accept": "application/json"})

    async def __aenter__(self) -> BybitClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def get_server_time(self) -> int:
        """Exchange time, epoch ms UTC (decides which candle is still open).

        Raises:
            ExchangeError: see `BybitClient` (any subclass).
        """
        result = await self._get("/v5/market/time", {})
        if result.get("timeNano"):
            return int(result["timeNano"]) // 1_000_000
        return int(result["timeSecond"]) * 1000

    async def get_instrument_info(self, symbol: str, category: str = "linear") -> InstrumentInfo:
        """Listing details of one symbol.

        Args:
            symbol: e.g. "BTCUSDT" (upper-cased for you).
            category: "spot", "linear" or "inverse".

        Returns:
            The instrument's `InstrumentInfo`.

        Raises:
            InvalidSymbolError: the exchange does not list the symbol in that category.
            ExchangeError: other failures (see `BybitClient`).
        """
        symbol, category = check_market(symbol, category, KLINE_CATEGORIES)
        result = await self._get("/v5/market/instruments-info", {"category": category, "symbol": symbol},
                                 symbol=symbol, category=category)
        rows = [row for row in result.get("list") or [] if row.get("symbol") == symbol]
        if not rows:
            raise InvalidSymbolError(symbol, category)
        info = _parse_instrument(rows[0], category)
        self._instruments[(category, symbol)] = info
        return info

    async def get_klines(self, symbol: str, interval: str | int, limit: int | None = None,
                         start: int | None = None, end: int | None = None,
                         category: str = "linear") -> list[Kline]:
        """Closed candles, ascending, without duplicates.

        Without `start`: the latest `limit` (default 1000) closed candles that start at or before `end`
        (default, and at most: the exchange's now); fewer where the exchange has none (a listing, a gap) in that
        span. With `start`: every closed candle starting in [start, end], or only the first `limit` of them when
        `limit` is given.

        Args:
            symbol: e.g. "BTCUSDT".
            interval: a Bybit interval ("60", "D") or spelling `parse_interval` accepts; not "M".
            limit: how many candles at most (see above); must be >= 1.
            start, end: inclusive bounds on the candles' open time, epoch ms UTC.
            category: "spot", "linear" or "inverse".

        Returns:
            list of `Kline`, strictly ascending by start_time, none of them still open.

        Raises:
            InvalidIntervalError: before any request, for an unknown interval or "M".
            BadRequestError: limit < 1, start > end, unknown category.
            InvalidSymbolError: the symbol is not listed.
            ExchangeBannedError, ExchangeUnavailableError, ExchangeError: see `BybitClient`.
        """
        return await self._collect(KLINES, symbol, interval, limit, start, end, category)

    async def _collect(self, route: KlineRoute[RowT], symbol: str, interval: str | int, limit: int | None,
                       start: int | None, end: int | None, category: str) -> list[RowT]:
        """`get_klines` for any kline-shaped route (see there)."""
        step = interval_ms(interval)
        check_market(symbol, category, route.categories)
        if limit is not None and limit < 1:
            raise BadRequestError(f"invalid limit {limit}: use limit >= 1 (or None for the whole range)")
        server_now = None
        if start is None:
            count = limit or KLINE_PAGE
            # the latest candles end at the exchange's now: an `end` past it (a clock ahead of the server, or a
            # time in the future) would size the window into candles that do not exist yet
            server_now = await self.get_server_time()
            end = server_now if end is None else min(end, server_now)
            # One spare bucket covers both the still-open candle and an `end` that is not on a boundary.
            start, limit = max(0, end - (count + 1) * step), None
            tail = count
        else:
            tail = None
        candles: list[RowT] = []
        pages = self._pages(route, symbol, interval, start, end, category, server_now=server_now)
        try:
            async for page in pages:
                candles.extend(page)
                if limit is not None and len(candles) >= limit:
                    return candles[:limit]
        finally:
            await pages.aclose()
        return candles[-tail:] if tail is not None else candles

    async def iter_kline_pages(self, symbol: str, interval: str | int, start: int, end: int | None = None,
                               category: str = "linear") -> AsyncGenerator[list[Kline], None]:
        """Closed candles in [start, end], one page (<= 1000 candles) at a time, as each page arrives.

        Windows are explicit: [w, w + 999 * interval] clipped to `end`, from `max(start, launch time)` up,
        so no window ever holds more than Bybit's page limit. Empty windows (gaps, maintenance) are skipped.

        Args:
            symbol, interval, category: as for `get_klines`.
            start: first candle open time wanted, epoch ms UTC (inclusive).
            end: last candle open time wanted (inclusive); None = up to the last closed candle.

        Yields:
            Non-empty lists of `Kline`, each ascending; across pages strictly ascending with no duplicates.

        Raises:
            ExchangeError: as `get_klines` raises it (and its subclasses), for the same reasons.
        """
        pages = self._pages(KLINES, symbol, interval, start, end, category)
        try:
            async for page in pages:
                yield page
        finally:
            await pages.aclose()  # close the HTTP-bound generator now, not at garbage collection

    async def _pages(self, route: KlineRoute[RowT], symbol: str, interval: str | int, start: int, end: int | None,
                     category: str, *, server_now: int | None = None) -> AsyncGenerator[list[RowT], None]:
        """`iter_kline_pages` for any kline-shaped route, reusing a server time the caller has just fetched."""
        code = parse_interval(interval)
        step = interval_ms(code)
        symbol, category = check_market(symbol, category, route.categories)
        if end is not None and start > end:
            raise BadRequestError(f"start {start} is after end {end}: pass start <= end (epoch ms)")
        if server_now is None:
            server_now = await self.get_server_time()
        launch = (await self._instrument(symbol, category)).launch_time
        window = max(start, launch or 0)
        last_bound = server_now if end is None else min(end, server_now)
        newest = -1
        while window <= last_bound:
            window_end = min(window + (KLINE_PAGE - 1) * step, last_bound)
            params = {"category": category, "symbol": symbol, "interval": code, "start": window,
                      "end": window_end, "limit": KLINE_PAGE}
            result = await self._get(route.path, params, symbol=symbol, category=category)
            rows = sorted((route.parse(row, category) for row in result.get("list") or []), key=_start_time)
            # The window may return the candle containing `window` (opened before it): keep it unless it
            # precedes `start`; drop the open candle and anything already yielded.
            page = [k for k in rows if start <= k.start_time <= last_bound and k.start_time + step <= server_now
                    and k.start_time > newest]
            page = [k for i, k in enumerate(page) if i == 0 or k.start_time != page[i - 1].start_time]
            if page:
                newest = page[-1].start_time
                yield page
            window = window_end + step

    async def _instrument(self, symbol: str, category: str) -> InstrumentInfo:
        """The instrument's listing details, asked once per client."""
        info = self._instruments.get((category, symbol))
        return info if info is not None else await self.get_instrument_info(symbol, category)

    async def _get(self, path: str, params: dict[str, Any], *, symbol: str | None = None,
                   category: str | None = None) -> dict[str, Any]:
        """GET with rate limiting and retries; returns the envelope's `result`."""
        error: RetryableExchangeError | None = None
        for attempt in range(self.max_retries + 1):
            if error is not None:
                delay = backoff_delay(attempt - 1, error, base=self.backoff_base, cap=self.backoff_max,
                                      rng=self._rng)
                await (self._sleep or asyncio.sleep)(delay)
            await self._limiter.acquire()
            try:
                response = await self._http.get(path, params=params)
                return parse_envelope(response, symbol=symbol, category=category)
            except RetryableExchangeError as exc:
                error = exc
            except httpx.TimeoutException as exc:
                error = RetryableExchangeError(f"timeout on {path}: {type(exc).__name__}")
                error.__cause__ = exc
            except httpx.TransportError as exc:  # refused, reset, incomplete body, protocol garbage
                error = RetryableExchangeError(f"network error on {path}: {type(exc).__name__}: {exc}")
                error.__cause__ = exc
        assert error is not None
        raise ExchangeUnavailableError(
            f"{path} failed {self.max_retries + 1} times (last: {error}): Bybit at {self.base_url} is down, "
            "unreachable or throttling; try again later or raise max_retries",
            code=error.code, http_status=error.http_status,
        ) from error


def _parse_instrument(row: dict[str, Any], category: str) -> InstrumentInfo:
    def number(section: str, *keys: str) -> float | None:
        values = row.get(section) or {}
        for key in keys:
            if values.get(key) not in (None, ""):
                return float(values[key])
        return None

    launch = row.get("launchTime")
    funding = row.get("fundingInterval")
    return InstrumentInfo(
        symbol=str(row["symbol"]), category=category, status=str(row.get("status", "")),
        launch_time=int(launch) if launch not in (None, "", "0") else None,
        contract_type=row.get("contractType") or None, base_coin=row.get("baseCoin") or None,
        quote_coin=row.get("quoteCoin") or None, tick_size=number("priceFilter", "tickSize"),
        qty_step=number("lotSizeFilter", "qtyStep", "basePrecision"),
        min_order_qty=number("lotSizeFilter", "minOrderQty"),
        funding_interval_min=int(funding) if funding not in (None, "") else None,
    )


def _start_time(row: RowT) -> int:
    return row.start_time

"""Live closed candles from Bybit's public V5 WebSocket, gap-free across reconnects.

Subscribes to `kline.{interval}.{symbol}`, keeps the connection alive with `{"op": "ping"}`, yields only
`confirm: true` candles, and after any drop reconnects with backoff, re-subscribes and back-fills the missed
candles through REST, so the consumer sees every closed candle exactly once, strictly ascending. Candles the
exchange has none of (maintenance, a halt) are reported through `on_gap`, never skipped silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, WebSocketException

from ..errors import (
    BadRequestError,
    ExchangeUnavailableError,
    InvalidSymbolError,
    RetryableExchangeError,
    first_line,
)
from .client import BybitClient
from .intervals import GRID_OFFSET_MS, interval_ms, parse_interval
from .types import Kline

__all__ = ["BybitStream", "GapCallback", "public_ws_url"]

log = logging.getLogger(__name__)


def public_ws_url(root: str, category: str) -> str:
    """The public stream URL of a category: a root ending in /v5/public gets "/{category}" appended,
    any other URL is used as it is.

    Args:
        root: e.g. "wss://stream.bybit.com/v5/public" or a full "ws://127.0.0.1:5000/v5/public/linear".
        category: "spot", "linear" or "inverse".
    """
    root = root.rstrip("/")
    return f"{root}/{category}" if urlsplit(root).path.endswith("/v5/public") else root


GapCallback = Callable[[int, int], None]
"""Called as `on_gap(first, last)`: open times (epoch ms, inclusive) of candles the exchange has none of."""

FIRST_CONNECT_ATTEMPTS = 5
"""Attempts at the first connection before the stream gives up (after one, drops are retried for ever)."""


class BybitStream:
    """Async iterator of closed candles of one symbol and interval.

    Args:
        symbol: e.g. "BTCUSDT" (upper-cased for you).
        interval: Bybit interval ("1" ... "720", "D", "W") or a spelling `parse_interval` accepts; not "M".
        category: "spot", "linear" or "inverse".
        ws_url: WebSocket root or full URL (see `public_ws_url`); default: the client's `ws_url`.
        client: REST client for back-fills; default: a `BybitClient()` owned (and closed) by the stream.
        ping_interval: seconds between `{"op": "ping"}` messages; silence for 2.5x this means a dead link.
        reconnect_backoff: (base, cap) seconds of the full-jitter reconnect backoff.
        since: first candle open time wanted (epoch ms); when given, the first connection back-fills from
            there. Default: only candles that close after connecting.
        on_gap: called with the first and last open time of candles the exchange has none of, between two
            candles handed out (or between `since` and the first): the REST back-fill found none there. The
            stream goes on after them. Default: a logged warning.

    Raises (while iterating):
        InvalidSymbolError: the exchange refused the subscription.
        ExchangeBannedError, BadRequestError: from a REST back-fill; other failures trigger a reconnect.
    """

    def __init__(self, symbol: str, interval: str | int, category: str = "linear", *, ws_url: str | None = None,
                 client: BybitClient | None = None, ping_interval: float = 20.0,
                 reconnect_backoff: tuple[float, float] = (1.0, 30.0), since: int | None = None,
                 on_gap: GapCallback | None = None) -> None:
        self.symbol = symbol.strip().upper()
        self.interval = parse_interval(interval)
        self.step = interval_ms(self.interval)
        self.category = category
        self._owns_client = client is None
        self.client = client or BybitClient()
        self.url = public_ws_url(ws_url or self.client.ws_url, category)
        self.topic = f"kline.{self.interval}.{self.symbol}"
        self.ping_interval = ping_interval
        self.reconnect_backoff = reconnect_backoff
        self.reconnects = 0
        self._last = since - self.step if since is not None else None  # newest start_time handed out
        self.on_gap = on_gap
        self._rng = random.Random()

    def __aiter__(self) -> AsyncIterator[Kline]:
        return self._candles()

    async def __aenter__(self) -> BybitStream:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the REST client if the stream created it."""
        if self._owns_client:
            await self.client.aclose()

    async def _candles(self) -> AsyncGenerator[Kline, None]:
        failures = 0
        connected = False  # a link that never came up is a wrong URL or host, not a drop: named, not retried forever
        while True:
            try:
                if self._last is None:
                    # the first connection without `since`: the candle open before connecting is the first
                    # wanted. Recording that before any candle arrives makes a drop before it closes back-filled
                    # like any other (otherwise, with nothing handed out yet, there would be nothing to back-fill
                    # from, and candles that closed during the outage would be lost)
                    now = await self.client.get_server_time()
                    offset = GRID_OFFSET_MS.get(self.interval, 0)
                    self._last = (now - offset) // self.step * self.step + offset - self.step
                async with connect(self.url, ping_interval=None, open_timeout=10.0, close_timeout=1.0,
                                   compression=None) as ws:
                    await self._subscribe(ws)
                    failures, connected = 0, True
                    async for kline in self._session(ws):
                        yield kline
            except (OSError, TimeoutError, WebSocketException, InvalidHandshake, json.JSONDecodeError,
                    RetryableExchangeError, ExchangeUnavailableError) as exc:
                # Dropped link, refused handshake or a failed back-fill: reconnect; nothing was lost because
                # the back-fill after reconnecting starts from the last candle handed out.
                if not connected and failures + 1 >= FIRST_CONNECT_ATTEMPTS:
                    raise ExchangeUnavailableError(
                        f"the WebSocket at {self.url} could not be reached in {failures + 1} attempts (last: "
                        f"{first_line(exc)}); check --ws-url / BYBIT_WS_URL and the network") from exc
                base, cap = self.reconnect_backoff
                delay = self._rng.uniform(0.0, min(cap, base * 2.0 ** failures))
                failures += 1
                self.reconnects += 1
                log.warning("stream %s: %s; reconnecting in %.2f s", self.topic, exc, delay)
                await asyncio.sleep(delay)

    async def _subscribe(self, ws: ClientConnection) -> None:
        await ws.send(json.dumps({"req_id": "sub", "op": "subscribe", "args": [self.topic]}))
        while True:
            async with asyncio.timeout(10.0):
                message = json.loads(await ws.recv())
            if message.get("op") != "subscribe":
                continue  # a push racing the ack; the back-fill covers it
            if message.get("success"):
                return
            reason = str(message.get("ret_msg", ""))
            if "symbol" in reason.lower():
                raise InvalidSymbolError(self.symbol, self.category, code=None)
            raise BadRequestError(f"subscription to {self.topic} refused ({reason!r}): check symbol and interval")

    async def _session(self, ws: ClientConnection) -> AsyncGenerator[Kline, None]:
        """Back-fill, then follow the live topic until the connection fails."""
        pinger = asyncio.create_task(self._ping(ws))
        try:
            async for kline in self._backfill(None):
                yield kline
            while True:
                # Bybit answers each ping, so silence this long means a half-open connection. (Not
                # asyncio.wait_for: on Python 3.11 cancelling it around websockets' recv() can hang.)
                async with asyncio.timeout(self.ping_interval * 2.5):
                    raw = await ws.recv()
                for kline in self._confirmed(json.loads(raw)):
                    if self._last is not None and kline.start_time > self._last + self.step:
                        async for missed in self._backfill(kline.start_time - 1):
                            yield missed
                    if self._take(kline):
                        yield kline
        finally:
            pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pinger

    async def _backfill(self, end: int | None) -> AsyncGenerator[Kline, None]:
        assert self._last is not None
        pages = self.client.iter_kline_pages(self.symbol, self.interval, self._last + self.step, end,
                                             self.category)
        try:
            async for page in pages:
                for kline in page:
                    if self._take(kline):
                        yield kline
        finally:
            await pages.aclose()

    def _take(self, kline: Kline) -> bool:
        """Whether `kline` is new (then it is the newest handed out). Reaching it past missing candles means
        the exchange has none of those: REST pages hold every candle it has, and a live candle past the next
        one is handed out only after a back-fill up to it."""
        if self._last is not None and kline.start_time <= self._last:
            return False
        if self._last is not None and kline.start_time > self._last + self.step:
            first, last = self._last + self.step, kline.start_time - self.step
            if self.on_gap is not None:
                self.on_gap(first, last)
            else:
                log.warning("stream %s: the exchange has no candles opening from %d to %d (epoch ms)", self.topic,
                            first, last)
        self._last = kline.start_time
        return True

    def _confirmed(self, message: dict[str, Any]) -> list[Kline]:
        if message.get("topic") != self.topic:
            return []  # acks, pongs, other topics
        closed = []
        for item in message.get("data") or []:
            if item.get("confirm") is not True:
                continue
            volume, turnover = float(item["volume"]), float(item["turnover"])
            if self.category == "inverse":  # USD contracts / coin, swapped as in REST
                volume, turnover = turnover, volume
            closed.append(Kline(int(item["start"]), float(item["open"]), float(item["high"]),
                                float(item["low"]), float(item["close"]), volume, turnover))
        return sorted(closed)

    async def _ping(self, ws: ClientConnection) -> None:
        while True:
            await asyncio.sleep(self.ping_interval)
            await ws.send(json.dumps({"req_id": "ping", "op": "ping"}))

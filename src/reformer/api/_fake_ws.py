"""The fake exchange's public WebSocket: `kline.{interval}.{symbol}` topics on /v5/public/{category}.

Acks subscribe, answers ping with pong, pushes the open candle right after a subscription, and on each clock
advance pushes, per subscribed topic and in time order, an unconfirmed update then a `confirm: true` close
for every candle that closed, followed by an unconfirmed update of the newly open candle.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ._fake_market import KLINE_CATEGORIES, Market, fmt, partial
from .types import Kline


class WsHub:
    """Connections, their subscriptions, and the pushes of the fake's public WebSocket."""

    def __init__(self, market: Market) -> None:
        self.market = market
        self.accepting = True
        self.pings = 0
        self.subscriptions: dict[ServerConnection, set[str]] = {}
        self.changed = asyncio.Condition()
        self._server: Server | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the bound port."""
        self._server = await serve(self._handle, host, port, process_request=self._check_request,
                                   ping_interval=None, compression=None)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def drop_all(self) -> int:
        """Cut every connection abruptly (no close frame, like a network failure); returns how many."""
        connections = list(self.subscriptions)
        for connection in connections:
            connection.transport.abort()
        return len(connections)

    async def wait_for(self, topic: str, count: int = 1) -> None:
        """Block until at least `count` connections are subscribed to `topic`."""
        async with self.changed:
            await self.changed.wait_for(lambda: sum(topic in t for t in self.subscriptions.values()) >= count)

    async def wait_for_pings(self, count: int) -> None:
        """Block until `count` pings have been answered in total."""
        async with self.changed:
            await self.changed.wait_for(lambda: self.pings >= count)

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if not self.accepting:
            return connection.respond(503, "fake exchange refuses WebSocket connections for now\n")
        if request.path.rstrip("/").rsplit("/", 1)[-1] not in KLINE_CATEGORIES or \
                not request.path.startswith("/v5/public/"):
            return connection.respond(404, "use /v5/public/{spot,linear,inverse}\n")
        return None

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def _handle(self, connection: ServerConnection) -> None:
        assert connection.request is not None
        category = connection.request.path.rstrip("/").rsplit("/", 1)[-1]
        conn_id = str(uuid.uuid4())
        self.subscriptions[connection] = set()
        try:
            async for raw in connection:
                try:
                    message = json.loads(raw)
                    op = message.get("op")
                except (ValueError, AttributeError):
                    await connection.send(json.dumps({"success": False, "ret_msg": "invalid json"}))
                    continue
                reply: dict[str, Any] = {"success": True, "ret_msg": "", "conn_id": conn_id,
                                         "req_id": message.get("req_id", ""), "op": op}
                if op == "ping":
                    await connection.send(json.dumps({**reply, "ret_msg": "pong"}))
                    self.pings += 1
                    await self._notify()
                elif op in ("subscribe", "unsubscribe"):
                    topics = [str(t) for t in message.get("args") or []]
                    bad = [t for t in topics if self._series_key(category, t) is None]
                    if bad:
                        await connection.send(json.dumps({**reply, "success": False,
                                                          "ret_msg": f"Invalid symbol :[{','.join(bad)}]"}))
                        continue
                    if op == "subscribe":
                        self.subscriptions[connection].update(topics)
                    else:
                        self.subscriptions[connection].difference_update(topics)
                    await connection.send(json.dumps(reply))
                    await self._notify()
                    if op == "subscribe":
                        for topic in topics:  # Bybit pushes the current state shortly after subscribing
                            await self._push_open(connection, category, topic)
                else:
                    await connection.send(json.dumps({**reply, "success": False, "ret_msg": f"unknown op {op}"}))
        except ConnectionClosed:
            pass
        finally:
            self.subscriptions.pop(connection, None)
            await self._notify()

    def _series_key(self, category: str, topic: str) -> tuple[str, str, str] | None:
        parts = topic.split(".")
        if len(parts) != 3 or parts[0] != "kline":
            return None
        key = (category, parts[2], parts[1])
        return key if key in self.market.series else None

    async def publish(self, before: int, after: int) -> None:
        """Push what happened between clock values `before` and `after` to every subscriber."""
        for connection, topics in list(self.subscriptions.items()):
            for topic in sorted(topics):
                category = connection.request.path.rstrip("/").rsplit("/", 1)[-1] if connection.request else ""
                key = self._series_key(category, topic)
                if key is None:
                    continue
                series = self.market.series[key]
                pushes: list[tuple[Kline, bool, int]] = []
                for kline in self.market.visible(key, before - series.step + 1, after):
                    close_at = kline.start_time + series.step
                    if before < close_at <= after:  # closed during this advance
                        pushes.append((partial(kline, series.step, close_at - 2), False, close_at - 2))
                        pushes.append((kline, True, close_at - 1))
                    elif close_at > after:
                        pushes.append((kline, False, after))
                for kline, confirm, stamp in pushes:
                    if not await self._send(connection, topic, key, series.step, kline, confirm, stamp):
                        break

    async def _push_open(self, connection: ServerConnection, category: str, topic: str) -> None:
        key = self._series_key(category, topic)
        assert key is not None
        series = self.market.series[key]
        rows = self.market.visible(key, self.market.now, self.market.now)
        if rows and rows[-1].start_time + series.step > self.market.now:
            await self._send(connection, topic, key, series.step, rows[-1], False, self.market.now)

    async def _send(self, connection: ServerConnection, topic: str, key: tuple[str, str, str], step: int,
                    kline: Kline, confirm: bool, stamp: int) -> bool:
        # Inverse markets report volume in USD contracts and turnover in coin, as REST does.
        volume, turnover = (kline.turnover, kline.volume) if key[0] == "inverse" else (kline.volume, kline.turnover)
        data = {"start": kline.start_time, "end": kline.start_time + step - 1, "interval": key[2],
                "open": fmt(kline.open), "close": fmt(kline.close), "high": fmt(kline.high),
                "low": fmt(kline.low), "volume": fmt(volume), "turnover": fmt(turnover),
                "confirm": confirm, "timestamp": stamp}
        message = {"topic": topic, "type": "snapshot", "ts": stamp, "data": [data]}
        try:
            await connection.send(json.dumps(message))
            return True
        except ConnectionClosed:
            return False

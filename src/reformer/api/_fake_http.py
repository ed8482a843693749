"""The fake exchange's HTTP/1.1 server (asyncio streams, keep-alive) and its fault injection."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple
from urllib.parse import parse_qsl, urlsplit

from ._fake_market import Answer, Market

__all__ = ["RETRYABLE_FAULTS", "Fault", "FaultPlan", "HttpServer", "RequestRecord"]


class Fault(StrEnum):
    """Ways the fake can misbehave on one HTTP request."""

    RATE_LIMIT = "10006"  # HTTP 200, retCode 10006, no X-Bapi-* headers (public endpoints, pybit#340)
    RATE_LIMIT_HEADERS = "10006+headers"  # the same with X-Bapi-Limit-* headers and a reset time
    SERVER_TIMEOUT = "10000"
    SERVER_BUSY = "10016"
    TOO_MANY = "429"
    SERVER_ERROR = "500"
    UNAVAILABLE = "503"
    TRUNCATED = "truncated"  # a complete HTTP answer whose JSON body is cut in half
    RESET = "reset"  # headers promise the whole body, half is sent, then the connection closes
    DROP = "drop"  # the connection closes without any answer
    SLOW = "slow"  # the answer comes after `FaultPlan.slow_delay` seconds (beyond a short client timeout)
    BANNED = "403"  # HTTP 403 "access too frequent": not retryable
    EMPTY_LIST = "empty"  # retCode 0 with an empty list: indistinguishable from "no data", not retryable


RETRYABLE_FAULTS: tuple[Fault, ...] = tuple(f for f in Fault if f not in (Fault.BANNED, Fault.EMPTY_LIST))


@dataclass
class FaultPlan:
    """When and how the fake misbehaves.

    Faults queued with `FakeExchange.inject` come first, one per matching request; otherwise each matching
    request fails with probability `rate`, its kind drawn from `kinds`, both from a generator seeded by `seed`.

    Attributes:
        rate: probability of a fault per matching request, 0..1.
        kinds: the faults drawn from when `rate` fires.
        seed: seed of the draws (same seed, same sequence of faults).
        paths: request paths that may fail; None = every route.
        slow_delay: seconds a `SLOW` answer waits.
        reset_after_ms: how far in the future `RATE_LIMIT_HEADERS` puts X-Bapi-Limit-Reset-Timestamp.
    """

    rate: float = 0.0
    kinds: tuple[Fault, ...] = RETRYABLE_FAULTS
    seed: int = 0
    paths: tuple[str, ...] | None = None
    slow_delay: float = 2.0
    reset_after_ms: int = 50
    queue: deque[Fault] = field(default_factory=deque, repr=False)
    rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def draw(self, path: str) -> Fault | None:
        if self.paths is not None and path not in self.paths:
            return None
        if self.queue:
            return self.queue.popleft()
        if self.rate > 0 and self.rng.random() < self.rate:
            return self.rng.choice(self.kinds)
        return None


class RequestRecord(NamedTuple):
    """One HTTP request as the fake saw it.

    Attributes:
        path: URL path, e.g. "/v5/market/kline".
        params: query parameters.
        at: `time.monotonic()` when the request head had arrived (for rate checks).
        fault: the fault injected into the answer, or None.
    """

    path: str
    params: dict[str, str]
    at: float
    fault: Fault | None


_REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 429: "Too Many Requests",
            500: "Internal Server Error", 503: "Service Unavailable"}


class HttpServer:
    """A small HTTP/1.1 server (GET only, keep-alive) answering from a `Market`, with faults."""

    def __init__(self, market: Market, plan: FaultPlan) -> None:
        self.market = market
        self.plan = plan
        self.log: list[RequestRecord] = []
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._serve, host, port)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):  # Python 3.11 does not close live connections itself
                writer.transport.abort()
            await self._server.wait_closed()

    def drop_all(self) -> int:
        """Cut every open HTTP connection (keep-alive ones included); returns how many."""
        writers = list(self._writers)
        for writer in writers:
            writer.transport.abort()
        return len(writers)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                method, target, _ = head[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:] if h)}
                if int(headers.get("content-length", "0") or 0):
                    await reader.readexactly(int(headers["content-length"]))
                url = urlsplit(target)
                params = dict(parse_qsl(url.query, keep_blank_values=True))
                fault = self.plan.draw(url.path)
                self.log.append(RequestRecord(url.path, params, time.monotonic(), fault))
                if not await self._answer(writer, fault, self.market.handle(method, url.path, params)):
                    break
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, writer: asyncio.StreamWriter, fault: Fault | None, answer: Answer) -> bool:
        """Write the (possibly spoiled) answer; False when the connection must close."""
        status, headers, body = answer
        if fault is Fault.DROP:
            writer.transport.abort()
            return False
        if fault is Fault.SLOW:
            await asyncio.sleep(self.plan.slow_delay)  # the fault itself, not synchronisation
        elif fault in (Fault.RATE_LIMIT, Fault.RATE_LIMIT_HEADERS):
            status, headers, body = self.market.error("Too many visits!", 10006)
            if fault is Fault.RATE_LIMIT_HEADERS:
                reset = int(time.time() * 1000) + self.plan.reset_after_ms
                headers = {"X-Bapi-Limit": "10", "X-Bapi-Limit-Status": "0",
                           "X-Bapi-Limit-Reset-Timestamp": str(reset)}
        elif fault is Fault.SERVER_TIMEOUT:
            status, headers, body = self.market.error("Server Timeout", 10000)
        elif fault is Fault.SERVER_BUSY:
            status, headers, body = self.market.error("Internal server error.", 10016)
        elif fault in (Fault.TOO_MANY, Fault.SERVER_ERROR, Fault.UNAVAILABLE, Fault.BANNED):
            status = int(fault.value)
            text = "access too frequent" if fault is Fault.BANNED else _REASONS[status]
            headers, body = {"Content-Type": "text/plain"}, text.encode()
        elif fault is Fault.TRUNCATED:
            body = body[: len(body) // 2]
        elif fault is Fault.EMPTY_LIST and status == 200:
            envelope = json.loads(body)
            if isinstance(envelope.get("result"), dict) and "list" in envelope["result"]:
                envelope["result"]["list"] = []
            body = json.dumps(envelope).encode()
        length = len(body)
        if fault is Fault.RESET:
            body = body[: len(body) // 2]
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}", f"Content-Length: {length}",
                 "Connection: keep-alive"]
        if not any(k.lower() == "content-type" for k in headers):
            lines.append("Content-Type: application/json")
        lines += [f"{k}: {v}" for k, v in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        try:
            await writer.drain()
        except ConnectionError:
            return False
        if fault is Fault.RESET:
            writer.transport.abort()
            return False
        return True

"""A blocking facade over `BybitClient` for scripts, notebooks and the CLI."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncGenerator, Awaitable, Iterator
from types import TracebackType
from typing import Any, TypeVar

from .client import BybitClient, InstrumentInfo
from .types import FundingRate, Kline, MarkKline, RiskLimitTier

__all__ = ["SyncBybitClient"]

T = TypeVar("T")


class SyncBybitClient:
    """Blocking version of `BybitClient` with the same methods; runs a private event loop.

    Thread safety: none. Use one instance from one thread at a time, and never from inside a running event
    loop (an async program should use `BybitClient` directly); each call blocks its thread until done.
    The rate limit holds per instance only: two instances may together exceed it.

    Args:
        base_url, **kwargs: forwarded to `BybitClient` (see there).
    """

    def __init__(self, base_url: str | None = None, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._client = BybitClient(base_url, **kwargs)
        self.base_url = self._client.base_url
        self.ws_url = self._client.ws_url

    def __enter__(self) -> SyncBybitClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool and the private loop (idempotent)."""
        if not self._loop.is_closed():
            self._loop.run_until_complete(self._client.aclose())
            self._loop.close()

    def get_server_time(self) -> int:
        """See `BybitClient.get_server_time`."""
        return self._run(self._client.get_server_time())

    def get_instrument_info(self, symbol: str, category: str = "linear") -> InstrumentInfo:
        """See `BybitClient.get_instrument_info`."""
        return self._run(self._client.get_instrument_info(symbol, category))

    def get_klines(self, symbol: str, interval: str | int, limit: int | None = None, start: int | None = None,
                   end: int | None = None, category: str = "linear") -> list[Kline]:
        """See `BybitClient.get_klines`."""
        return self._run(self._client.get_klines(symbol, interval, limit, start, end, category))

    def iter_kline_pages(self, symbol: str, interval: str | int, start: int, end: int | None = None,
                         category: str = "linear") -> Iterator[list[Kline]]:
        """See `BybitClient.iter_kline_pages`; each page is returned as soon as it arrives."""
        return self._iterate(self._client.iter_kline_pages(symbol, interval, start, end, category))

    def get_mark_klines(self, symbol: str, interval: str | int, limit: int | None = None, start: int | None = None,
                        end: int | None = None, category: str = "linear") -> list[MarkKline]:
        """See `BybitClient.get_mark_klines`."""
        return self._run(self._client.get_mark_klines(symbol, interval, limit, start, end, category))

    def iter_mark_kline_pages(self, symbol: str, interval: str | int, start: int, end: int | None = None,
                              category: str = "linear") -> Iterator[list[MarkKline]]:
        """See `BybitClient.iter_mark_kline_pages`; each page is returned as soon as it arrives."""
        return self._iterate(self._client.iter_mark_kline_pages(symbol, interval, start, end, category))

    def get_funding_history(self, symbol: str, start: int | None = None, end: int | None = None,
                            category: str = "linear") -> list[FundingRate]:
        """See `BybitClient.get_funding_history`."""
        return self._run(self._client.get_funding_history(symbol, start, end, category))

    def iter_funding_pages(self, symbol: str, start: int, end: int | None = None,
                           category: str = "linear") -> Iterator[list[FundingRate]]:
        """See `BybitClient.iter_funding_pages`; each page is returned as soon as it arrives."""
        return self._iterate(self._client.iter_funding_pages(symbol, start, end, category))

    def get_risk_limits(self, symbol: str, category: str = "linear") -> list[RiskLimitTier]:
        """See `BybitClient.get_risk_limits`."""
        return self._run(self._client.get_risk_limits(symbol, category))

    def _iterate(self, pages: AsyncGenerator[T, None]) -> Iterator[T]:
        """An async generator's items, one `_run` each; closed on the private loop when abandoned."""
        try:
            while True:
                try:
                    yield self._run(pages.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            if not self._loop.is_closed():
                self._loop.run_until_complete(pages.aclose())

    def _run(self, awaitable: Awaitable[T]) -> T:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return self._loop.run_until_complete(awaitable)
        if inspect.iscoroutine(awaitable):
            awaitable.close()
        raise RuntimeError("SyncBybitClient cannot run inside an event loop: await BybitClient instead")

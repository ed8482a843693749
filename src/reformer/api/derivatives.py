"""Perpetual-contract market data on `BybitClient`: mark-price klines, funding history, risk-limit tiers.

A mixin of `BybitClient` (which supplies the transport: `_get`, the kline pager, the instrument cache), so these
calls share its rate limiter, retries and connection pool, and `client.py` keeps to the spot-and-perpetual basics.

Mark-price klines page exactly as klines do: the same pager, windows of at most 1000 buckets, the open candle
dropped. Funding history is anchored by Bybit only at `endTime` (a page holds the newest 200 settlements up to
it; which 200 a range with both startTime and endTime returns is not documented), so `startTime` is never sent.
The history walks forward in windows of 199 funding intervals (at most 200 settlements while the interval holds),
asks each window for the settlements up to its end, and where a window still fills a page (the interval was
shorter then) pages backwards inside it with `endTime = oldest - 1`. Pages arrive oldest first and each is
complete, so a caller can store them as they come and resume after the last.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

from ..errors import BadRequestError, ExchangeError, InvalidSymbolError
from ._http import MARK_KLINES, KlineRoute, RowT, check_market, parse_risk_tier
from .types import FundingRate, MarkKline, RiskLimitTier

if TYPE_CHECKING:
    from .client import InstrumentInfo

__all__ = ["FUNDING_CATEGORIES", "DerivativesMixin"]

FUNDING_CATEGORIES = ("linear", "inverse")
"""Categories with funding, mark prices and risk limits (spot has none of them)."""
FUNDING_PAGE = 200  # Bybit's maximum `limit` for /v5/market/funding/history
DEFAULT_FUNDING_MIN = 480  # Bybit's usual 8-hour interval, where the instrument does not name one
_RISK_LIMIT_PAGES = 50  # bound on cursor paging: one symbol's table is one page


class DerivativesMixin:
    """Mark-price klines, funding history and risk-limit tiers (methods of `BybitClient`)."""

    if TYPE_CHECKING:  # supplied by BybitClient
        async def get_server_time(self) -> int: ...
        async def _instrument(self, symbol: str, category: str) -> InstrumentInfo: ...
        async def _get(self, path: str, params: dict[str, Any], *, symbol: str | None = None,
                       category: str | None = None) -> dict[str, Any]: ...
        def _pages(self, route: KlineRoute[RowT], symbol: str, interval: str | int, start: int, end: int | None,
                   category: str, *, server_now: int | None = None) -> AsyncGenerator[list[RowT], None]: ...
        async def _collect(self, route: KlineRoute[RowT], symbol: str, interval: str | int, limit: int | None,
                           start: int | None, end: int | None, category: str) -> list[RowT]: ...

    async def get_mark_klines(self, symbol: str, interval: str | int, limit: int | None = None,
                              start: int | None = None, end: int | None = None,
                              category: str = "linear") -> list[MarkKline]:
        """Closed mark-price candles, ascending, without duplicates: `get_klines` for /v5/market/mark-price-kline.

        Args:
            symbol, interval, limit, start, end: as for `BybitClient.get_klines`.
            category: "linear" or "inverse" (spot has no mark price).

        Returns:
            list of `MarkKline`, strictly ascending by start_time, none of them still open.

        Raises:
            As `BybitClient.get_klines`; BadRequestError for category "spot".
        """
        return await self._collect(MARK_KLINES, symbol, interval, limit, start, end, category)

    async def iter_mark_kline_pages(self, symbol: str, interval: str | int, start: int, end: int | None = None,
                                    category: str = "linear") -> AsyncGenerator[list[MarkKline], None]:
        """Closed mark-price candles in [start, end], one page (<= 1000) at a time: `iter_kline_pages` for mark
        prices (same windows, same guarantees).

        Yields:
            Non-empty lists of `MarkKline`, ascending across pages, no duplicates.
        """
        pages = self._pages(MARK_KLINES, symbol, interval, start, end, category)
        try:
            async for page in pages:
                yield page
        finally:
            await pages.aclose()

    async def get_funding_history(self, symbol: str, start: int | None = None, end: int | None = None,
                                  category: str = "linear") -> list[FundingRate]:
        """Funding settlements in [start, end], ascending.

        Args:
            symbol: e.g. "BTCUSDT".
            start: earliest settlement time wanted, epoch ms (None: back to the first one Bybit has, paging
                backwards from `end` until a page comes back short).
            end: latest settlement time wanted, epoch ms (None: now).
            category: "linear" or "inverse" (spot has no funding).

        Returns:
            list of `FundingRate`, strictly ascending by time.

        Raises:
            BadRequestError: unknown category or start > end.
            InvalidSymbolError, ExchangeError: see `BybitClient`.
        """
        symbol, category = check_market(symbol, category, FUNDING_CATEGORIES)
        if start is None:
            return await self._funding_down(symbol, category, None, end if end is not None
                                            else await self.get_server_time())
        rates: list[FundingRate] = []
        pages = self.iter_funding_pages(symbol, start, end, category)
        try:
            async for page in pages:
                rates.extend(page)
        finally:
            await pages.aclose()
        return rates

    async def iter_funding_pages(self, symbol: str, start: int, end: int | None = None,
                                 category: str = "linear") -> AsyncGenerator[list[FundingRate], None]:
        """Funding settlements in [start, end], oldest page first (see the module's notes on windows).

        Args:
            symbol: e.g. "BTCUSDT".
            start: earliest settlement time wanted, epoch ms; raised to the listing time.
            end: latest settlement time wanted, epoch ms (None: now).
            category: "linear" or "inverse".

        Yields:
            Non-empty lists of `FundingRate`, each ascending; across pages strictly ascending, no duplicates.

        Raises:
            BadRequestError: unknown category or start > end.
            InvalidSymbolError, ExchangeError: see `BybitClient`.
        """
        symbol, category = check_market(symbol, category, FUNDING_CATEGORIES)
        if end is not None and start > end:
            raise BadRequestError(f"start {start} is after end {end}: pass start <= end (epoch ms)")
        last = await self.get_server_time()
        last = last if end is None else min(end, last)
        info = await self._instrument(symbol, category)
        every = (info.funding_interval_min or DEFAULT_FUNDING_MIN) * 60_000
        window = max(start, info.launch_time or start)
        while window <= last:
            window_end = min(window + (FUNDING_PAGE - 1) * every, last)
            page = await self._funding_down(symbol, category, window, window_end)
            if page:
                yield page
            window = window_end + 1

    async def _funding_down(self, symbol: str, category: str, low: int | None, high: int) -> list[FundingRate]:
        """Settlements in [low, high] (low None: unbounded), paging backwards with `endTime` alone; ascending."""
        rates: dict[int, float] = {}
        cursor = high
        while low is None or cursor >= low:
            params: dict[str, Any] = {"category": category, "symbol": symbol, "endTime": cursor,
                                      "limit": FUNDING_PAGE}
            result = await self._get("/v5/market/funding/history", params, symbol=symbol, category=category)
            page = [_parse_funding(row) for row in result.get("list") or []]
            rates.update((r.time_ms, r.rate) for r in page if (low is None or r.time_ms >= low) and r.time_ms <= high)
            if len(page) < FUNDING_PAGE:
                break
            oldest = min(r.time_ms for r in page)
            if oldest > cursor:
                raise ExchangeError(f"funding page for {symbol} ignored endTime={cursor}: cannot page further")
            cursor = oldest - 1
        return [FundingRate(t, rates[t]) for t in sorted(rates)]

    async def get_risk_limits(self, symbol: str, category: str = "linear") -> list[RiskLimitTier]:
        """The symbol's current risk-limit table (/v5/market/risk-limit), lowest tier first.

        Args:
            symbol: e.g. "BTCUSDT".
            category: "linear" or "inverse".

        Returns:
            list of `RiskLimitTier`, ascending by risk limit value.

        Raises:
            BadRequestError: unknown category.
            InvalidSymbolError: the exchange has no table for the symbol.
            ExchangeError: see `BybitClient`.
        """
        symbol, category = check_market(symbol, category, FUNDING_CATEGORIES)
        tiers: dict[int, RiskLimitTier] = {}
        cursor: str | None = None
        for _ in range(_RISK_LIMIT_PAGES):
            params: dict[str, Any] = {"category": category, "symbol": symbol}
            if cursor:
                params["cursor"] = cursor
            result = await self._get("/v5/market/risk-limit", params, symbol=symbol, category=category)
            for item in result.get("list") or []:
                if item.get("symbol") == symbol:
                    tier = parse_risk_tier(item)
                    tiers[tier.tier_id] = tier
            following = result.get("nextPageCursor") or None
            if following is None or following == cursor:
                break
            cursor = str(following)
        if not tiers:
            raise InvalidSymbolError(symbol, category)
        return sorted(tiers.values(), key=lambda tier: (tier.risk_limit_value, tier.tier_id))


def _parse_funding(row: dict[str, Any]) -> FundingRate:
    try:
        return FundingRate(int(row["fundingRateTimestamp"]), float(row["fundingRate"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ExchangeError(f"malformed funding item {row!r} from Bybit: expected fundingRate and "
                            "fundingRateTimestamp") from exc

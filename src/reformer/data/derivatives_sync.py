"""Incremental fetch of the perpetuals' market data into the store, asking the exchange only for what it lacks.

    mark candles   as `sync_klines`: the same range rules, the missing ranges, one transaction per page
    funding        from the last stored settlement on (and, for a `start` before the first stored one, the
                   stretch before it), page by page, oldest first, one transaction per page
    risk limits    the current table, stored as one snapshot (a revised table replaces the stored one)

Holes in the mark candles and funding settlements off Bybit's 1/4/8-hour grids are reported, never filled. As
for klines, the exchange's values are the reference: stored rows it has revised are overwritten.

Typical use::

    report = sync_derivatives_blocking("BTCUSDT", "60", start=..., end=..., funding=True, mark=True)
    print(report.funding.summary())
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..api.client import BybitClient
from ..api.intervals import interval_ms
from ..api.types import FundingRate, RiskLimitTier
from ..errors import UserInputError
from .derivatives_store import PERPETUAL_CATEGORIES, DerivativesStore
from .store import Coverage, KlineStore
from .sync import CandleSeries, ProgressCallback, SyncReport, check_range, fill_series, format_ms, opened_store

__all__ = ["DerivativesReport", "FundingReport", "RiskLimitsReport", "require_perpetual", "sync_derivatives",
           "sync_derivatives_blocking", "sync_funding", "sync_mark_klines", "sync_risk_limits"]

StoreArg = KlineStore | str | os.PathLike[str] | None


@dataclass(frozen=True)
class FundingReport:
    """What one `sync_funding` call did and what the store holds afterwards.

    Attributes:
        category, symbol: the perpetual.
        start, end: the settlement times asked for after clamping (listing, the exchange's now), epoch ms.
        rows_added: settlements new to the store.
        pages: non-empty pages received and committed.
        stored: the whole stored funding series afterwards (first, last settlement, count), None if empty.
        irregular: stretches around settlements in [start, end] that leave the 1/4/8-hour grids, as
            (settlement before, settlement after) epoch ms: a missing settlement, an odd time.
        server_time: the exchange's clock when the fetch began, epoch ms.
    """

    category: str
    symbol: str
    start: int
    end: int
    rows_added: int
    pages: int
    stored: Coverage | None
    irregular: tuple[tuple[int, int], ...]
    server_time: int

    def summary(self, max_shown: int = 3) -> str:
        """One closing line: settlements added, pages, stored range, irregular stretches."""
        text = (f"{self.symbol} {self.category} funding: +{self.rows_added} settlements in {self.pages} page(s); "
                f"asked {format_ms(self.start)} .. {format_ms(self.end)}")
        if self.stored is not None:
            text += (f"; stored {format_ms(self.stored.first_start)} .. {format_ms(self.stored.last_start)} "
                     f"({self.stored.candle_count} settlements)")
        if not self.irregular:
            return text + "; settlements on a regular grid"
        shown = ", ".join(f"{format_ms(a)} .. {format_ms(b)}" for a, b in self.irregular[:max_shown])
        more = f" and {len(self.irregular) - max_shown} more" if len(self.irregular) > max_shown else ""
        return text + f"; {len(self.irregular)} irregular stretch(es): {shown}{more}"

    def warnings(self) -> list[str]:
        """One line per irregular stretch, naming it."""
        return [f"warning: {self.symbol} {self.category} funding settlements from {format_ms(a)} to {format_ms(b)} "
                "are not on a regular 1, 4 or 8-hour grid (a missing settlement or an odd time); the store keeps "
                "them as they are" for a, b in self.irregular]


class RiskLimitsReport(NamedTuple):
    """The risk-limit table `sync_risk_limits` stored: its tiers, how many were new, how many changed or went."""

    category: str
    symbol: str
    tiers: tuple[RiskLimitTier, ...]
    added: int
    replaced: int

    def summary(self) -> str:
        """One line: the tiers and what changed in the store."""
        lowest, highest = self.tiers[0], self.tiers[-1]
        return (f"{self.symbol} {self.category} risk limits: {len(self.tiers)} tiers, {lowest.max_leverage:g}x up to "
                f"{lowest.risk_limit_value:,.10g} .. {highest.max_leverage:g}x up to {highest.risk_limit_value:,.10g} "
                f"(maintenance margin {lowest.maintenance_margin_rate:.2%} .. {highest.maintenance_margin_rate:.2%}); "
                f"+{self.added} new, {self.replaced} changed")


class DerivativesReport(NamedTuple):
    """What `sync_derivatives` did: each part, None where it was not asked for."""

    funding: FundingReport | None
    mark: SyncReport | None
    risk_limits: RiskLimitsReport


def require_perpetual(category: str) -> None:
    """Refuse a category without funding, mark prices or risk limits (spot), in one line."""
    if category not in PERPETUAL_CATEGORIES:
        raise UserInputError(f"category {category!r} has no funding, mark price or risk limits (only perpetuals "
                             f"do): use one of {', '.join(PERPETUAL_CATEGORIES)}")


async def sync_mark_klines(client: BybitClient, store: StoreArg, symbol: str, interval: str | int, *,
                           category: str = "linear", limit: int | None = None, start: int | None = None,
                           end: int | None = None, progress: ProgressCallback | None = None) -> SyncReport:
    """Fetch the closed mark-price candles of one series that the store lacks, page by page.

    Which candles, the arguments and the errors: as `sync_klines` (a `DerivativesStore` or a path for `store`);
    category "spot" is refused (UserInputError) before any request.

    Returns:
        A `SyncReport` labelled "mark"; its gaps are the mark candles the store still lacks in the range.
    """
    require_perpetual(category)
    code, _ = check_range(interval, limit, start, end)
    server_time = await client.get_server_time()
    info = await client.get_instrument_info(symbol, category)  # InvalidSymbolError before any write
    symbol = info.symbol
    with opened_store(store, DerivativesStore) as derivatives:
        derivatives.check_writable()
        series = CandleSeries(
            "mark", lambda: derivatives.mark_coverage(category, symbol, code),
            lambda first, last: derivatives.mark_missing_ranges(category, symbol, code, first, last),
            lambda page: derivatives.insert_mark_klines(category, symbol, code, page, replace=True).added,
            lambda first, last: client.iter_mark_kline_pages(symbol, code, first, last, category))
        return await fill_series(series, info, code, server_time, limit=limit, start=start, end=end,
                                 progress=progress)


async def sync_funding(client: BybitClient, store: StoreArg, symbol: str, *, category: str = "linear",
                       start: int | None = None, end: int | None = None) -> FundingReport:
    """Fetch the funding settlements the store lacks: after the last stored one, and before the first stored one
    when `start` precedes it. Holes between stored settlements are reported (`FundingReport.irregular`), not
    fetched again.

    Args:
        client: an open `BybitClient`.
        store: a `DerivativesStore`, or a database path (None: the default store), opened after the exchange has
            accepted the symbol.
        symbol: e.g. "BTCUSDT".
        category: "linear" or "inverse".
        start: earliest settlement wanted, epoch ms (None: after the last stored one, else from the listing).
        end: latest settlement wanted, epoch ms (None: now).

    Returns:
        A `FundingReport`.

    Raises:
        UserInputError: category "spot", start > end, or a store that cannot be written.
        InvalidSymbolError: the exchange does not list the symbol (before the store is opened).
        ExchangeUnavailableError, ExchangeBannedError, ExchangeError: from the client; pages committed before
            the failure stay stored.
    """
    require_perpetual(category)
    if start is not None and end is not None and start > end:
        raise UserInputError(f"start {format_ms(start)} is after end {format_ms(end)}: swap them")
    server_time = await client.get_server_time()
    info = await client.get_instrument_info(symbol, category)
    symbol = info.symbol
    with opened_store(store, DerivativesStore) as derivatives:
        derivatives.check_writable()
        last = server_time if end is None else min(end, server_time)
        stored = derivatives.funding_coverage(category, symbol)
        first = start if start is not None else stored.last_start + 1 if stored is not None else info.launch_time
        if first is not None and info.launch_time is not None:
            first = max(first, info.launch_time)
        added = pages = 0
        for low, high in _funding_ranges(first, last, stored):
            async for page in _funding_pages(client, symbol, low, high, category):
                added += derivatives.insert_funding(category, symbol, page, replace=True).added
                pages += 1
        after = derivatives.funding_coverage(category, symbol)
        asked = first if first is not None else after.first_start if after is not None else last
        irregular = derivatives.funding_irregular(category, symbol, start=asked, end=last)
        return FundingReport(category=category, symbol=symbol, start=asked, end=last, rows_added=added, pages=pages,
                             stored=after, irregular=tuple(irregular), server_time=server_time)


async def sync_risk_limits(client: BybitClient, store: StoreArg, symbol: str, *,
                           category: str = "linear") -> RiskLimitsReport:
    """Fetch the symbol's risk-limit table and store it as the current snapshot.

    Raises:
        UserInputError: category "spot", or a store that cannot be written.
        InvalidSymbolError: the exchange has no table for the symbol (before the store is opened).
        ExchangeError: from the client.
    """
    require_perpetual(category)
    info = await client.get_instrument_info(symbol, category)
    tiers = await client.get_risk_limits(info.symbol, category)
    with opened_store(store, DerivativesStore) as derivatives:
        inserted = derivatives.insert_risk_tiers(category, info.symbol, tiers, replace=True)
    return RiskLimitsReport(category, info.symbol, tuple(tiers), inserted.added, inserted.replaced)


async def sync_derivatives(client: BybitClient, store: StoreArg, symbol: str, interval: str | int, *,
                           start: int, end: int, category: str = "linear", funding: bool = True, mark: bool = True,
                           progress: ProgressCallback | None = None) -> DerivativesReport:
    """Bring a candle range's perpetual data into the store: the risk-limit table always, and on request the
    funding settled while those candles were open (from `start` up to the close of the candle opening at `end`)
    and the mark-price candles of the same interval and range.

    Args:
        client, store, symbol, category: as for `sync_funding`.
        interval: the candles' interval.
        start, end: the first and last candle open time, epoch ms (e.g. a `SyncReport`'s start and end).
        funding, mark: which series to fetch.
        progress: passed to `sync_mark_klines`.

    Raises:
        As `sync_funding` and `sync_mark_klines`.
    """
    require_perpetual(category)
    step = interval_ms(interval)
    symbol = (await client.get_instrument_info(symbol, category)).symbol  # an unknown symbol: before the store
    with opened_store(store, DerivativesStore) as derivatives:
        funding_report = mark_report = None
        if funding:
            funding_report = await sync_funding(client, derivatives, symbol, category=category, start=start,
                                                end=end + step)
        if mark:
            mark_report = await sync_mark_klines(client, derivatives, symbol, interval, category=category,
                                                 start=start, end=end, progress=progress)
        tiers = await sync_risk_limits(client, derivatives, symbol, category=category)
    return DerivativesReport(funding_report, mark_report, tiers)


def sync_derivatives_blocking(symbol: str, interval: str | int, *, start: int, end: int, store: StoreArg = None,
                              base_url: str | None = None, category: str = "linear", funding: bool = True,
                              mark: bool = True, progress: ProgressCallback | None = None,
                              **client_options: Any) -> DerivativesReport:
    """`sync_derivatives` for scripts: runs its own event loop with its own `BybitClient`.

    Args:
        base_url: REST root (None: `BYBIT_BASE_URL`, else mainnet).
        **client_options: passed to `BybitClient` (timeout, max_retries, rate_limit, ...).
        The rest: as for `sync_derivatives`.
    """

    async def run() -> DerivativesReport:
        async with BybitClient(base_url, **client_options) as client:
            return await sync_derivatives(client, store, symbol, interval, start=start, end=end, category=category,
                                          funding=funding, mark=mark, progress=progress)

    return asyncio.run(run())


def _funding_ranges(first: int | None, last: int, stored: Coverage | None) -> list[tuple[int | None, int]]:
    """The settlement ranges to ask for: [first, last] less what lies between the first and last stored ones."""
    if stored is None or first is None:
        return [(first, last)] if first is None or first <= last else []
    ranges: list[tuple[int | None, int]] = []
    if first < stored.first_start:
        ranges.append((first, min(last, stored.first_start - 1)))
    if last > stored.last_start:
        ranges.append((max(first, stored.last_start + 1), last))
    return [(low, high) for low, high in ranges if low is None or low <= high]


async def _funding_pages(client: BybitClient, symbol: str, low: int | None, high: int,
                         category: str) -> AsyncIterator[list[FundingRate]]:
    """The exchange's pages of [low, high]; with no lower bound known (no listing time), the whole history as one."""
    if low is None:
        rates = await client.get_funding_history(symbol, None, high, category)
        if rates:
            yield rates
        return
    pages = client.iter_funding_pages(symbol, low, high, category)
    try:
        async for page in pages:
            yield page
    finally:
        await pages.aclose()

"""Incremental kline fetch into the store: ask the exchange only for what the store lacks.

    resolve range  ->  store.missing_ranges  ->  client.iter_kline_pages  ->  store.upsert per page

The range is clamped to the instrument's launch time and to the last *closed* candle by the exchange's clock,
so the still-open candle is never stored. Every page is committed in its own transaction as it arrives: a fetch
killed at any instant keeps what it had, and the next run asks only for the rest. Candles the exchange does not
have either are reported as gaps, never filled in.

Typical use::

    report = sync_klines_blocking("BTCUSDT", "60", limit=1000)      # default store and mainnet
    print(report.summary())

or, in async code, `await sync_klines(client, store, "BTCUSDT", "60", start=..., end=...)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from ..api.client import BybitClient, InstrumentInfo
from ..api.intervals import GRID_OFFSET_MS, epoch_in_seconds, interval_ms, parse_interval
from ..errors import UserInputError
from .store import Coverage, KlineStore

__all__ = ["PAGE", "CandleSeries", "ProgressCallback", "SyncReport", "check_range", "fill_series", "format_ms",
           "opened_store", "parse_time_ms", "sync_klines", "sync_klines_blocking"]

PAGE = 1000
"""Candles per kline request: Bybit's maximum `limit`, and the client's window length."""

ProgressCallback = Callable[[int, int], None]
"""Called as `progress(done, total)`: candles of the missing ranges covered so far, out of all of them."""

# Candles open on multiples of the interval since the epoch, except weekly ones (Mondays 00:00 UTC; the epoch
# was a Thursday). The store uses the same grid for `missing_ranges`.
_GRID_OFFSET_MS = GRID_OFFSET_MS


@dataclass(frozen=True)
class SyncReport:
    """What one `sync_klines` call did and what the store holds afterwards.

    Attributes:
        category, symbol, interval: the series (interval as Bybit's code, e.g. "60").
        interval_ms: candle length, ms.
        start, end: the candle open times asked for after clamping (launch time, last closed candle), epoch ms.
        rows_added: candles new to the store (revised candles are not counted).
        kline_requests: kline windows requested (first attempts; the client's own retries are not counted).
        pages: non-empty pages received and committed.
        stored: the whole stored series afterwards (first, last open time, count), None if empty.
        gaps: candles in [start, end] the store still lacks, as inclusive (first, last) open times: the
            exchange had none there (listing, maintenance) or the fetch was cut short.
        server_time: the exchange's clock when the fetch began, epoch ms.
        label: what the candles are, after the series in `summary` ("mark" for mark prices; "" for trades).
    """

    category: str
    symbol: str
    interval: str
    interval_ms: int
    start: int
    end: int
    rows_added: int
    kline_requests: int
    pages: int
    stored: Coverage | None
    gaps: tuple[tuple[int, int], ...]
    server_time: int
    label: str = ""

    @property
    def missing_candles(self) -> int:
        """How many candles the gaps hold in all."""
        return sum((last - first) // self.interval_ms + 1 for first, last in self.gaps)

    def summary(self, max_gaps: int = 3) -> str:
        """One closing line: rows added, requests, stored range, gaps."""
        series = " ".join(filter(None, (self.symbol, self.interval, self.category, self.label)))
        text = (f"{series}: +{self.rows_added} rows in {self.kline_requests} "
                f"kline request(s); asked {format_ms(self.start)} .. {format_ms(self.end)}")
        if self.stored is not None:
            text += (f"; stored {format_ms(self.stored.first_start)} .. {format_ms(self.stored.last_start)} "
                     f"({self.stored.candle_count} candles)")
        if not self.gaps:
            return text + "; asked range complete, no gaps"
        shown = ", ".join(f"{format_ms(a)} .. {format_ms(b)}" for a, b in self.gaps[:max_gaps])
        more = f" and {len(self.gaps) - max_gaps} more" if len(self.gaps) > max_gaps else ""
        return (text + f"; {len(self.gaps)} gap(s), {self.missing_candles} candles the exchange did not "
                f"return: {shown}{more}")


def parse_time_ms(text: str | int, name: str = "time") -> int:
    """A user-given time as epoch milliseconds UTC.

    Args:
        text: epoch milliseconds (13 digits for present-day times) or ISO-8601 ("YYYY-MM-DD",
            "YYYY-MM-DDTHH:MM:SSZ", "YYYY-MM-DDTHH:MM:SS+HH:MM"); no offset means UTC.
        name: what the value is called in error messages (e.g. "--start").

    Returns:
        Epoch milliseconds.

    Raises:
        UserInputError: neither form, or a number small enough to be epoch seconds.
    """
    raw = str(text).strip()
    if raw.lstrip("-").isdigit():
        value = int(raw)
        if epoch_in_seconds(value):
            raise UserInputError(f"{name} {raw} looks like epoch seconds; give epoch milliseconds "
                                 f"({value * 1000}) or ISO-8601 as YYYY-MM-DDTHH:MM:SSZ")
        return value
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise UserInputError(f"{name} {raw!r} is not a time; give ISO-8601 as YYYY-MM-DDTHH:MM:SSZ "
                             "or epoch milliseconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def format_ms(ms: int) -> str:
    """Epoch ms as "YYYY-MM-DD HH:MM UTC": every time the command line shows people (files keep epoch ms)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


async def sync_klines(client: BybitClient, store: KlineStore | str | os.PathLike[str] | None, symbol: str,
                      interval: str | int, *, category: str = "linear", limit: int | None = None,
                      start: int | None = None, end: int | None = None,
                      progress: ProgressCallback | None = None) -> SyncReport:
    """Fetch the closed candles of one series that the store lacks, and store them page by page.

    Which candles (open times, inclusive; `end` and "now" are clamped to the last closed candle):
    `limit` alone: the latest `limit`; `start` [+ `end`]: from `start`; `start` + `limit`: the first `limit`
    from `start`; `end` + `limit`: the `limit` ending at `end`; nothing: from the first stored candle up to
    now (an update), or the latest 1000 when the store holds none. `start` never precedes the listing.

    Args:
        client: an open `BybitClient` (its base URL picks the exchange).
        store: a `KlineStore`, or a database path (None: `REFORMER_DB` / ~/.reformer/klines.sqlite), opened
            only after the exchange has accepted the symbol, and closed again.
        symbol: e.g. "BTCUSDT" (upper-cased).
        interval: a Bybit interval or spelling `parse_interval` accepts ("60", "1h", "D"); not "M".
        category: "spot", "linear" or "inverse".
        limit: how many candles (see above), >= 1.
        start, end: candle open times, epoch ms UTC.
        progress: called after each page with (candles covered, candles missing at the start).

    Returns:
        A `SyncReport`.

    Raises:
        InvalidIntervalError: unknown interval, or "M" (before any request).
        UserInputError: limit < 1, start > end, start/end/limit all given, a range holding no closed candle
            since the listing (before anything is stored), or a store that cannot be written.
        InvalidSymbolError: the exchange does not list the symbol (before the store is opened).
        ExchangeUnavailableError, ExchangeBannedError, ExchangeError: from the client; pages committed
            before the failure stay stored.
    """
    code, step = check_range(interval, limit, start, end)
    server_time = await client.get_server_time()
    info = await client.get_instrument_info(symbol, category)  # InvalidSymbolError before any write
    symbol = info.symbol
    with opened_store(store, KlineStore) as kline_store:
        kline_store.check_writable()  # a read-only store: said before any page is fetched
        series = CandleSeries(
            "", lambda: kline_store.coverage(category, symbol, code),
            lambda first, last: kline_store.missing_ranges(category, symbol, code, step, first, last),
            # replace: the exchange's own candles are the reference, and it may revise the newest one
            lambda page: kline_store.upsert(category, symbol, code, page, replace=True),
            lambda first, last: client.iter_kline_pages(symbol, code, first, last, category))
        return await fill_series(series, info, code, server_time, limit=limit, start=start, end=end,
                                 progress=progress)


@dataclass(frozen=True)
class CandleSeries:
    """One stored candle series and the exchange's pages of it: what `fill_series` reads and writes.

    Attributes:
        label: what the candles are, for reports ("" for traded candles, "mark" for mark prices).
        coverage: the stored series' first and last open time and count, or None.
        missing: the open-time ranges in [first, last] the store lacks (as `KlineStore.missing_ranges`).
        insert: stores one page in one transaction; returns how many candles were new.
        pages: the exchange's closed candles in [first, last], page by page, each row's first field its open time.
    """

    label: str
    coverage: Callable[[], Coverage | None]
    missing: Callable[[int, int], list[tuple[int, int]]]
    insert: Callable[[Sequence[Any]], int]
    pages: Callable[[int, int], AsyncIterator[Sequence[Sequence[Any]]]]


def check_range(interval: str | int, limit: int | None, start: int | None, end: int | None) -> tuple[str, int]:
    """The interval's code and length, after refusing a limit, start and end `sync_klines` cannot honour."""
    code = parse_interval(interval)
    step = interval_ms(code)
    if limit is not None and limit < 1:
        raise UserInputError(f"limit {limit} is invalid: ask for at least 1 candle")
    if limit is not None and start is not None and end is not None:
        raise UserInputError("pass start and end, or limit with at most one of them, not all three")
    if start is not None and end is not None and start > end:
        raise UserInputError(f"start {format_ms(start)} is after end {format_ms(end)}: swap them")
    return code, step


async def fill_series(series: CandleSeries, info: InstrumentInfo, code: str, server_time: int, *,
                      limit: int | None, start: int | None, end: int | None,
                      progress: ProgressCallback | None) -> SyncReport:
    """Fetch what one stored series lacks in the range `sync_klines` describes, one transaction per page."""
    step = interval_ms(code)
    symbol = info.symbol
    last_closed = _floor(server_time - step, code, step)
    first, last = _resolve(series.coverage, code, step, last_closed, limit, start, end)
    if info.launch_time is not None:
        first = max(first, _ceil(info.launch_time, code, step))
    if first > last:
        listed = format_ms(info.launch_time) if info.launch_time is not None else "unknown"
        raise UserInputError(
            f"no closed {symbol} {code} candle in the range asked for (listed {listed}, last closed candle "
            f"{format_ms(last_closed)}); pick a range between those"
        )
    missing = series.missing(first, last)
    calls = _plan_calls(missing, step)
    total = sum((b - a) // step + 1 for a, b in missing)
    added = pages = 0
    for call_first, call_last, _ in calls:
        async for page in series.pages(call_first, call_last):
            added += series.insert(page)
            pages += 1
            if progress is not None:
                progress(_covered(missing, int(page[-1][0]), step), total)
        if progress is not None:
            progress(_covered(missing, call_last, step), total)
    gaps = series.missing(first, last) if calls else []
    return SyncReport(category=info.category, symbol=symbol, interval=code, interval_ms=step, start=first,
                      end=last, rows_added=added, kline_requests=sum(n for _, _, n in calls), pages=pages,
                      stored=series.coverage(), gaps=tuple(gaps), server_time=server_time, label=series.label)


StoreT = TypeVar("StoreT", bound=KlineStore)


@contextlib.contextmanager
def opened_store(store: KlineStore | str | os.PathLike[str] | None, kind: type[StoreT]) -> Iterator[StoreT]:
    """`store` itself when it is a `kind`, else a `kind` opened at that path (None: the default) and closed after."""
    if isinstance(store, kind):
        yield store
        return
    if isinstance(store, KlineStore):
        raise UserInputError(f"{store!r} is a {type(store).__name__}; pass a {kind.__name__} or the store's path")
    opened = kind(store)
    try:
        yield opened
    finally:
        opened.close()


def sync_klines_blocking(symbol: str, interval: str | int, *, store: KlineStore | str | os.PathLike[str] | None = None,
                         base_url: str | None = None, category: str = "linear", limit: int | None = None,
                         start: int | None = None, end: int | None = None, progress: ProgressCallback | None = None,
                         **client_options: Any) -> SyncReport:
    """`sync_klines` for scripts: runs its own event loop with its own `BybitClient`.

    Args:
        symbol, interval, store, category, limit, start, end, progress: as for `sync_klines`.
        base_url: REST root (None: `BYBIT_BASE_URL`, else mainnet).
        **client_options: passed to `BybitClient` (timeout, max_retries, rate_limit, ...).

    Returns:
        A `SyncReport`.

    Raises:
        As `sync_klines`; RuntimeError when called inside a running event loop (await `sync_klines` there).
    """

    async def run() -> SyncReport:
        async with BybitClient(base_url, **client_options) as client:
            return await sync_klines(client, store, symbol, interval, category=category, limit=limit,
                                     start=start, end=end, progress=progress)

    return asyncio.run(run())


def _resolve(coverage: Callable[[], Coverage | None], code: str, step: int, last_closed: int,
             limit: int | None, start: int | None, end: int | None) -> tuple[int, int]:
    """First and last candle open time wanted, on the grid, before the launch-time clamp."""
    last = last_closed if end is None else min(_floor(end, code, step), last_closed)
    if start is not None:
        first = _ceil(start, code, step)
        if limit is not None:
            last = min(last, first + (limit - 1) * step)
        return first, last
    if limit is None:
        stored = coverage()
        if stored is not None:  # an update: from the first stored candle up to now
            return stored.first_start, last
        limit = PAGE
    return last - (limit - 1) * step, last


def _plan_calls(missing: list[tuple[int, int]], step: int) -> list[tuple[int, int, int]]:
    """Group missing ranges into `iter_kline_pages` calls: (first, last, kline windows).

    The client requests windows of PAGE candles anchored at a call's first candle. A missing range that
    starts inside the last window of the call before it joins that call for free (its candles come in a
    window requested anyway), so holes and the tail of one fetch never cost a request each.
    """
    calls: list[tuple[int, int]] = []
    for first, last in missing:
        if calls:
            call_first, call_last = calls[-1]
            windows = (call_last - call_first) // (PAGE * step) + 1
            if first <= call_first + (windows * PAGE - 1) * step:
                calls[-1] = (call_first, last)
                continue
        calls.append((first, last))
    return [(a, b, (b - a) // (PAGE * step) + 1) for a, b in calls]


def _covered(missing: list[tuple[int, int]], upto: int, step: int) -> int:
    """How many missing candles open at or before `upto`."""
    return sum((min(b, upto) - a) // step + 1 for a, b in missing if a <= upto)


def _floor(ms: int, code: str, step: int) -> int:
    offset = _GRID_OFFSET_MS.get(code, 0)
    return ms - (ms - offset) % step


def _ceil(ms: int, code: str, step: int) -> int:
    offset = _GRID_OFFSET_MS.get(code, 0)
    return ms + (offset - ms) % step

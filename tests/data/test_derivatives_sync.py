"""Incremental sync of funding, mark-price candles and risk limits against the fake exchange on loopback, into a
real SQLite file: only what the store lacks is asked for, holes and irregular settlements are reported."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from reformer.api import BybitClient, FakeExchange, FundingRate, Kline
from reformer.api._fake_derivatives import mark_kline
from reformer.data import DerivativesStore
from reformer.data.derivatives_sync import (
    sync_derivatives,
    sync_derivatives_blocking,
    sync_funding,
    sync_mark_klines,
    sync_risk_limits,
)
from reformer.data.store import KlineStore
from reformer.errors import InvalidSymbolError, UserInputError

T = TypeVar("T")
HOUR = 3_600_000
KEY = ("linear", "BTCUSDT", "60")
FUNDING = "/v5/market/funding/history"
MARK = "/v5/market/mark-price-kline"


def run_with_fake(series: dict[tuple[str, str, str], list[Kline]],
                  scenario: Callable[[FakeExchange, BybitClient], Awaitable[T]], **fake_args: Any) -> T:
    """`scenario(fake, client)` in one event loop; the timeout is a safety net, not synchronisation."""

    async def main() -> T:
        async with FakeExchange(series, **fake_args) as fake, BybitClient(fake.base_url, rate_limit=None) as client:
            return await scenario(fake, client)

    return asyncio.run(asyncio.wait_for(main(), 60.0))


def windows(fake: FakeExchange, path: str) -> list[tuple[int, int]]:
    return [(int(r.params["start"]), int(r.params["end"])) for r in fake.requests if r.path == path]


def test_mark_sync_fetches_only_what_is_new(tmp_path: Path, synthetic_year: list[Kline]) -> None:
    month = synthetic_year[:24 * 31]

    async def scenario(fake: FakeExchange, client: BybitClient) -> None:
        with DerivativesStore(tmp_path / "k.sqlite") as store:
            first = await sync_mark_klines(client, store, "BTCUSDT", "60", start=month[0].start_time,
                                           end=month[400].start_time)
            assert (first.rows_added, first.kline_requests, first.gaps, first.label) == (401, 1, (), "mark")
            assert "BTCUSDT 60 linear mark: +401 rows" in first.summary()
            assert store.load_mark_klines(*KEY) == [mark_kline(k, HOUR, "BTCUSDT") for k in month[:401]]
            fake.clear_log()
            update = await sync_mark_klines(client, store, "BTCUSDT", "60")  # no range: up to now
            assert windows(fake, MARK) == [(month[401].start_time, month[-2].start_time)]  # the new ones only
            assert update.rows_added == len(month) - 402 and update.stored is not None
            assert update.stored.candle_count == len(month) - 1  # the open candle is never stored
            fake.clear_log()
            again = await sync_mark_klines(client, store, "BTCUSDT", "60")
            assert (again.rows_added, again.kline_requests, fake.count(MARK)) == (0, 0, 0)

    run_with_fake({KEY: month}, scenario)


def test_a_hole_in_the_mark_candles_is_reported(tmp_path: Path, synthetic_year: list[Kline]) -> None:
    week = synthetic_year[:24 * 7]
    holed = week[:50] + week[56:]  # the exchange has nothing from 02:00 to 07:00 on day 3

    async def scenario(fake: FakeExchange, client: BybitClient) -> None:
        report = await sync_mark_klines(client, tmp_path / "k.sqlite", "BTCUSDT", "60", start=week[0].start_time,
                                        end=week[-2].start_time)
        assert report.gaps == ((week[50].start_time, week[55].start_time),)
        assert "1 gap(s), 6 candles the exchange did not return: 2024-01-03 02:00 UTC .. 2024-01-03 07:00 UTC" \
            in report.summary()
        with DerivativesStore(tmp_path / "k.sqlite") as store:
            assert store.mark_gaps(*KEY) == [(week[50].start_time, week[55].start_time)]

    run_with_fake({KEY: holed}, scenario)


def test_funding_sync_fetches_from_the_last_settlement_on(tmp_path: Path, synthetic_year: list[Kline]) -> None:
    db = tmp_path / "k.sqlite"
    launch = synthetic_year[0].start_time

    async def scenario(fake: FakeExchange, client: BybitClient) -> None:
        served = fake.market.funding("linear", "BTCUSDT")
        first = await sync_funding(client, db, "BTCUSDT", end=launch + 100 * 8 * HOUR)
        assert (first.rows_added, first.start, first.irregular) == (101, launch, ())
        assert "+101 settlements in 1 page(s)" in first.summary() and "regular grid" in first.summary()
        fake.clear_log()
        update = await sync_funding(client, db, "BTCUSDT")  # from the last stored settlement to now
        asked = [int(r.params["endTime"]) for r in fake.requests if r.path == FUNDING]
        assert update.start == launch + 100 * 8 * HOUR + 1 and asked[0] == update.start + 199 * 8 * HOUR
        # 997 settlements, 199 per window of 199 intervals that starts off the grid: one request each
        assert len(asked) == 6 and update.rows_added == 366 * 3 - 101 and update.pages == 6
        with DerivativesStore(db) as store:
            stored = store.load_funding("linear", "BTCUSDT")
        assert list(stored.to_numpy()) == [r.rate for r in served if r.time_ms <= fake.now_ms]
        fake.clear_log()
        before = await sync_funding(client, db, "BTCUSDT", start=launch - 10 * 8 * HOUR)  # before the first stored
        assert before.rows_added == 0 and fake.count(FUNDING) <= 2, "the listing bounds the stretch before"

    run_with_fake({KEY: synthetic_year}, scenario)


def test_irregular_funding_is_reported_naming_the_stretch(tmp_path: Path, synthetic_year: list[Kline]) -> None:
    days = synthetic_year[:24 * 10]
    every = [FundingRate(k.start_time, 1e-4) for k in days[::8]]
    gappy = every[:12] + every[13:20] + [FundingRate(every[20].time_ms + 1000, 1e-4)] + every[21:]

    async def scenario(fake: FakeExchange, client: BybitClient) -> None:
        report = await sync_funding(client, tmp_path / "k.sqlite", "BTCUSDT")
        assert report.irregular == ((every[11].time_ms, every[13].time_ms), (every[19].time_ms, every[21].time_ms))
        assert "2 irregular stretch(es): 2024-01-04 16:00 UTC .. 2024-01-05 08:00 UTC" in report.summary()
        warning = report.warnings()[0]
        assert warning.startswith("warning: BTCUSDT linear funding settlements from 2024-01-04 16:00 UTC to "
                                  "2024-01-05 08:00 UTC are not on a regular 1, 4 or 8-hour grid")

    run_with_fake({KEY: days}, scenario, funding={("linear", "BTCUSDT"): gappy})


def test_risk_limits_are_stored_once_and_revised_in_place(tmp_path: Path, synthetic_year: list[Kline]) -> None:
    db = tmp_path / "k.sqlite"

    async def scenario(fake: FakeExchange, client: BybitClient) -> None:
        first = await sync_risk_limits(client, db, "btcusdt")
        assert (first.symbol, len(first.tiers), first.added, first.replaced) == ("BTCUSDT", 10, 10, 0)
        assert "10 tiers, 100x up to 2,000,000" in first.summary()
        again = await sync_risk_limits(client, db, "BTCUSDT")
        assert (again.added, again.replaced) == (0, 0)
        with DerivativesStore(db) as store:
            assert store.load_risk_tiers("linear", "BTCUSDT") == list(first.tiers)

    run_with_fake({KEY: synthetic_year[:24]}, scenario)


def test_a_candle_range_brings_its_funding_mark_and_risk_limits(tmp_path: Path, synthetic_year: list[Kline]) -> None:
    db = tmp_path / "k.sqlite"
    start, end = synthetic_year[24].start_time, synthetic_year[24 * 5 - 1].start_time  # Jan 2 .. Jan 5 23:00

    async def scenario(fake: FakeExchange, client: BybitClient) -> None:
        report = await sync_derivatives(client, db, "BTCUSDT", "60", start=start, end=end)
        assert report.mark is not None and report.mark.rows_added == 96
        assert report.funding is not None and report.funding.rows_added == 13  # Jan 2 00:00 .. Jan 6 00:00 (close)
        assert report.risk_limits.added == 10
        only = await sync_derivatives(client, db, "BTCUSDT", "60", start=start, end=end, funding=False, mark=False)
        assert only.funding is None and only.mark is None

    run_with_fake({KEY: synthetic_year[:24 * 8]}, scenario)
    with DerivativesStore(db) as store:
        times = store.load_funding("linear", "BTCUSDT").index
        assert (times[0].isoformat(), times[-1].isoformat()) == ("2024-01-02T00:00:00+00:00",
                                                                 "2024-01-06T00:00:00+00:00")


@pytest.mark.parametrize("call", [
    lambda c, db: sync_funding(c, db, "BTCUSDT", category="spot"),
    lambda c, db: sync_mark_klines(c, db, "BTCUSDT", "60", category="spot", limit=5),
    lambda c, db: sync_risk_limits(c, db, "BTCUSDT", category="spot"),
    lambda c, db: sync_derivatives(c, db, "BTCUSDT", "60", start=0, end=1, category="spot"),
])
def test_spot_is_refused_before_any_request(tmp_path: Path, synthetic_year: list[Kline], call: Any) -> None:
    async def scenario(fake: FakeExchange, client: BybitClient) -> int:
        with pytest.raises(UserInputError, match="'spot' has no funding, mark price or risk limits"):
            await call(client, tmp_path / "k.sqlite")
        return fake.count(None)

    assert run_with_fake({("spot", "BTCUSDT", "60"): synthetic_year[:24]}, scenario) == 0
    assert not (tmp_path / "k.sqlite").exists()


def test_an_unknown_symbol_leaves_no_store_and_a_plain_kline_store_is_named(tmp_path: Path,
                                                                           synthetic_year: list[Kline]) -> None:
    async def scenario(fake: FakeExchange, client: BybitClient) -> None:
        with pytest.raises(InvalidSymbolError, match="'ETHUSDT'"):
            await sync_derivatives(client, tmp_path / "k.sqlite", "ETHUSDT", "60", start=0, end=HOUR)
        assert not (tmp_path / "k.sqlite").exists()
        with KlineStore(tmp_path / "plain.sqlite") as plain, pytest.raises(UserInputError, match="DerivativesStore"):
            await sync_funding(client, plain, "BTCUSDT")

    run_with_fake({KEY: synthetic_year[:24]}, scenario)


def test_blocking_sync_for_scripts(tmp_path: Path, synthetic_year: list[Kline]) -> None:
    with FakeExchange({KEY: synthetic_year[:48]}) as fake:
        report = sync_derivatives_blocking("BTCUSDT", "60", start=synthetic_year[0].start_time,
                                           end=synthetic_year[46].start_time, store=tmp_path / "k.sqlite",
                                           base_url=fake.base_url, rate_limit=None)
    assert report.mark is not None and report.mark.rows_added == 47 and report.funding is not None

"""`sync_klines` against the fake exchange on loopback: only missing candles are asked for, never the open one."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from reformer.api import BybitClient, FakeExchange, Kline
from reformer.data.store import KlineStore
from reformer.data.sync import SyncReport, parse_time_ms, sync_klines, sync_klines_blocking
from reformer.errors import InvalidIntervalError, InvalidSymbolError, UserInputError

from ..synthetic import Candles

T = TypeVar("T")
HOUR = 3_600_000
YEAR_2024 = (1_704_067_200_000, 1_735_686_000_000)  # first and last hourly open time of 2024, epoch ms
KEY = ("linear", "BTCUSDT", "60")


def run_with_fake(series: list[Kline], scenario: Callable[[FakeExchange, BybitClient], Awaitable[T]],
                  **fake_args: Any) -> T:
    """Run `scenario(fake, client)` in one event loop; the timeout is a safety net, not synchronisation."""

    async def main() -> T:
        async with FakeExchange({KEY: series}, **fake_args) as fake, \
                BybitClient(fake.base_url, rate_limit=None) as client:
            return await scenario(fake, client)

    return asyncio.run(asyncio.wait_for(main(), 30.0))


def kline_params(fake: FakeExchange) -> list[tuple[int, int]]:
    return [(int(r.params["start"]), int(r.params["end"])) for r in fake.requests if r.path.endswith("/kline")]


def test_a_year_lands_exactly_with_a_truthful_report(tmp_path: Path, candle_source: Candles) -> None:
    year = candle_source.year
    seen: list[tuple[int, int]] = []

    async def scenario(fake: FakeExchange, client: BybitClient) -> SyncReport:
        with KlineStore(tmp_path / "k.sqlite") as store:
            report = await sync_klines(client, store, "BTCUSDT", "60", start=YEAR_2024[0], end=YEAR_2024[1],
                                       progress=lambda done, total: seen.append((done, total)))
            assert store.load(*KEY) == year
        assert fake.count() == report.kline_requests == 9
        return report

    report = run_with_fake(candle_source.klines, scenario)
    assert (report.rows_added, report.pages, report.gaps) == (8784, 9, ())
    assert (report.start, report.end) == YEAR_2024
    assert report.stored is not None and report.stored.candle_count == 8784
    assert "+8784 rows in 9 kline request(s)" in report.summary() and "no gaps" in report.summary()
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert seen[-1] == (8784, 8784) and {total for _, total in seen} == {8784}


def test_the_open_candle_is_never_stored_and_lands_once_closed(tmp_path: Path, synthetic_year: list[Kline]) -> None:
    day = synthetic_year[:48]

    async def scenario(fake: FakeExchange, client: BybitClient) -> None:
        with KlineStore(tmp_path / "k.sqlite") as store:
            # "now" is 1 s after the last candle opened: the range reaches it, yet it is not stored
            report = await sync_klines(client, store, "BTCUSDT", "60", start=day[0].start_time,
                                       end=day[-1].start_time + 10 * HOUR)
            assert store.load(*KEY) == day[:-1]
            assert report.end == day[-2].start_time and report.gaps == ()
            await fake.advance_to(day[-1].start_time + HOUR)  # the last candle closes
            fake.clear_log()
            report = await sync_klines(client, store, "BTCUSDT", "60", limit=48)
            assert report.rows_added == 1 and store.load(*KEY) == day  # its final values, not a partial
            assert kline_params(fake) == [(day[-1].start_time, day[-1].start_time)]

    run_with_fake(day, scenario)


def test_a_second_identical_fetch_asks_for_no_klines(tmp_path: Path, synthetic_year: list[Kline]) -> None:
    week = synthetic_year[:168]

    async def scenario(fake: FakeExchange, client: BybitClient) -> None:
        with KlineStore(tmp_path / "k.sqlite") as store:
            first = await sync_klines(client, store, "BTCUSDT", "60", limit=100)
            fake.clear_log()
            again = await sync_klines(client, store, "BTCUSDT", "60", limit=100)
            assert (first.rows_added, again.rows_added, again.kline_requests, fake.count()) == (100, 0, 0, 0)
            assert store.load(*KEY) == week[-101:-1]  # the latest 100 closed candles

    run_with_fake(week, scenario)


def test_holes_the_exchange_also_lacks_are_reported_not_filled(tmp_path: Path, synthetic_year: list[Kline]) -> None:
    hole = synthetic_year[50:56]
    served = synthetic_year[:50] + synthetic_year[56:200]

    async def scenario(fake: FakeExchange, client: BybitClient) -> None:
        with KlineStore(tmp_path / "k.sqlite") as store:
            report = await sync_klines(client, store, "BTCUSDT", "60", start=synthetic_year[0].start_time,
                                       end=synthetic_year[198].start_time)
            assert report.gaps == ((hole[0].start_time, hole[-1].start_time),)
            assert report.missing_candles == 6 and "1 gap(s), 6 candles" in report.summary()
            assert store.load(*KEY) == served[:-1]
            fake.clear_log()
            again = await sync_klines(client, store, "BTCUSDT", "60", start=synthetic_year[0].start_time,
                                      end=synthetic_year[198].start_time)
            # only the hole is asked for again, and it stays a reported gap
            assert kline_params(fake) == [(hole[0].start_time, hole[-1].start_time)]
            assert again.rows_added == 0 and again.gaps == report.gaps

    run_with_fake(served, scenario)


def test_store_holes_close_together_share_a_request(tmp_path: Path, synthetic_year: list[Kline]) -> None:
    holes = [(100, 111), (500, 521), (5000, 5011)]  # index ranges, end exclusive
    missing = {i for lo, hi in holes for i in range(lo, hi)}

    async def scenario(fake: FakeExchange, client: BybitClient) -> None:
        with KlineStore(tmp_path / "k.sqlite") as store:
            store.upsert(*KEY, [k for i, k in enumerate(synthetic_year) if i not in missing])
            report = await sync_klines(client, store, "BTCUSDT", "60", start=YEAR_2024[0], end=YEAR_2024[1])
            assert store.load(*KEY) == synthetic_year
            # holes 1 and 2 fall into one 1000-candle window; hole 3 needs its own
            assert fake.count() == report.kline_requests == 2
            assert report.rows_added == len(missing) and report.gaps == ()

    run_with_fake([*synthetic_year, synthetic_year[-1]._replace(start_time=YEAR_2024[1] + HOUR)], scenario)


def test_ranges_are_clamped_to_the_listing(tmp_path: Path, synthetic_year: list[Kline]) -> None:
    listed = synthetic_year[1000:1100]

    async def scenario(fake: FakeExchange, client: BybitClient) -> None:
        with KlineStore(tmp_path / "k.sqlite") as store:
            report = await sync_klines(client, store, "BTCUSDT", "60", start=YEAR_2024[0])
            assert report.start == listed[0].start_time and report.gaps == ()
            assert store.load(*KEY) == listed[:-1]
            assert min(start for start, _ in kline_params(fake)) == listed[0].start_time
            with pytest.raises(UserInputError, match="no closed BTCUSDT 60 candle"):
                await sync_klines(client, store, "BTCUSDT", "60", start=YEAR_2024[0],
                                  end=synthetic_year[999].start_time)

    run_with_fake(listed, scenario)


def test_limit_start_end_combinations(tmp_path: Path, synthetic_year: list[Kline]) -> None:
    days = synthetic_year[:240]

    async def scenario(fake: FakeExchange, client: BybitClient) -> None:
        with KlineStore(tmp_path / "k.sqlite") as store:
            first = await sync_klines(client, store, "BTCUSDT", "60", start=days[10].start_time + 1, limit=5)
            assert (first.start, first.end) == (days[11].start_time, days[15].start_time)  # rounded up
            ending = await sync_klines(client, store, "BTCUSDT", "60", end=days[100].start_time, limit=3)
            assert (ending.start, ending.end) == (days[98].start_time, days[100].start_time)
            update = await sync_klines(client, store, "BTCUSDT", "60")  # from the first stored candle on
            assert (update.start, update.end) == (days[11].start_time, days[-2].start_time)
            assert store.load(*KEY) == days[11:-1]

    run_with_fake(days, scenario)


def test_an_empty_store_without_bounds_gets_the_latest_1000(tmp_path: Path, synthetic_year: list[Kline]) -> None:
    async def scenario(fake: FakeExchange, client: BybitClient) -> SyncReport:
        return await sync_klines(client, tmp_path / "k.sqlite", "BTCUSDT", "1h")

    report = run_with_fake(synthetic_year[:1500], scenario)
    assert report.interval == "60" and report.rows_added == 1000
    assert (report.start, report.end) == (synthetic_year[499].start_time, synthetic_year[1498].start_time)


@pytest.mark.parametrize(("args", "error", "match"), [
    ({"limit": 0}, UserInputError, "at least 1"),
    ({"start": YEAR_2024[1], "end": YEAR_2024[0]}, UserInputError, "after end"),
    ({"start": 1, "end": 2, "limit": 3}, UserInputError, "not all three"),
    ({"interval": "7"}, InvalidIntervalError, "invalid interval"),
    ({"interval": "M"}, InvalidIntervalError, "calendar month"),
])
def test_bad_arguments_fail_before_any_request_or_write(tmp_path: Path, synthetic_year: list[Kline],
                                                       args: dict[str, Any], error: type[Exception],
                                                       match: str) -> None:
    db = tmp_path / "k.sqlite"

    async def scenario(fake: FakeExchange, client: BybitClient) -> None:
        kwargs = {"interval": "60", **args}
        with pytest.raises(error, match=match):
            await sync_klines(client, db, "BTCUSDT", **kwargs)
        assert fake.count(None) == 0

    run_with_fake(synthetic_year[:10], scenario)
    assert not db.exists()


def test_an_unknown_symbol_never_opens_the_store(tmp_path: Path, synthetic_year: list[Kline]) -> None:
    db = tmp_path / "k.sqlite"

    async def scenario(fake: FakeExchange, client: BybitClient) -> None:
        with pytest.raises(InvalidSymbolError, match="ETHUSDT"):
            await sync_klines(client, db, "ETHUSDT", "60", limit=10)
        assert fake.count() == 0

    run_with_fake(synthetic_year[:10], scenario)
    assert not db.exists()


def test_the_blocking_wrapper_runs_its_own_loop(tmp_path: Path, synthetic_year: list[Kline]) -> None:
    with FakeExchange({KEY: synthetic_year[:30]}) as fake:
        report = sync_klines_blocking("btcusdt", 60, store=tmp_path / "k.sqlite", base_url=fake.base_url,
                                      limit=10, rate_limit=None)
    assert report.symbol == "BTCUSDT" and report.rows_added == 10
    with KlineStore(tmp_path / "k.sqlite") as store:
        assert store.load(*KEY) == synthetic_year[19:29]


@pytest.mark.parametrize(("text", "expected"), [
    ("2024-01-01T00:00:00Z", YEAR_2024[0]),
    ("2024-01-01", YEAR_2024[0]),
    ("2024-01-01T02:00:00+02:00", YEAR_2024[0]),
    ("2024-01-01 01:00", YEAR_2024[0] + HOUR),
    ("1704067200000", YEAR_2024[0]),
    (1704067200000, YEAR_2024[0]),
])
def test_times_parse_as_iso_or_epoch_ms(text: str | int, expected: int) -> None:
    assert parse_time_ms(text) == expected


@pytest.mark.parametrize(("text", "match"), [("1704067200", "epoch seconds"), ("yesterday", "not a time")])
def test_bad_times_name_the_option_and_the_fix(text: str, match: str) -> None:
    with pytest.raises(UserInputError, match=f"--start.*{match}.*YYYY-MM-DDTHH:MM:SSZ"):
        parse_time_ms(text, "--start")

"""The client against the fake exchange on loopback: a year of candles, faults, the open candle, bad input."""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest

from reformer.api import BybitClient, FakeExchange, Fault, FaultPlan, Kline
from reformer.api.fake import RETRYABLE_FAULTS, RequestRecord
from reformer.errors import ExchangeBannedError, InvalidIntervalError, InvalidSymbolError

from ..synthetic import Candles
from .conftest import HOUR, SleepRecorder, run

SERIES = ("linear", "BTCUSDT", "60")


def assert_polite(records: list[RequestRecord], rate: float) -> None:
    """No window of one second holds more than `rate` request arrivals at the fake.

    Arrival times carry scheduling noise on a shared 2-core box, hence 50 ms of slack; a limiter that let
    bursts through would show gaps near 0. The exact guarantee is tested in virtual time (test_client_unit).
    """
    stamps = sorted(r.at for r in records)
    n = int(rate)
    spans = [stamps[i + n] - stamps[i] for i in range(len(stamps) - n)]
    assert not spans or min(spans) >= 1.0 - 0.05, f"rate exceeded: {n + 1} requests within {min(spans):.3f} s"
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert not gaps or min(gaps) >= 1.0 / rate - 0.05


def fetch_year(series: list[Kline], year: list[Kline], plan: FaultPlan | None = None, *,
               overflow: str = "newest", client_args: dict[str, Any] | None = None
               ) -> tuple[list[Kline], FakeExchange, float]:
    async def scenario() -> tuple[list[Kline], FakeExchange, float]:
        async with FakeExchange({SERIES: series}, faults=plan, overflow=overflow) as fake, \
                BybitClient(fake.base_url, **(client_args or {})) as client:
            began = time.perf_counter()
            got = await client.get_klines("BTCUSDT", "60", start=year[0].start_time, end=year[-1].start_time)
            return got, fake, time.perf_counter() - began

    return run(scenario())


@pytest.mark.parametrize("overflow", ["newest", "oldest"])
def test_a_year_of_hourly_candles_is_exact_fast_and_polite(candle_source: Candles, fast_sleep: SleepRecorder,
                                                         overflow: str) -> None:
    # both sources: the synthetic candles' full-precision floats and the real file's exchange decimals
    series, year = candle_source.klines, candle_source.year
    got, fake, seconds = fetch_year(series, year, overflow=overflow, client_args={"sleep": fast_sleep})
    print(f"\nyear fetch ({overflow}): {len(got)} candles, {fake.count()} kline requests, "
          f"{fake.count(None)} requests in all, {seconds:.2f} s")
    assert got == year
    # fast, counted rather than timed (shared CI cores): 8,784 candles in windows of 1,000 are 9 pages, with no
    # retry and no backoff pause; the only waiting left is the rate limiter's, which assert_polite bounds below
    assert fake.count() == 9 and fake.count(None) == 11
    assert fast_sleep.delays == []
    assert_polite(fake.requests, 10.0)
    for record in fake.requests:  # no window ever holds more candles than `limit`
        if record.path == "/v5/market/kline":
            span = (int(record.params["end"]) - int(record.params["start"])) // HOUR + 1
            assert span <= int(record.params["limit"]) <= 1000


@pytest.mark.parametrize("seed", [5, 7, 19])  # seeds whose draws hit this short run (3 to 10 faults)
def test_a_year_with_15_percent_failures_is_identical(synthetic_series: list[Kline], synthetic_year: list[Kline],
                                                     fast_sleep: SleepRecorder, seed: int) -> None:
    plan = FaultPlan(rate=0.15, seed=seed, slow_delay=0.6)
    got, fake, seconds = fetch_year(synthetic_series, synthetic_year, plan,
                                    client_args={"sleep": fast_sleep, "timeout": 0.3, "seed": 5})
    faults = [r.fault for r in fake.requests if r.fault is not None]
    print(f"\nyear fetch with faults: {len(faults)} faults {sorted(faults)}, {fake.count(None)} requests, "
          f"{seconds:.2f} s")
    assert got == synthetic_year
    assert len(faults) >= 3, "the seed should inject faults"
    # Every fault costs exactly one retry, nothing else changes.
    assert fake.count(None) == 11 + len(faults)
    assert len(fast_sleep.delays) == len(faults)
    assert_polite(fake.requests, 10.0)


def test_every_kind_of_transient_failure_is_survived(synthetic_series: list[Kline], synthetic_year: list[Kline],
                                                    fast_sleep: SleepRecorder) -> None:
    quarter = synthetic_year[:2500]
    plan = FaultPlan(slow_delay=0.6, paths=("/v5/market/kline",))
    plan.queue.extend(RETRYABLE_FAULTS)
    got, fake, _ = fetch_year(synthetic_series, quarter, plan,
                              client_args={"sleep": fast_sleep, "timeout": 0.3, "rate_limit": 50.0,
                                           "max_retries": len(RETRYABLE_FAULTS)})
    assert got == quarter
    assert [r.fault for r in fake.requests if r.fault] == list(RETRYABLE_FAULTS)
    assert fake.count() == 3 + len(RETRYABLE_FAULTS)


def test_the_open_candle_is_returned_only_once_closed(synthetic_year: list[Kline]) -> None:
    day = synthetic_year[:48]

    async def scenario() -> None:
        async with FakeExchange({SERIES: day}) as fake, BybitClient(fake.base_url, rate_limit=None) as client:
            assert fake.now_ms == day[-1].start_time + 1000  # the last candle has just opened
            assert await client.get_klines("BTCUSDT", "60") == day[:-1]
            assert await client.get_klines("BTCUSDT", "60", limit=3) == day[-4:-1]
            await fake.advance_to(day[-1].start_time + HOUR - 1)
            assert (await client.get_klines("BTCUSDT", "60", limit=1))[0] == day[-2]
            await fake.advance_to(day[-1].start_time + HOUR)
            assert await client.get_klines("BTCUSDT", "60", limit=3) == day[-3:]
            assert await client.get_klines("BTCUSDT", "60", start=day[0].start_time) == day

    run(scenario())


def test_limit_and_bounds(synthetic_year: list[Kline]) -> None:
    week = synthetic_year[:168]

    async def scenario() -> None:
        async with FakeExchange({SERIES: week}) as fake, BybitClient(fake.base_url, rate_limit=None) as client:
            mid = week[50].start_time
            assert await client.get_klines("BTCUSDT", "60", start=mid + 1, end=week[60].start_time) == week[51:61]
            assert await client.get_klines("BTCUSDT", "60", start=mid, limit=5) == week[50:55]
            assert await client.get_klines("BTCUSDT", "60", end=mid, limit=4) == week[47:51]
            pages = [page async for page in client.iter_kline_pages("BTCUSDT", "1h", week[0].start_time)]
            assert pages == [week[:-1]]
            # the latest 5 end at the exchange's now, whatever `end` past it says (a clock ahead of the server,
            # a time in the future): before, the window was sized from `end` and came back short or empty
            now = await client.get_server_time()
            for ahead in (0, 2 * 60_000, HOUR, 6 * HOUR):
                assert await client.get_klines("BTCUSDT", "60", end=now + ahead, limit=5) == week[-6:-1], ahead

    run(scenario())


def test_bad_symbol_fails_at_once_naming_it(synthetic_year: list[Kline], fast_sleep: SleepRecorder) -> None:
    async def scenario(fake_calls: list[int]) -> None:
        async with FakeExchange({SERIES: synthetic_year[:10]}) as fake, \
                BybitClient(fake.base_url, sleep=fast_sleep) as client:
            try:
                with pytest.raises(InvalidSymbolError, match="'DOGEUSDX'"):
                    await client.get_klines("DOGEUSDX", "60", limit=5)
                with pytest.raises(InvalidSymbolError, match="'DOGEUSDX'"):
                    await client._get("/v5/market/kline", {"category": "linear", "symbol": "DOGEUSDX",
                                                           "interval": "60"}, symbol="DOGEUSDX")
            finally:
                fake_calls.append(fake.count(None))

    calls: list[int] = []
    run(scenario(calls))
    assert calls == [3] and fast_sleep.delays == []  # time + instruments-info, then the raw kline call


def test_bad_interval_fails_before_any_request(synthetic_year: list[Kline]) -> None:
    async def scenario() -> int:
        async with FakeExchange({SERIES: synthetic_year[:10]}) as fake, BybitClient(fake.base_url) as client:
            for interval in ("7", "M", "hourly"):
                with pytest.raises(InvalidIntervalError, match="interval"):
                    await client.get_klines("BTCUSDT", interval, limit=5)
            return fake.count(None)

    assert run(scenario()) == 0


def test_403_is_fatal_at_once(synthetic_year: list[Kline], fast_sleep: SleepRecorder) -> None:
    async def scenario() -> int:
        async with FakeExchange({SERIES: synthetic_year[:10]}) as fake, \
                BybitClient(fake.base_url, sleep=fast_sleep) as client:
            fake.inject(Fault.BANNED)
            with pytest.raises(ExchangeBannedError, match="10 minutes"):
                await client.get_klines("BTCUSDT", "60", limit=5)
            return fake.count(None)

    assert run(scenario()) == 1 and fast_sleep.delays == []


def test_funding_history_and_instrument_from_the_fake(synthetic_year: list[Kline]) -> None:
    async def scenario() -> None:
        async with FakeExchange({SERIES: synthetic_year}) as fake, \
                BybitClient(fake.base_url, rate_limit=None) as client:
            info = await client.get_instrument_info("BTCUSDT")
            assert info.launch_time == synthetic_year[0].start_time and info.funding_interval_min == 480
            rates = await client.get_funding_history("BTCUSDT")
            assert len(rates) == 366 * 3 and rates == sorted(rates)
            assert fake.count("/v5/market/funding/history") == 6
            part = await client.get_funding_history("BTCUSDT", start=rates[10].time_ms, end=rates[500].time_ms)
            assert part == rates[10:501]

    run(scenario())

"""Mark-price klines, funding history and risk-limit tiers: the client against the fake exchange on loopback (and a
scripted transport where only a hand-made answer shows the point), and what the fake derives from its candles."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from reformer.api import BybitClient, FakeExchange, FundingRate, Kline, MarkKline, RiskLimitTier, SyncBybitClient
from reformer.api._fake_derivatives import mark_kline
from reformer.errors import BadRequestError, ExchangeError, InvalidSymbolError

from ..synthetic import write_shared_layout_csv
from .conftest import HOUR, SleepRecorder, run

SERIES = ("linear", "BTCUSDT", "60")
MARK = "/v5/market/mark-price-kline"
FUNDING = "/v5/market/funding/history"
RISK = "/v5/market/risk-limit"


def test_mark_klines_page_like_klines_and_stay_near_the_trades(synthetic_year: list[Kline]) -> None:
    async def scenario(overflow: str) -> tuple[list[MarkKline], list[list[MarkKline]], FakeExchange]:
        async with FakeExchange({SERIES: synthetic_year}, overflow=overflow) as fake, \
                BybitClient(fake.base_url, rate_limit=None) as client:
            marks = await client.get_mark_klines("BTCUSDT", "60", start=synthetic_year[0].start_time,
                                                 end=synthetic_year[-1].start_time)
            requests = fake.count(MARK)
            pages = [page async for page in client.iter_mark_kline_pages("BTCUSDT", "1h", synthetic_year[0].start_time)]
            assert fake.count(MARK) == 2 * requests
            return marks, pages, fake

    for overflow in ("newest", "oldest"):  # the client never depends on which candles a large range returns
        marks, pages, fake = run(scenario(overflow))
        assert fake.count(MARK) == 18  # 8,784 hours in windows of 1,000, twice
        assert all(len(r.params) == 6 and int(r.params["limit"]) == 1000 for r in fake.requests if r.path == MARK)
        closed = synthetic_year[:-1]  # the fake's clock stands 1 s into the last candle
        assert [m.start_time for m in marks] == [k.start_time for k in closed]
        assert [len(page) for page in pages] == [1000] * 8 + [783]
        assert [m for page in pages for m in page] == marks
    assert marks == [mark_kline(k, HOUR, "BTCUSDT") for k in closed]  # deterministic, served exactly
    trades = np.array([k[1:5] for k in closed])
    prices = np.array([m[1:] for m in marks])
    assert np.abs(prices / trades - 1).max() < 0.0006  # close to the last price, wicks within a small band
    bodies = prices[:, [0, 3]]  # open and close
    assert (prices[:, 1] >= bodies.max(axis=1)).all() and (prices[:, 2] <= bodies.min(axis=1)).all()
    assert np.abs(prices / trades - 1).max(axis=0).min() > 0  # a mark price, not a copy of the trades
    joined = trades[1:, 0] == trades[:-1, 3]  # where a candle opens at the last close, so does its mark candle
    assert joined.any() and (prices[1:, 0][joined] == prices[:-1, 3][joined]).all()


def test_mark_klines_latest_and_spot_refused(synthetic_year: list[Kline], fast_sleep: SleepRecorder) -> None:
    day = synthetic_year[:48]

    async def scenario() -> int:
        async with FakeExchange({SERIES: day, ("spot", "BTCUSDT", "60"): day}) as fake, \
                BybitClient(fake.base_url, rate_limit=None, sleep=fast_sleep) as client:
            latest = await client.get_mark_klines("BTCUSDT", "60", limit=3)
            assert [m.start_time for m in latest] == [k.start_time for k in day[-4:-1]]
            with pytest.raises(BadRequestError, match="invalid category 'spot'"):
                await client.get_mark_klines("BTCUSDT", "60", limit=3, category="spot")
            raw = await client._http.get(MARK, params={"category": "spot", "symbol": "BTCUSDT", "interval": "60"})
            assert raw.json()["retCode"] == 10001  # the fake is as strict as Bybit
            return fake.count(MARK)

    assert run(scenario()) == 2


def test_funding_pages_forward_by_end_time_only(synthetic_year: list[Kline]) -> None:
    async def scenario() -> tuple[list[FundingRate], list[FundingRate], FakeExchange]:
        # "oldest": a range with both startTime and endTime answers its oldest 200, which Bybit may do (it is not
        # documented); paging backwards from endTime with startTime set would then stop after 200 settlements
        async with FakeExchange({SERIES: synthetic_year}, overflow="oldest") as fake, \
                BybitClient(fake.base_url, rate_limit=None) as client:
            both = await client._get(FUNDING, {"category": "linear", "symbol": "BTCUSDT", "limit": 200,
                                               "startTime": synthetic_year[0].start_time, "endTime": fake.now_ms})
            assert both["list"][-1]["fundingRateTimestamp"] == str(synthetic_year[0].start_time)
            fake.clear_log()
            whole = await client.get_funding_history("BTCUSDT", start=synthetic_year[0].start_time)
            pages = [page async for page in client.iter_funding_pages("BTCUSDT", whole[10].time_ms, whole[700].time_ms)]
            return whole, [r for page in pages for r in page], fake

    whole, part, fake = run(scenario())
    served = fake.market.funding("linear", "BTCUSDT")
    assert whole == [r for r in served if r.time_ms <= fake.now_ms] and len(whole) == 366 * 3
    assert part == whole[10:701]
    calls = [r.params for r in fake.requests if r.path == FUNDING]
    # Bybit anchors a page only at endTime, so startTime is never sent; windows of 199 intervals: 6 + 4 pages
    assert len(calls) == 10 and all("startTime" not in params and params["limit"] == "200" for params in calls)
    assert [int(p["endTime"]) for p in calls[:2]] == [whole[199].time_ms, whole[199].time_ms + 199 * 8 * HOUR + 1]


def test_funding_denser_than_the_instrument_says_is_paged_back_within_a_window(synthetic_year: list[Kline]) -> None:
    # hourly settlements while instruments-info says 480 minutes: a window of 199 x 8 h holds 1,593 of them
    hourly = [FundingRate(k.start_time, round(1e-4 + i * 1e-8, 8)) for i, k in enumerate(synthetic_year[:3000])]

    async def scenario() -> tuple[list[FundingRate], int]:
        async with FakeExchange({SERIES: synthetic_year[:3000]}, funding={("linear", "BTCUSDT"): hourly}) as fake, \
                BybitClient(fake.base_url, rate_limit=None) as client:
            got = await client.get_funding_history("BTCUSDT", start=hourly[5].time_ms, end=hourly[2500].time_ms)
            return got, fake.count(FUNDING)

    got, requests = run(scenario())
    assert got == hourly[5:2501]
    assert requests == 13  # 1,593 settlements in the first window (8 pages back), 903 in the second (5)


def test_funding_history_is_realistic_and_follows_the_price(synthetic_series: list[Kline]) -> None:
    with FakeExchange({SERIES: synthetic_series}) as fake:
        rates = fake.market.funding("linear", "BTCUSDT")
    times = np.array([r.time_ms for r in rates])
    values = np.array([r.rate for r in rates])
    assert (np.diff(times) == 8 * HOUR).all() and (times % (8 * HOUR) == 0).all()  # 00:00, 08:00, 16:00 UTC
    assert 0.00005 < values.mean() < 0.00015 and values.std() > 0.00005  # around 0.01 %, with variation
    assert np.abs(values).max() <= 0.005 and (values == 0.0001).mean() > 0.3  # capped; quiet markets at 0.01 %
    closes = {k.start_time + HOUR: k.close for k in synthetic_series}  # the price known at each settlement
    known = [i for i, t in enumerate(times) if t in closes and t - 24 * HOUR in closes]
    drift = np.array([closes[times[i]] / closes[times[i] - 24 * HOUR] - 1 for i in known])
    assert np.corrcoef(drift, values[known])[0, 1] > 0.5  # a rising market: longs pay more


def test_risk_limit_tiers_from_the_fake(synthetic_year: list[Kline], fast_sleep: SleepRecorder) -> None:
    markets = {SERIES: synthetic_year[:24], ("linear", "ETHUSDT", "60"): synthetic_year[:24],
               ("linear", "DOGEUSDT", "60"): synthetic_year[:24], ("inverse", "BTCUSD", "60"): synthetic_year[:24]}

    async def scenario() -> dict[str, list[RiskLimitTier]]:
        async with FakeExchange(markets) as fake, \
                BybitClient(fake.base_url, rate_limit=None, sleep=fast_sleep) as client:
            tables = {symbol: await client.get_risk_limits(symbol) for symbol in ("BTCUSDT", "ethusdt", "DOGEUSDT")}
            tables["BTCUSD"] = await client.get_risk_limits("BTCUSD", "inverse")
            with pytest.raises(InvalidSymbolError, match="'SOLUSDT'"):
                await client.get_risk_limits("SOLUSDT")
            with pytest.raises(BadRequestError, match="category"):
                await client.get_risk_limits("BTCUSDT", "spot")
            assert fake.count(RISK) == 5 and fast_sleep.delays == []
            return tables

    tables = run(scenario())
    btc = tables["BTCUSDT"]
    assert btc[0] == RiskLimitTier(1, 2_000_000.0, 0.005, 0.01, 100.0)
    assert btc[1] == RiskLimitTier(2, 4_000_000.0, 0.01, 0.015, 66.67)
    assert len(btc) == 10 and [t.tier_id for t in btc] == list(range(1, 11))
    for tiers in tables.values():  # rising tiers: larger positions, more margin, less leverage
        assert all(np.diff([[t.risk_limit_value, t.maintenance_margin_rate, t.initial_margin_rate] for t in tiers],
                           axis=0).min(axis=0) > 0)
        assert all(np.diff([t.max_leverage for t in tiers]) < 0)
        assert all(t.maintenance_margin_rate < t.initial_margin_rate for t in tiers)
    assert tables["ethusdt"][0][1:] == (1_000_000.0, 0.005, 0.01, 100.0)  # any case, as the client takes it
    assert tables["DOGEUSDT"][0][1:] == (200_000.0, 0.01, 0.02, 50.0)
    assert 10 < tables["BTCUSD"][0].risk_limit_value < 200  # inverse limits are in the base coin


def _scripted(answers: dict[str, Any], seen: list[httpx.Request]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers[request.url.path]
        result = answer(request) if callable(answer) else answer
        return httpx.Response(200, content=json.dumps({"retCode": 0, "retMsg": "OK", "result": result,
                                                       "retExtInfo": {}, "time": 1}).encode())

    return httpx.MockTransport(handler)


def test_risk_limits_follow_the_cursor_and_read_numbers_or_strings() -> None:
    def tier(n: int, symbol: str = "BTCUSDT") -> dict[str, Any]:
        # the docs type maintenanceMargin / initialMargin as numbers, the live API sends strings: both read
        return {"id": n, "symbol": symbol, "riskLimitValue": str(2_000_000 * n), "maintenanceMargin": 0.005 * n,
                "initialMargin": str(0.005 * (n + 1)), "isLowestRisk": int(n == 1),
                "maxLeverage": f"{1 / (0.005 * (n + 1)):.2f}", "mmDeduction": ""}

    def pages(request: httpx.Request) -> dict[str, Any]:
        if request.url.params.get("cursor") == "2":
            return {"category": "linear", "list": [tier(3), tier(4)], "nextPageCursor": ""}
        return {"category": "linear", "list": [tier(2), tier(1), tier(1, "ETHUSDT")], "nextPageCursor": "2"}

    seen: list[httpx.Request] = []

    async def scenario() -> list[RiskLimitTier]:
        async with BybitClient("https://bybit.test", transport=_scripted({RISK: pages}, seen)) as client:
            return await client.get_risk_limits("BTCUSDT")

    tiers = run(scenario())
    assert [t.tier_id for t in tiers] == [1, 2, 3, 4]  # lowest first, the other symbol's row ignored
    assert tiers[0] == RiskLimitTier(1, 2_000_000.0, 0.005, 0.01, 100.0)
    assert [dict(r.url.params) for r in seen] == [{"category": "linear", "symbol": "BTCUSDT"},
                                                   {"category": "linear", "symbol": "BTCUSDT", "cursor": "2"}]


@pytest.mark.parametrize(("path", "result", "call"), [
    (MARK, {"list": [["1704067200000", "42000", "oops", "41900", "42050"]]},
     lambda c: c.get_mark_klines("BTCUSDT", "60", start=1704067200000, end=1704067200000)),
    (RISK, {"list": [{"id": 1, "symbol": "BTCUSDT", "riskLimitValue": "2000000"}]},
     lambda c: c.get_risk_limits("BTCUSDT")),
    (FUNDING, {"list": [{"symbol": "BTCUSDT", "fundingRate": ""}]},
     lambda c: c.get_funding_history("BTCUSDT", end=1704067200000)),
])
def test_malformed_answers_are_named(path: str, result: dict[str, Any], call: Any) -> None:
    answers = {path: result, "/v5/market/time": {"timeSecond": "1704070900"},
               "/v5/market/instruments-info": {"list": [{"symbol": "BTCUSDT", "status": "Trading",
                                                         "launchTime": "1704067200000"}]}}

    async def scenario() -> None:
        async with BybitClient("https://bybit.test", transport=_scripted(answers, [])) as client:
            await call(client)

    with pytest.raises(ExchangeError, match="malformed"):
        run(scenario())


def test_sync_client_has_every_derivatives_call(synthetic_year: list[Kline]) -> None:
    with FakeExchange({SERIES: synthetic_year[:100]}) as fake, \
            SyncBybitClient(fake.base_url, rate_limit=None) as client:
        marks = client.get_mark_klines("BTCUSDT", "60", limit=5)
        assert [m.start_time for m in marks] == [k.start_time for k in synthetic_year[94:99]]
        pages = list(client.iter_mark_kline_pages("BTCUSDT", "60", synthetic_year[0].start_time))
        assert len(pages) == 1 and pages[0][-5:] == marks
        rates = client.get_funding_history("BTCUSDT", start=synthetic_year[0].start_time)
        assert [r for page in client.iter_funding_pages("BTCUSDT", synthetic_year[0].start_time) for r in page] == rates
        assert [r.time_ms for r in rates] == [synthetic_year[0].start_time + i * 8 * HOUR for i in range(13)]
        assert client.get_risk_limits("BTCUSDT")[0].max_leverage == 100.0


@pytest.fixture
def served(request: pytest.FixtureRequest, synthetic_year: list[Kline], tmp_path: Path) -> Iterator[str]:
    """`reformer fake-exchange` serving a CSV or the synthetic market in a child process; yields its REST root."""
    if request.param == "csv":
        source = ["--csv", str(write_shared_layout_csv(synthetic_year[:200], tmp_path / "btc.csv"))]
    else:
        source = ["--synthetic", "--bars", "200"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "reformer.cli", "fake-exchange", *source], env=env,
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        banner = [process.stdout.readline() for _ in range(2)]
        assert "200 BTCUSDT 60 candles" in banner[0], banner
        yield banner[1].strip().removeprefix("BYBIT_BASE_URL=")
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize("served", ["csv", "synthetic"], indirect=True)
def test_fake_exchange_command_serves_perpetual_data(served: str) -> None:
    with SyncBybitClient(served, rate_limit=None) as client:
        klines = client.get_klines("BTCUSDT", "60", limit=199)
        marks = client.get_mark_klines("BTCUSDT", "60", limit=199)
        assert [m.start_time for m in marks] == [k.start_time for k in klines]
        assert max(abs(m.close / k.close - 1) for m, k in zip(marks, klines, strict=True)) < 0.0006
        rates = client.get_funding_history("BTCUSDT", start=klines[0].start_time)
        assert len(rates) >= 24 and all(r.time_ms % (8 * HOUR) == 0 and abs(r.rate) <= 0.005 for r in rates)
        assert client.get_risk_limits("BTCUSDT")[0] == RiskLimitTier(1, 2_000_000.0, 0.005, 0.01, 100.0)

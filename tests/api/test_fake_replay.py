"""The fake exchange as a live market: its clock replayed at a multiple of real time (`FakeExchange.replay`), REST
as of that clock, closes pushed on the WebSocket as the clock passes them, the stop at the data's end, periodic
WebSocket drops and REST faults that the real client and stream get through. Minute candles at speeds of 600 and
more keep each test to a second or two of wall time."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import AsyncGenerator
from typing import Any, cast

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from reformer.api import BybitClient, BybitStream, FakeExchange, FaultPlan, Kline, ReplayClock, SyncBybitClient
from reformer.errors import UserInputError

from .conftest import HOUR, run

MINUTE = 60_000
T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC: funding settles at T0 and T0 + 8 h
KEY = ("linear", "BTCUSDT", "1")
KLINE = "/v5/market/kline"
TOPIC = "kline.1.BTCUSDT"


@pytest.fixture(scope="module")
def candles() -> list[Kline]:
    """Ten hours of one-minute candles from 2024-01-01 00:00 UTC, a seeded random walk."""
    rng = random.Random(3)
    price, rows = 42_000.0, []
    for n in range(600):
        close = round(price * (1 + rng.gauss(0.0, 0.001)), 1)
        high, low = round(max(price, close) + rng.uniform(0, 20), 1), round(min(price, close) - rng.uniform(0, 20), 1)
        volume = round(rng.uniform(1, 10), 3)
        rows.append(Kline(T0 + n * MINUTE, price, high, low, close, volume, round(volume * close, 2)))
        price = close
    return rows


def at(candles: list[Kline], start_time: int) -> Kline:
    return candles[(start_time - T0) // MINUTE]


def client_for(fake: FakeExchange) -> BybitClient:
    """The real client with short backoffs, so retries cost milliseconds."""
    return BybitClient(fake.base_url, ws_url=fake.ws_url, rate_limit=None, backoff_base=0.01, backoff_max=0.05,
                       timeout=5.0)


async def closed_candles(stream: BybitStream, count: int) -> list[Kline]:
    got: list[Kline] = []
    candles = cast(AsyncGenerator[Kline, None], aiter(stream))
    async with contextlib.aclosing(candles):
        async for kline in candles:
            got.append(kline)
            if len(got) == count:
                break
    return got


async def subscribe(fake: FakeExchange) -> ClientConnection:
    ws = await connect(f"{fake.ws_url}/linear", compression=None)
    await ws.send(json.dumps({"op": "subscribe", "args": [TOPIC]}))
    return ws


def test_rest_answers_as_of_the_moving_clock(candles: list[Kline]) -> None:
    async def scenario() -> list[dict[str, Any]]:
        answers: list[dict[str, Any]] = []  # the kline, funding and ticker answers of one round
        async with FakeExchange({KEY: candles}) as fake, httpx.AsyncClient(base_url=fake.base_url) as http:
            fake.replay(T0 + 8 * HOUR - 30 * MINUTE, speed=1200)  # 07:30, twenty minutes a second
            while len(answers) < 6 or answers[-1]["funding"]["time"] < T0 + 8 * HOUR + MINUTE:  # past 08:00
                answers.append({name: (await http.get(path, params=params)).json() for name, path, params in (
                    ("kline", KLINE, {"category": "linear", "symbol": "BTCUSDT", "interval": "1", "limit": "1000"}),
                    ("funding", "/v5/market/funding/history", {"category": "linear", "symbol": "BTCUSDT"}),
                    ("ticker", "/v5/market/tickers", {"category": "linear"}))})
        return answers

    answers = run(scenario())
    times = [answer["kline"]["time"] for answer in answers]
    assert times == sorted(times) and len(set(times)) >= 5, "the clock moved while REST answered"
    settled = set()
    for answer in answers:
        now, rows = answer["kline"]["time"], answer["kline"]["result"]["list"]
        starts = [int(row[0]) for row in rows]
        assert starts[0] <= now < starts[0] + MINUTE, "the newest candle is the one containing the clock"
        open_row, final = [float(v) for v in rows[0][1:]], at(candles, starts[0])
        assert open_row[0] == final.open, "the open candle is partial: its volume accrues pro rata"
        assert open_row[4] == pytest.approx(final.volume * (now - starts[0] + 1) / MINUTE)
        closed = [Kline(int(r[0]), *map(float, r[1:])) for r in reversed(rows[1:])]
        assert closed == candles[(closed[0].start_time - T0) // MINUTE:(starts[0] - T0) // MINUTE]
        # funding settles as the clock passes 08:00, not before
        funding_now = answer["funding"]["time"]
        newest = max(int(r["fundingRateTimestamp"]) for r in answer["funding"]["result"]["list"])
        assert newest == (T0 + 8 * HOUR if funding_now >= T0 + 8 * HOUR else T0)
        settled.add(newest)
        ticker_now, ticker = answer["ticker"]["time"], answer["ticker"]["result"]["list"][0]
        current = at(candles, ticker_now // MINUTE * MINUTE)
        assert min(current.open, current.close) <= float(ticker["lastPrice"]) <= max(current.open, current.close)
    assert settled == {T0, T0 + 8 * HOUR}


def test_candles_close_on_the_websocket_as_the_clock_passes_them(candles: list[Kline]) -> None:
    async def scenario() -> list[tuple[dict[str, Any], int, float]]:
        closes: list[tuple[dict[str, Any], int, float]] = []  # (data, the fake's clock then, wall time)
        async with FakeExchange({KEY: candles}) as fake:
            fake.replay(T0 + HOUR, speed=600)  # a minute candle closes every 0.1 s
            async with await subscribe(fake) as ws:
                while len(closes) < 6:
                    message = json.loads(await ws.recv())
                    closes += [(item, fake.now_ms, time.monotonic()) for item in message.get("data", [])
                               if item["confirm"]]
        return closes

    closes = run(scenario())
    starts = [int(item["start"]) for item, _, _ in closes]
    assert starts == [starts[0] + n * MINUTE for n in range(6)], "consecutive closes, in order"
    for item, clock_then, _ in closes:
        assert clock_then >= int(item["end"]) + 1, "a candle is confirmed only once the clock has passed its close"
        final = at(candles, int(item["start"]))
        assert [float(item[name]) for name in ("open", "high", "low", "close", "volume", "turnover")] == \
            [final.open, final.high, final.low, final.close, final.volume, final.turnover]
    # at 600x five closes take 0.5 s of wall time: not all at once, not at real time
    assert 0.25 < closes[-1][2] - closes[0][2] < 5.0


def test_the_market_stops_at_the_data_end(candles: list[Kline]) -> None:
    ended: list[int] = []
    end = candles[-1].start_time + MINUTE

    async def scenario() -> tuple[list[int], list[list[str]], int, bool]:
        async with FakeExchange({KEY: candles}) as fake:
            clock = fake.replay(end - 10 * MINUTE - 30_000, speed=600, on_end=ended.append)
            async with await subscribe(fake) as ws:
                await asyncio.wait_for(clock.wait(), 10)
                await ws.send(json.dumps({"op": "ping"}))  # answered after every push made before the end
                confirmed = []
                while (message := json.loads(await ws.recv())).get("op") != "ping":
                    confirmed += [int(item["start"]) for item in message.get("data", []) if item["confirm"]]
            async with httpx.AsyncClient(base_url=fake.base_url) as http:
                rows = (await http.get(KLINE, params={"symbol": "BTCUSDT", "interval": "1", "end": end + HOUR})
                        ).json()["result"]["list"]
                server_time = int((await http.get("/v5/market/time")).json()["result"]["timeNano"]) // 1_000_000
            return confirmed, rows, server_time, clock.running

    confirmed, rows, server_time, running = run(scenario())
    assert ended == [end] and server_time == end and not running, "the clock stops at the last close"
    assert confirmed[-1] == candles[-1].start_time, "the last candle closes, and nothing after it"
    assert Kline(int(rows[0][0]), *map(float, rows[0][1:])) == candles[-1], "served whole, not partial"


def test_periodic_drops_make_the_stream_reconnect_and_backfill(candles: list[Kline]) -> None:
    async def scenario() -> tuple[list[Kline], int]:
        async with FakeExchange({KEY: candles}) as fake:
            fake.replay(T0 + 2 * HOUR, speed=600)
            fake.drop_ws_every(0.25)
            async with client_for(fake) as client:
                stream = BybitStream("BTCUSDT", "1", client=client, reconnect_backoff=(0.01, 0.05))
                return await closed_candles(stream, 15), stream.reconnects

    got, reconnects = run(scenario())
    first = (got[0].start_time - T0) // MINUTE
    assert got == candles[first:first + 15], "every candle once, in order, across the drops"
    assert reconnects >= 2


def test_rest_faults_during_the_replay_are_retried_through(candles: list[Kline]) -> None:
    async def scenario() -> tuple[list[Kline], int]:
        plan = FaultPlan(rate=0.3, seed=5, slow_delay=0.05)
        async with FakeExchange({KEY: candles}, faults=plan) as fake:
            fake.replay(T0 + 3 * HOUR, speed=600)
            fake.drop_ws_every(0.3)  # so the stream back-fills through the faulty REST
            async with client_for(fake) as client:
                got = await closed_candles(BybitStream("BTCUSDT", "1", client=client, reconnect_backoff=(0.01, 0.05)),
                                           10)
            return got, sum(1 for r in fake.requests if r.fault is not None)

    got, faults = run(scenario())
    first = (got[0].start_time - T0) // MINUTE
    assert got == candles[first:first + 10]
    assert faults >= 1


def test_replay_from_sync_code_serves_nothing_after_the_clock(candles: list[Kline]) -> None:
    end = candles[-1].start_time + MINUTE
    seen: list[tuple[int, int]]
    with FakeExchange({KEY: candles}) as fake:
        clock = fake.replay(end - 30 * MINUTE, speed=3000)  # from the caller's thread: the fake runs in its own
        with SyncBybitClient(fake.base_url, rate_limit=None) as client:
            deadline, seen = time.monotonic() + 20, []  # (server time, newest closed candle's open)
            while not seen or seen[-1][0] < end:
                assert time.monotonic() < deadline, "the clock did not reach the data's end"
                now = client.get_server_time()
                klines = client.get_klines("BTCUSDT", "1", limit=50)  # closed candles only
                assert klines[-1].start_time + MINUTE <= client.get_server_time()
                seen.append((now, klines[-1].start_time))
        assert not clock.running and fake.now_ms == end
    assert len({now for now, _ in seen}) >= 3 and seen[-1][1] == candles[-1].start_time


def test_replay_checks_its_settings(candles: list[Kline]) -> None:
    fake = FakeExchange({KEY: candles})
    with pytest.raises(UserInputError, match=r"outside the data.*2024-01-01 00:00:00 UTC to 2024-01-01 10:00:00 UTC"):
        ReplayClock(fake, T0 - MINUTE)
    with pytest.raises(UserInputError, match="outside the data"):
        ReplayClock(fake, T0 + 10 * HOUR + 1)
    with pytest.raises(UserInputError, match="negative"):
        ReplayClock(fake, T0, -1.0)

    async def still() -> tuple[int, bool]:
        async with fake:
            with pytest.raises(UserInputError, match="> 0 seconds"):
                fake.drop_ws_every(0)
            clock = fake.replay(T0 + 5 * MINUTE, speed=0)  # speed 0: the clock is set, and stays
            await asyncio.sleep(0)
            return fake.now_ms, clock.running

    assert run(still()) == (T0 + 5 * MINUTE, False)

"""BybitStream against the fake's WebSocket: confirmed candles only, exactly once, across dropped links."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect

from reformer.api import BybitClient, BybitStream, FakeExchange, Kline
from reformer.api.stream import public_ws_url
from reformer.errors import InvalidSymbolError

from .conftest import HOUR, SleepRecorder, run

SERIES = ("linear", "BTCUSDT", "60")
STEP_WAIT = 10.0  # safety net per awaited candle; the waits are on a queue, never on the clock


class Consumer:
    """Runs `async for` over a stream in a task and hands the candles over through a queue."""

    def __init__(self, stream: BybitStream) -> None:
        self.queue: asyncio.Queue[Kline] = asyncio.Queue()
        self.task = asyncio.create_task(self._consume(stream))

    async def _consume(self, stream: BybitStream) -> None:
        async for kline in stream:
            await self.queue.put(kline)

    async def take(self, count: int) -> list[Kline]:
        return [await asyncio.wait_for(self.queue.get(), STEP_WAIT) for _ in range(count)]

    async def stop(self) -> None:
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


def opened(candle: Kline) -> int:
    """A clock value just after `candle` opened (so the one before it has closed)."""
    return candle.start_time + 1000


def test_ws_url_derivation() -> None:
    assert public_ws_url("wss://stream.bybit.com/v5/public", "spot") == "wss://stream.bybit.com/v5/public/spot"
    assert public_ws_url("ws://127.0.0.1:9/v5/public/", "linear") == "ws://127.0.0.1:9/v5/public/linear"
    assert public_ws_url("ws://127.0.0.1:9/v5/public/inverse", "linear") == "ws://127.0.0.1:9/v5/public/inverse"


def test_fake_ws_protocol(synthetic_year: list[Kline]) -> None:
    hours = synthetic_year[:10]

    async def scenario() -> None:
        async with FakeExchange({SERIES: hours}, now_ms=opened(hours[3])) as fake, \
                connect(f"{fake.ws_url}/linear", compression=None) as ws:
            await ws.send(json.dumps({"req_id": "a", "op": "subscribe", "args": ["kline.60.BTCUSDT"]}))
            ack = json.loads(await ws.recv())
            assert ack["success"] is True and ack["op"] == "subscribe" and ack["req_id"] == "a"
            first = json.loads(await ws.recv())  # the open candle right after subscribing
            assert first["data"][0]["start"] == hours[3].start_time and first["data"][0]["confirm"] is False
            await ws.send(json.dumps({"req_id": "p", "op": "ping"}))
            pong = json.loads(await ws.recv())
            assert pong["ret_msg"] == "pong" and pong["op"] == "ping" and pong["req_id"] == "p"
            await fake.advance_to(opened(hours[4]))
            pushes = [json.loads(await ws.recv()) for _ in range(3)]
            data = [p["data"][0] for p in pushes]
            assert [(d["start"], d["confirm"]) for d in data] == [
                (hours[3].start_time, False), (hours[3].start_time, True), (hours[4].start_time, False)]
            assert data[1]["end"] == hours[3].start_time + HOUR - 1 and data[1]["close"] == str(hours[3].close)
            assert all(p["topic"] == "kline.60.BTCUSDT" and p["type"] == "snapshot" for p in pushes)
            await ws.send(json.dumps({"op": "subscribe", "args": ["kline.60.NOPEUSDT"]}))
            refused = json.loads(await ws.recv())
            assert refused["success"] is False and "NOPEUSDT" in refused["ret_msg"]

    run(scenario())


def test_stream_yields_closed_candles_once_in_order_and_pings(synthetic_year: list[Kline]) -> None:
    hours = synthetic_year[:40]

    async def scenario() -> None:
        async with FakeExchange({SERIES: hours}, now_ms=opened(hours[10])) as fake, \
                BybitClient(fake.base_url, ws_url=fake.ws_url, rate_limit=None) as client:
            consumer = Consumer(BybitStream("btcusdt", "1h", client=client, ping_interval=0.05))
            await fake.wait_for_subscribers("BTCUSDT", "60")
            await fake.wait_for_pings(2)
            requests = None
            for index in range(11, 14):  # one bucket at a time
                await fake.advance_to(hours[index - 1].start_time + HOUR // 2)  # mid-candle: nothing closes
                await fake.advance_to(opened(hours[index]))
                assert await consumer.take(1) == [hours[index - 1]]
                # REST only on connecting (the server's time, then a back-fill that finds nothing closed yet)
                requests = fake.count(None) if requests is None else requests
                assert 0 < requests <= 4
            await fake.advance_to(opened(hours[20]))  # several close in one jump
            assert await consumer.take(7) == hours[13:20]
            assert consumer.queue.empty() and fake.count(None) == requests  # no REST needed while connected
            await consumer.stop()

    run(scenario())


@pytest.mark.parametrize("before_drop", [3, 0])
def test_dropped_websocket_is_back_filled_through_rest(synthetic_year: list[Kline], fast_sleep: SleepRecorder,
                                                        before_drop: int) -> None:
    # before_drop = 0: the link dies before the first candle closes. Without `since` nothing had been handed out
    # then, so there was nothing to back-fill from: the candle open at connect time and every one closing during
    # the outage were lost
    hours = synthetic_year[:60]
    first_down = 10 + before_drop  # the first candle that closes while the link is down

    async def scenario() -> None:
        async with FakeExchange({SERIES: hours}, now_ms=opened(hours[10])) as fake, \
                BybitClient(fake.base_url, ws_url=fake.ws_url, rate_limit=None, sleep=fast_sleep) as client:
            stream = BybitStream("BTCUSDT", "60", client=client, reconnect_backoff=(0.01, 0.05))
            consumer = Consumer(stream)
            await fake.wait_for_subscribers("BTCUSDT", "60")
            if before_drop:
                await fake.advance_to(opened(hours[first_down]))
                assert await consumer.take(before_drop) == hours[10:first_down]
            # The link dies and stays down while four more candles close.
            fake.refuse_ws(True)
            assert fake.drop_ws_connections() == 1
            for index in range(first_down + 1, first_down + 5):
                await fake.advance_to(opened(hours[index]))
            fake.refuse_ws(False)
            # back-filled through REST after reconnecting
            assert await consumer.take(4) == hours[first_down:first_down + 4]
            assert fake.count() >= 1 and stream.reconnects >= 1
            await fake.wait_for_subscribers("BTCUSDT", "60")
            await fake.advance_to(opened(hours[first_down + 6]))  # live again
            assert await consumer.take(2) == hours[first_down + 4:first_down + 6]
            assert consumer.queue.empty()
            await consumer.stop()

    run(scenario())


def test_drops_racing_with_closes_never_lose_or_repeat(synthetic_year: list[Kline],
                                                      fast_sleep: SleepRecorder) -> None:
    hours = synthetic_year[:80]

    async def scenario() -> None:
        async with FakeExchange({SERIES: hours}, now_ms=opened(hours[5])) as fake, \
                BybitClient(fake.base_url, ws_url=fake.ws_url, rate_limit=None, sleep=fast_sleep) as client:
            stream = BybitStream("BTCUSDT", "60", client=client, reconnect_backoff=(0.0, 0.01))
            consumer = Consumer(stream)
            await fake.wait_for_subscribers("BTCUSDT", "60")
            dropped = 0
            for index in range(6, 70):
                await fake.advance_to(opened(hours[index]))
                if index % 7 == 0:  # drop without waiting: whichever of live push or back-fill wins
                    dropped += fake.drop_ws_connections()
            assert await consumer.take(64) == hours[5:69]
            assert dropped >= 1 and stream.reconnects >= 1
            await fake.wait_for_subscribers("BTCUSDT", "60")
            await fake.advance_to(opened(hours[70]))
            assert await consumer.take(1) == [hours[69]]
            assert consumer.queue.empty()
            await consumer.stop()

    run(scenario())


def test_a_gap_in_live_pushes_is_back_filled(synthetic_year: list[Kline]) -> None:
    hours = synthetic_year[:30]

    async def scenario() -> None:
        async with FakeExchange({SERIES: hours}, now_ms=opened(hours[10])) as fake, \
                BybitClient(fake.base_url, ws_url=fake.ws_url, rate_limit=None) as client:
            consumer = Consumer(BybitStream("BTCUSDT", "60", client=client))
            await fake.wait_for_subscribers("BTCUSDT", "60")
            await fake.advance_to(opened(hours[12]))
            assert await consumer.take(2) == hours[10:12]
            before = fake.count()  # the back-fill on connecting
            fake.market.now = opened(hours[15])  # the clock jumps without pushing: 12..14 are never sent
            await fake.advance_to(opened(hours[16]))  # only 15's close is pushed
            assert await consumer.take(4) == hours[12:16]
            assert fake.count() - before == 1  # one REST page filled the gap
            await consumer.stop()

    run(scenario())


def test_since_back_fills_history_first(synthetic_year: list[Kline]) -> None:
    hours = synthetic_year[:30]

    async def scenario() -> None:
        async with FakeExchange({SERIES: hours}, now_ms=opened(hours[20])) as fake, \
                BybitClient(fake.base_url, ws_url=fake.ws_url, rate_limit=None) as client:
            consumer = Consumer(BybitStream("BTCUSDT", "60", client=client, since=hours[2].start_time))
            assert await consumer.take(18) == hours[2:20]
            await fake.wait_for_subscribers("BTCUSDT", "60")
            await fake.advance_to(opened(hours[21]))
            assert await consumer.take(1) == [hours[20]]
            await consumer.stop()

    run(scenario())


def test_candles_the_exchange_lacks_are_reported_once_through_on_gap(synthetic_year: list[Kline]) -> None:
    hours = synthetic_year[:40]
    served = [*hours[:5], *hours[8:20], *hours[22:]]  # none for 05:00-07:00 (back-filled) and 20:00-21:00 (live)
    gaps: list[tuple[int, int]] = []

    async def scenario() -> None:
        async with FakeExchange({SERIES: served}, now_ms=opened(hours[15])) as fake, \
                BybitClient(fake.base_url, ws_url=fake.ws_url, rate_limit=None) as client:
            stream = BybitStream("BTCUSDT", "60", client=client, since=hours[2].start_time,
                                 on_gap=lambda first, last: gaps.append((first, last)))
            consumer = Consumer(stream)
            assert await consumer.take(10) == [*hours[2:5], *hours[8:15]]
            assert gaps == [(hours[5].start_time, hours[7].start_time)]
            await fake.wait_for_subscribers("BTCUSDT", "60")
            await fake.advance_to(opened(hours[23]))
            assert await consumer.take(6) == [*hours[15:20], hours[22]]
            assert gaps == [(hours[5].start_time, hours[7].start_time), (hours[20].start_time, hours[21].start_time)]
            await fake.advance_to(opened(hours[24]))
            assert await consumer.take(1) == [hours[23]]
            assert consumer.queue.empty() and len(gaps) == 2  # each hole once
            await consumer.stop()

    run(scenario())


def test_unknown_symbol_subscription_raises(synthetic_year: list[Kline]) -> None:
    async def scenario() -> None:
        async with FakeExchange({SERIES: synthetic_year[:5]}) as fake, \
                BybitClient(fake.base_url, ws_url=fake.ws_url) as client:
            with pytest.raises(InvalidSymbolError, match="NOPEUSDT"):
                async for _ in BybitStream("NOPEUSDT", "60", client=client):
                    pass

    run(scenario())


def test_a_websocket_that_never_comes_up_is_named_not_retried_for_ever(synthetic_year: list[Kline],
                                                                      fast_sleep: SleepRecorder) -> None:
    # a wrong --ws-url or host: the first connection failing again and again is bad input, one error; drops after a
    # link came up are retried without end (the tests above)
    import socket

    from reformer.api.stream import FIRST_CONNECT_ATTEMPTS
    from reformer.errors import ExchangeUnavailableError

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]

    async def scenario() -> None:
        async with FakeExchange({SERIES: synthetic_year[:30]}, now_ms=opened(synthetic_year[10])) as fake, \
                BybitClient(fake.base_url, ws_url=f"ws://127.0.0.1:{dead}/v5/public", rate_limit=None,
                            sleep=fast_sleep) as client:
            stream = BybitStream("BTCUSDT", "60", client=client, reconnect_backoff=(0.001, 0.002))
            with pytest.raises(ExchangeUnavailableError, match=f"could not be reached in {FIRST_CONNECT_ATTEMPTS}"):
                async for _ in stream:
                    pass
            assert stream.reconnects == FIRST_CONNECT_ATTEMPTS - 1

    run(scenario())

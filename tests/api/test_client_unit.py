"""Socket-free tests of parsing, error classification, retry policy and rate limiting (httpx.MockTransport)."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from reformer.api import BybitClient, FundingRate, Kline
from reformer.api._http import RateLimiter, backoff_delay, parse_envelope
from reformer.api.client import MAINNET_BASE_URL, TESTNET_BASE_URL
from reformer.errors import (
    BadRequestError,
    ExchangeBannedError,
    ExchangeError,
    ExchangeUnavailableError,
    InvalidIntervalError,
    InvalidSymbolError,
    RetryableExchangeError,
    UserInputError,
)

from .conftest import HOUR, SleepRecorder, run

NOW = 1_704_076_923_456  # 2024-01-01T02:42:03.456Z, as in the doc's example
DOC_ROWS = [  # Bybit's documented kline answer: newest first, strings, the first row still open at NOW
    ["1704074400000", "42512.3", "42588.0", "42470.1", "42555.9", "812.404", "34551542.1200"],
    ["1704070800000", "42420.0", "42530.5", "42390.2", "42512.3", "1033.877", "43917027.2060"],
    ["1704067200000", "42283.5", "42451.2", "42250.0", "42420.0", "1250.116", "52938662.2520"],
]


def envelope(result: dict[str, Any] | None = None, code: int = 0, message: str = "OK") -> bytes:
    return json.dumps({"retCode": code, "retMsg": message, "result": result or {}, "retExtInfo": {},
                       "time": NOW}).encode()


def answer_ok(request: httpx.Request) -> httpx.Response:
    path = request.url.path
    if path == "/v5/market/time":
        return httpx.Response(200, content=envelope({"timeSecond": str(NOW // 1000),
                                                     "timeNano": str(NOW * 1_000_000)}))
    if path == "/v5/market/instruments-info":
        return httpx.Response(200, content=envelope({"list": [{"symbol": "BTCUSDT", "status": "Trading",
                                                               "launchTime": "1585526400000"}]}))
    if path == "/v5/market/kline":
        return httpx.Response(200, content=envelope({"category": "linear", "symbol": "BTCUSDT",
                                                     "list": DOC_ROWS}))
    return httpx.Response(404, text="Not Found")


class Script:
    """A MockTransport handler: the listed failures first (one per request), then the good answers."""

    def __init__(self, *failures: Callable[[httpx.Request], httpx.Response]) -> None:
        self.failures = list(failures)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.failures:
            return self.failures.pop(0)(request)
        return answer_ok(request)

    def client(self, sleep: SleepRecorder, **kwargs: Any) -> BybitClient:
        kwargs.setdefault("rate_limit", None)
        return BybitClient("https://bybit.test", transport=httpx.MockTransport(self), sleep=sleep, seed=1,
                           **kwargs)


def code(number: int, message: str = "", headers: dict[str, str] | None = None
         ) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(200, content=envelope({}, number, message), headers=headers)


def status(number: int, text: str = "") -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(number, text=text)


def truncated(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=envelope({"list": DOC_ROWS})[:40])


def html(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, text="<html>maintenance</html>")


def timeout(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("timed out", request=request)


def reset(request: httpx.Request) -> httpx.Response:
    raise httpx.RemoteProtocolError("peer closed connection without sending complete message body",
                                    request=request)


def refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def test_doc_example_parses_to_ascending_closed_floats(fast_sleep: SleepRecorder) -> None:
    async def scenario() -> list[Kline]:
        async with Script().client(fast_sleep) as client:
            return await client.get_klines("BTCUSDT", "60", start=1704067200000, end=1704074400000)

    candles = run(scenario())
    # The 02:00 candle closes at 03:00 > NOW, so it is dropped; the rest come oldest first, as floats.
    assert candles == [Kline(1704067200000, 42283.5, 42451.2, 42250.0, 42420.0, 1250.116, 52938662.252),
                       Kline(1704070800000, 42420.0, 42530.5, 42390.2, 42512.3, 1033.877, 43917027.206)]


def test_window_requests_stay_within_one_page(fast_sleep: SleepRecorder) -> None:
    script = Script()

    async def scenario() -> None:
        async with script.client(fast_sleep) as client:
            await client.get_klines("BTCUSDT", "60", start=NOW - 2500 * HOUR, end=NOW)

    run(scenario())
    windows = [(int(r.url.params["start"]), int(r.url.params["end"])) for r in script.requests
               if r.url.path == "/v5/market/kline"]
    assert len(windows) == 3
    assert all((end - start) // HOUR + 1 <= 1000 and r.url.params["limit"] == "1000"
               for (start, end), r in zip(windows, script.requests[2:], strict=True))
    assert all(nxt[0] == prev[1] + HOUR for prev, nxt in itertools.pairwise(windows))
    assert windows[-1][1] == NOW


def test_envelope_classification() -> None:
    def response(number: int, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        return httpx.Response(number, content=body, headers=headers,
                              request=httpx.Request("GET", "https://bybit.test/v5/market/kline"))

    assert parse_envelope(response(200, envelope({"a": 1}, 0, "SUCCESS"))) == {"a": 1}
    assert parse_envelope(response(200, envelope(None, 0, ""))) == {}
    with pytest.raises(RetryableExchangeError) as info:
        parse_envelope(response(200, envelope({}, 10006, "Too many visits!"),
                                {"X-Bapi-Limit-Reset-Timestamp": "1704076924000"}))
    assert info.value.code == 10006 and info.value.retry_at_ms == 1704076924000
    with pytest.raises(RetryableExchangeError) as info:
        parse_envelope(response(200, envelope({}, 10006, "Too many visits!")))  # no X-Bapi headers (pybit#340)
    assert info.value.retry_at_ms is None
    with pytest.raises(ExchangeBannedError, match="10 minutes"):
        parse_envelope(response(403, b"access too frequent"))
    with pytest.raises(InvalidSymbolError, match="'XYZUSDT'"):
        parse_envelope(response(200, envelope({}, 10001, "Not supported symbols")), symbol="XYZUSDT")
    with pytest.raises(BadRequestError) as bad:
        parse_envelope(response(200, envelope({}, 10001, "params error: limit")), symbol="BTCUSDT")
    assert not isinstance(bad.value, InvalidSymbolError) and isinstance(bad.value, UserInputError)
    with pytest.raises(ExchangeError) as other:
        parse_envelope(response(200, envelope({}, 10017, "route not found")))
    assert type(other.value) is ExchangeError and other.value.code == 10017
    with pytest.raises(ExchangeError):
        parse_envelope(response(404, b"Not Found"))


@pytest.mark.parametrize("failure", [
    code(10006, "Too many visits!"),
    code(10006, "Too many visits!", {"X-Bapi-Limit": "10", "X-Bapi-Limit-Status": "0",
                                     "X-Bapi-Limit-Reset-Timestamp": str(int(time.time() * 1000) + 300)}),
    code(10000, "Server Timeout"), code(10016, "Server error"), status(429), status(500), status(502),
    status(503), truncated, html, timeout, reset, refused,
], ids=["10006", "10006+headers", "10000", "10016", "429", "500", "502", "503", "truncated", "html", "timeout",
        "reset", "refused"])
def test_each_transient_failure_is_retried(failure: Callable[[httpx.Request], httpx.Response],
                                           fast_sleep: SleepRecorder) -> None:
    script = Script(failure, failure)

    async def scenario() -> int:
        async with script.client(fast_sleep) as client:
            return await client.get_server_time()

    assert run(scenario()) == NOW
    assert len(script.requests) == 3
    assert len(fast_sleep.delays) == 2 and all(0 <= d <= 5.0 for d in fast_sleep.delays)


@pytest.mark.parametrize(("failure", "error"), [(status(403, "access too frequent"), ExchangeBannedError),
                                                (code(10001, "Not supported symbols"), InvalidSymbolError),
                                                (code(10001, "params error"), BadRequestError),
                                                (status(404), ExchangeError)])
def test_fatal_answers_are_not_retried(failure: Callable[[httpx.Request], httpx.Response],
                                       error: type[Exception], fast_sleep: SleepRecorder) -> None:
    script = Script(failure)

    async def scenario() -> None:
        async with script.client(fast_sleep) as client:
            await client._get("/v5/market/kline", {"symbol": "NOPEUSDT"}, symbol="NOPEUSDT")

    with pytest.raises(error) as info:
        run(scenario())
    assert len(script.requests) == 1 and fast_sleep.delays == []
    if error is InvalidSymbolError:
        assert "NOPEUSDT" in str(info.value)
    if error is ExchangeBannedError:
        assert "10 minutes" in str(info.value)


def test_retries_are_bounded_then_unavailable(fast_sleep: SleepRecorder) -> None:
    script = Script(*[status(503)] * 20)

    async def scenario() -> None:
        async with script.client(fast_sleep, max_retries=3) as client:
            await client.get_server_time()

    with pytest.raises(ExchangeUnavailableError, match="failed 4 times") as info:
        run(scenario())
    assert len(script.requests) == 4 and info.value.http_status == 503


def test_backoff_is_jittered_exponential_and_capped() -> None:
    rng = random.Random(7)
    transient = RetryableExchangeError("x", code=10016)
    for attempt in range(12):
        step = min(5.0, 0.2 * 2 ** attempt)
        delays = [backoff_delay(attempt, transient, base=0.2, cap=5.0, rng=rng) for _ in range(200)]
        assert all(0 <= d <= step for d in delays)
        assert max(delays) > 0.8 * step  # full jitter spreads over the whole step
    limited = RetryableExchangeError("x", code=10006)
    assert all(backoff_delay(3, limited, base=0.2, cap=5.0, rng=rng) >= 0.8 for _ in range(100))
    # without a reset header, a rate limit cools down for 1-2 s even on the first retry (not base * 2**0 = 0.2 s)
    first = [backoff_delay(0, limited, base=0.2, cap=5.0, rng=rng) for _ in range(200)]
    assert all(1.0 <= d <= 2.0 for d in first) and max(first) - min(first) > 0.5  # jittered, not one constant
    assert all(backoff_delay(0, RetryableExchangeError("x", http_status=429), base=0.2, cap=5.0, rng=rng) >= 1.0
               for _ in range(20))
    assert backoff_delay(0, limited, base=0.2, cap=0.5, rng=rng) == 0.5  # the cap still bounds it
    assert backoff_delay(0, transient, base=0.2, cap=5.0, rng=rng) <= 0.2  # other failures keep the short step
    header = RetryableExchangeError("x", code=10006, retry_at_ms=1_000_000 + 1_500)
    assert backoff_delay(0, header, base=0.2, cap=5.0, rng=rng, now_ms=1_000_000) == pytest.approx(1.5)
    far = RetryableExchangeError("x", code=10006, retry_at_ms=1_000_000 + 3_600_000)
    assert backoff_delay(0, far, base=0.2, cap=5.0, rng=rng, now_ms=1_000_000) == 5.0  # bounded


def test_reset_header_is_honoured(fast_sleep: SleepRecorder) -> None:
    reset_at = int(time.time() * 1000) + 2_000
    script = Script(code(10006, "Too many visits!", {"X-Bapi-Limit-Reset-Timestamp": str(reset_at)}))

    async def scenario() -> None:
        async with script.client(fast_sleep) as client:
            await client.get_server_time()

    run(scenario())
    assert 1.0 < fast_sleep.delays[0] <= 2.0


def test_invalid_input_fails_before_any_request(fast_sleep: SleepRecorder) -> None:
    script = Script()

    async def scenario() -> None:
        async with script.client(fast_sleep) as client:
            for call in (lambda: client.get_klines("BTCUSDT", "7"), lambda: client.get_klines("BTCUSDT", "M"),
                         lambda: client.get_klines("BTCUSDT", "60", category="futures"),
                         lambda: client.get_klines("BTC/USDT", "60"),
                         lambda: client.get_klines("BTCUSDT", "60", limit=0)):
                with pytest.raises(UserInputError):
                    await call()

    run(scenario())
    assert script.requests == []
    with pytest.raises(InvalidIntervalError, match="720, D, W, M"):
        run(Script().client(fast_sleep).get_klines("BTCUSDT", "45"))


def test_limiter_spaces_concurrent_callers_in_virtual_time() -> None:
    virtual = [0.0]
    starts: list[float] = []

    async def sleep(seconds: float) -> None:
        virtual[0] += seconds * 1.3  # oversleeping (a loaded machine) must never let the next caller in early
        await asyncio.sleep(0)

    async def scenario() -> None:
        limiter = RateLimiter(10.0, clock=lambda: virtual[0], sleep=sleep)

        async def call() -> None:
            await limiter.acquire()
            starts.append(virtual[0])

        await asyncio.gather(*(call() for _ in range(25)))

    run(scenario())
    assert len(starts) == 25
    assert all(later - earlier >= 0.1 - 1e-9 for earlier, later in itertools.pairwise(starts))
    assert all(starts[i + 10] - starts[i] >= 1.0 - 1e-9 for i in range(len(starts) - 10))  # <= 10 per second
    assert RateLimiter(None).interval == 0.0


def test_client_rate_limit_holds_across_concurrent_calls() -> None:
    script = Script()
    stamps: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        stamps.append(time.monotonic())
        return script(request)

    async def scenario() -> None:
        async with BybitClient("https://bybit.test", transport=httpx.MockTransport(handler),
                               rate_limit=50.0) as client:
            await asyncio.gather(*(client.get_server_time() for _ in range(12)))

    run(scenario())
    # Real time: 12 starts at 50/s span at least 11 intervals (5 ms slack for scheduling noise).
    assert len(stamps) == 12 and stamps[-1] - stamps[0] >= 11 * 0.02 - 0.005


def test_funding_pages_backwards_and_sorts(fast_sleep: SleepRecorder) -> None:
    eight_hours = 8 * HOUR
    settlements = [FundingRate(1_700_000_000_000 + i * eight_hours, i / 1e5) for i in range(450)]
    seen: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        seen.append(params)
        end = int(params["endTime"])
        chosen = [s for s in settlements if s.time_ms <= end][-200:]
        rows = [{"symbol": "BTCUSDT", "fundingRate": str(s.rate), "fundingRateTimestamp": str(s.time_ms)}
                for s in reversed(chosen)]
        return httpx.Response(200, content=envelope({"category": "linear", "list": rows}))

    async def scenario() -> list[FundingRate]:
        async with BybitClient("https://bybit.test", transport=httpx.MockTransport(handler),
                               rate_limit=None) as client:
            return await client.get_funding_history("BTCUSDT", end=settlements[-1].time_ms)

    assert run(scenario()) == settlements
    assert [int(p["endTime"]) for p in seen[1:]] == [settlements[250].time_ms - 1, settlements[50].time_ms - 1]
    assert all(p["limit"] == "200" and p["category"] == "linear" for p in seen)


def test_instrument_info_and_inverse_volume_units(fast_sleep: SleepRecorder) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v5/market/instruments-info":
            return httpx.Response(200, content=envelope({"list": [{
                "symbol": "BTCUSD", "contractType": "InversePerpetual", "status": "Trading",
                "baseCoin": "BTC", "quoteCoin": "USD", "launchTime": "1542211200000",
                "priceFilter": {"tickSize": "0.50"}, "lotSizeFilter": {"qtyStep": "1", "minOrderQty": "1"},
                "fundingInterval": 480}]}))
        if request.url.path == "/v5/market/kline":
            rows = [["1704067200000", "42000", "42100", "41900", "42050", "420500", "10.0"]]
            return httpx.Response(200, content=envelope({"category": "inverse", "list": rows}))
        return answer_ok(request)

    async def scenario() -> tuple[Any, list[Kline]]:
        async with BybitClient("https://bybit.test", transport=httpx.MockTransport(handler)) as client:
            info = await client.get_instrument_info("btcusd", "inverse")
            return info, await client.get_klines("BTCUSD", "60", start=1704067200000, category="inverse")

    info, candles = run(scenario())
    assert (info.symbol, info.launch_time, info.tick_size, info.funding_interval_min) == \
        ("BTCUSD", 1542211200000, 0.5, 480)
    # Inverse: Bybit's volume is USD contracts, turnover is BTC; Kline wants base volume, quote turnover.
    assert candles[0].volume == 10.0 and candles[0].turnover == 420500.0


def test_unknown_symbol_in_instruments_info(fast_sleep: SleepRecorder) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=envelope({"category": "linear", "list": []}))

    async def scenario() -> None:
        async with BybitClient("https://bybit.test", transport=httpx.MockTransport(handler)) as client:
            await client.get_instrument_info("NOPEUSDT")

    with pytest.raises(InvalidSymbolError, match="NOPEUSDT"):
        run(scenario())


def test_base_url_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BYBIT_BASE_URL", raising=False)
    assert BybitClient().base_url == MAINNET_BASE_URL
    assert BybitClient(testnet=True).base_url == TESTNET_BASE_URL
    assert "stream-testnet" in BybitClient(testnet=True).ws_url
    monkeypatch.setenv("BYBIT_BASE_URL", "http://127.0.0.1:9/")
    assert BybitClient().base_url == "http://127.0.0.1:9"
    assert BybitClient("https://api.bytick.com").base_url == "https://api.bytick.com"


def test_urls_without_their_scheme_are_named_at_once() -> None:
    from reformer.api import BybitClient
    from reformer.errors import BadRequestError

    with pytest.raises(BadRequestError, match="'notaurl' is not an http"):
        BybitClient("notaurl")
    with pytest.raises(BadRequestError, match="is not a ws"):
        BybitClient("http://127.0.0.1:1", ws_url="http://127.0.0.1:1/v5/public")

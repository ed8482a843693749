"""The fake exchange itself: faithful REST answers, strict validation, faults, clock, thread and CLI modes."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from reformer.api import FakeExchange, Fault, Kline, SyncBybitClient
from reformer.api.fake import RETRYABLE_FAULTS
from reformer.data.csv_io import read_klines
from reformer.errors import DataFormatError, InvalidSymbolError, UserInputError

from ..synthetic import plain_decimal, write_shared_layout_csv
from .conftest import HOUR, run

SERIES = ("linear", "BTCUSDT", "60")
KLINE = "/v5/market/kline"


def get(fake: FakeExchange, path: str, **params: Any) -> httpx.Response:
    """One raw request, no retries (the fake runs in a thread for these tests)."""
    with httpx.Client(base_url=fake.base_url, timeout=5.0) as http:
        return http.get(path, params=params)


@pytest.fixture
def fake(synthetic_year: list[Kline]) -> Any:
    """24 hourly candles of 2024-01-01 in a background thread; the clock at 02:42:03.456 as in the doc."""
    with FakeExchange({SERIES: synthetic_year[:24], ("spot", "BTCUSDT", "60"): synthetic_year[:24],
                       ("inverse", "BTCUSD", "60"): synthetic_year[:24]},
                      now_ms=1_704_076_923_456) as server:
        yield server


def test_doc_example_inclusive_bounds_newest_first(fake: FakeExchange, synthetic_year: list[Kline]) -> None:
    body = get(fake, KLINE, category="linear", symbol="BTCUSDT", interval="60", start=1670601600000,
               end=1704074400000, limit=1000).json()
    assert set(body) == {"retCode", "retMsg", "result", "retExtInfo", "time"}
    assert (body["retCode"], body["retMsg"], body["retExtInfo"], body["time"]) == (0, "OK", {}, 1_704_076_923_456)
    rows = body["result"]["list"]
    assert [r[0] for r in rows] == ["1704074400000", "1704070800000", "1704067200000"]  # newest first
    assert all(isinstance(v, str) for r in rows for v in r)
    assert rows[-1] == ["1704067200000", *map(plain_decimal, synthetic_year[0][1:])]
    # The 02:00 candle is still open at 02:42: partial values, between its open and its final extremes.
    open_row = [float(v) for v in rows[0][1:]]
    final = synthetic_year[2]
    assert open_row[0] == final.open and final.low <= open_row[2] <= open_row[1] <= final.high
    assert 0 < open_row[4] < final.volume
    exact = get(fake, KLINE, symbol="BTCUSDT", interval="60", start=1704067200000, end=1704074400000).json()
    assert len(exact["result"]["list"]) == 3  # both bounds inclusive, category defaults to linear


def test_doc_example_row_of_the_real_candles(btc_year: list[Kline]) -> None:
    # the real file's first candle of 2024 comes back in the strings Bybit writes: plain decimals, no trailing '.0'
    with FakeExchange({SERIES: btc_year[:24]}, now_ms=1_704_076_923_456) as server:
        rows = get(server, KLINE, symbol="BTCUSDT", interval="60", start=1704067200000,
                   end=1704067200000).json()["result"]["list"]
    assert rows == [["1704067200000", "42324.8", "42610.9", "42300.2", "42517.4", "3038.207",
                     str(btc_year[0].turnover)]]


def test_mid_bucket_start_returns_the_containing_candle(fake: FakeExchange) -> None:
    rows = get(fake, KLINE, category="linear", symbol="BTCUSDT", interval="60", start=1704067200000 + 1,
               end=1704070800000).json()["result"]["list"]
    assert [r[0] for r in rows] == ["1704070800000", "1704067200000"]


@pytest.mark.parametrize(("params", "message"), [
    ({"symbol": "ETHUSDT", "interval": "60"}, "Not supported symbols"),
    ({"symbol": "btcusdt", "interval": "60"}, "Not supported symbols"),
    ({"interval": "60"}, "symbol"),
    ({"symbol": "BTCUSDT", "interval": "7"}, "Invalid period"),
    ({"symbol": "BTCUSDT", "interval": "60", "limit": 0}, "limit"),
    ({"symbol": "BTCUSDT", "interval": "60", "limit": 1001}, "limit"),
    ({"symbol": "BTCUSDT", "interval": "60", "start": "soon"}, "start"),
    ({"symbol": "BTCUSDT", "interval": "60", "category": "option"}, "category"),
])
def test_kline_parameters_are_validated(fake: FakeExchange, params: dict[str, Any], message: str) -> None:
    response = get(fake, KLINE, **params)
    body = response.json()
    assert response.status_code == 200 and body["retCode"] == 10001 and message in body["retMsg"]
    assert body["result"] == {}


def test_overflow_default_limit_and_unknown_routes(synthetic_year: list[Kline]) -> None:
    day = synthetic_year[:24]
    for overflow, expected in (("newest", day[-5:]), ("oldest", day[:5])):
        with FakeExchange({SERIES: day}, overflow=overflow) as fake:
            rows = get(fake, KLINE, symbol="BTCUSDT", interval="60", start=day[0].start_time,
                       end=day[-1].start_time, limit=5).json()["result"]["list"]
            assert [int(r[0]) for r in rows] == [k.start_time for k in reversed(expected)]
            only_start = get(fake, KLINE, symbol="BTCUSDT", interval="60", start=day[0].start_time, limit=2)
            assert [int(r[0]) for r in only_start.json()["result"]["list"]] == [day[1].start_time, day[0].start_time]
            assert get(fake, "/v5/market/orderbook").status_code == 404
    with FakeExchange({SERIES: synthetic_year[:300]}) as fake:
        assert len(get(fake, KLINE, symbol="BTCUSDT", interval="60").json()["result"]["list"]) == 200


def test_time_instruments_funding_and_inverse(fake: FakeExchange, synthetic_year: list[Kline]) -> None:
    clock = get(fake, "/v5/market/time").json()["result"]
    assert clock == {"timeSecond": "1704076923", "timeNano": "1704076923456000000"}
    item = get(fake, "/v5/market/instruments-info", category="linear", symbol="BTCUSDT").json()["result"]["list"][0]
    assert item["launchTime"] == str(synthetic_year[0].start_time) and item["fundingInterval"] == 480
    assert get(fake, "/v5/market/instruments-info", category="linear", symbol="NOPE").json()["result"]["list"] == []
    assert get(fake, "/v5/market/instruments-info").json()["retCode"] == 10001
    funding = get(fake, "/v5/market/funding/history", category="linear", symbol="BTCUSDT").json()["result"]["list"]
    assert [f["fundingRateTimestamp"] for f in funding] == ["1704067200000"]  # 08:00 is still to come
    only_start = get(fake, "/v5/market/funding/history", category="linear", symbol="BTCUSDT", startTime=0)
    assert only_start.json()["retCode"] == 10001
    inverse = get(fake, KLINE, category="inverse", symbol="BTCUSD", interval="60", start=synthetic_year[0].start_time,
                  end=synthetic_year[0].start_time).json()["result"]["list"][0]
    assert (float(inverse[5]), float(inverse[6])) == (synthetic_year[0].turnover, synthetic_year[0].volume)


def test_tickers_open_interest_and_premium_routes(fake: FakeExchange, synthetic_year: list[Kline]) -> None:
    # among the fake's routes; values follow the served candles
    now = 1_704_076_923_456  # 02:42:03.456: candles 00:00 and 01:00 closed, 02:00 open
    ticker = get(fake, "/v5/market/tickers", category="linear", symbol="BTCUSDT").json()["result"]["list"][0]
    seen = synthetic_year[:3]
    partial_close = float(ticker["lastPrice"])
    assert seen[2].low <= partial_close <= seen[2].high or partial_close == seen[2].open
    assert float(ticker["prevPrice24h"]) == seen[0].open
    assert float(ticker["highPrice24h"]) >= max(k.high for k in seen[:2])
    assert float(ticker["volume24h"]) > sum(k.volume for k in seen[:2])  # two closed and a partial one
    assert ticker["nextFundingTime"] == "1704096000000" and float(ticker["openInterest"]) > 0
    assert get(fake, "/v5/market/tickers", category="spot").json()["result"]["list"][0]["symbol"] == "BTCUSDT"
    assert get(fake, "/v5/market/tickers").json()["retCode"] == 10001
    oi = get(fake, "/v5/market/open-interest", category="linear", symbol="BTCUSDT", intervalTime="1h",
             limit=2).json()["result"]
    assert [row["timestamp"] for row in oi["list"]] == [str(now // HOUR * HOUR), str(now // HOUR * HOUR - HOUR)]
    following = get(fake, "/v5/market/open-interest", category="linear", symbol="BTCUSDT", intervalTime="1h",
                    limit=2, cursor=oi["nextPageCursor"]).json()["result"]
    assert [row["timestamp"] for row in following["list"]] == [str(synthetic_year[0].start_time)]  # back to the listing
    assert following["nextPageCursor"] == ""
    assert get(fake, "/v5/market/open-interest", category="linear", symbol="BTCUSDT",
               intervalTime="2h").json()["retCode"] == 10001
    premium = get(fake, "/v5/market/premium-index-price-kline", symbol="BTCUSDT", interval="60", limit=1)
    assert premium.json()["result"]["list"][0][1:] == ["0", "0", "0", "0"]


def test_numbers_are_plain_decimals_as_bybit_writes_them() -> None:
    from reformer.api._fake_market import fmt

    assert [fmt(v) for v in (-5e-05, 42000.0, 0.1, 1e-07, 123456789.125)] == \
        ["-0.00005", "42000", "0.1", "0.0000001", "123456789.125"]


def test_sync_client_against_a_threaded_fake(fake: FakeExchange, synthetic_year: list[Kline]) -> None:
    with SyncBybitClient(fake.base_url, rate_limit=None) as client:
        assert client.get_server_time() == fake.now_ms
        assert client.get_klines("BTCUSDT", "60") == synthetic_year[:2]
        fake.set_now(synthetic_year[23].start_time + HOUR)  # from this thread: blocks until applied
        pages = list(client.iter_kline_pages("BTCUSDT", "60", synthetic_year[0].start_time))
        assert pages == [synthetic_year[:24]]
        assert client.get_klines("BTCUSDT", "60", limit=3, category="spot") == synthetic_year[21:24]
        assert client.get_klines("BTCUSD", "60", limit=3, category="inverse") == synthetic_year[21:24]
        assert client.get_instrument_info("BTCUSDT").status == "Trading"
        funding = client.get_funding_history("BTCUSDT")  # 00:00, 08:00, 16:00 and the next 00:00 UTC
        assert [r.time_ms for r in funding] == [1704067200000 + i * 8 * HOUR for i in range(4)]
        with pytest.raises(InvalidSymbolError):
            client.get_klines("ETHUSDT", "60")
    with pytest.raises(UserInputError, match="back"):
        fake.set_now(0)


@pytest.mark.parametrize("fault", list(Fault))
def test_each_fault_looks_like_the_real_thing(fake: FakeExchange, fault: Fault) -> None:
    fake.faults.slow_delay = 0.3
    fake.inject(fault)
    try:
        response = get(fake, KLINE, symbol="BTCUSDT", interval="60")
    except httpx.TransportError:
        assert fault in (Fault.DROP, Fault.RESET)
    else:
        assert fault not in (Fault.DROP, Fault.RESET)
        expected_status = {Fault.TOO_MANY: 429, Fault.SERVER_ERROR: 500, Fault.UNAVAILABLE: 503, Fault.BANNED: 403}
        assert response.status_code == expected_status.get(fault, 200)
        if fault is Fault.BANNED:
            assert response.text == "access too frequent"
        if fault in (Fault.RATE_LIMIT, Fault.RATE_LIMIT_HEADERS):
            assert response.json()["retCode"] == 10006
            assert ("X-Bapi-Limit-Reset-Timestamp" in response.headers) == (fault is Fault.RATE_LIMIT_HEADERS)
        if fault is Fault.TRUNCATED:
            with pytest.raises(json.JSONDecodeError):
                response.json()
        if fault is Fault.EMPTY_LIST:
            assert response.json()["result"]["list"] == []
    assert [r.fault for r in fake.requests] == [fault]
    assert get(fake, KLINE, symbol="BTCUSDT", interval="60").json()["retCode"] == 0  # one-shot
    assert set(RETRYABLE_FAULTS) == set(Fault) - {Fault.BANNED, Fault.EMPTY_LIST}


def test_clock_only_moves_forward_and_async_lifecycle(synthetic_year: list[Kline]) -> None:
    async def scenario() -> None:
        async with FakeExchange({SERIES: synthetic_year[:5]}) as fake:
            assert fake.base_url.startswith("http://127.0.0.1:") and fake.ws_url.endswith("/v5/public")
            start = fake.now_ms
            await fake.advance(HOUR)
            assert fake.now_ms == start + HOUR
            with pytest.raises(UserInputError):
                await fake.advance_to(start)

    run(scenario())
    with pytest.raises(UserInputError):
        FakeExchange({})


def test_csv_loader_reads_the_shared_file(btc_klines: list[Kline]) -> None:
    assert len(btc_klines) == 49957
    assert btc_klines[0] == Kline(1585130400000, 6500.0, 6591.5, 6500.0, 6591.5, 0.004, 26.366)


def test_files_to_serve_read_through_the_data_layer(synthetic_csv: Path, synthetic_series: list[Kline],
                                                    tmp_path: Path) -> None:
    # the shared file's layout (a timestamp_string column beside the export columns) reads back exactly
    assert read_klines(synthetic_csv) == synthetic_series
    # an ordinary OHLCV file without turnover is served too (turnover NaN): the caller reads it, the fake serves
    plain = tmp_path / "plain.csv"
    plain.write_text("timestamp,open,high,low,close,volume\n1700000000000,2,3,1,2.5,6\n")
    (candle,) = read_klines(plain)
    assert candle[:6] == (1700000000000, 2.0, 3.0, 1.0, 2.5, 6.0) and math.isnan(candle.turnover)
    bad_value = tmp_path / "bad.csv"
    bad_value.write_text("timestamp,open,high,low,close,volume,turnover\n"
                         "1700000000000,2,3,1,2.5,6,7\n1700003600000,x,3,1,2.5,6,7\n")
    with pytest.raises(DataFormatError, match="line 3"):
        read_klines(bad_value)


def test_run_fake_exchange_serves_until_interrupted(synthetic_year: list[Kline], tmp_path: Path) -> None:
    small = write_shared_layout_csv(synthetic_year[:100], tmp_path / "btc.csv")
    code = ("from reformer.api.fake import run_fake_exchange; from reformer.data import read_klines; "
            f"run_fake_exchange(read_klines({str(small)!r}))")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        banner = [process.stdout.readline() for _ in range(3)]
        assert "100 BTCUSDT 60 candles" in banner[0]
        base_url = banner[1].strip().removeprefix("BYBIT_BASE_URL=")
        assert banner[2].startswith("BYBIT_WS_URL=ws://127.0.0.1:")
        with SyncBybitClient(base_url) as client:
            assert len(client.get_klines("BTCUSDT", "60")) == 99
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()

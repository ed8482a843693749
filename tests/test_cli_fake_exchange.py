"""`reformer fake-exchange` as a live market, run as a real process: its clock (`--start`, `--speed`), WebSocket
drops (`--drop-every`), REST faults (`--fault-rate`), the stop at the data's end, and its bad flags."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import cast

import httpx
import pytest

from reformer.api import BybitClient, BybitStream, Kline, SyncBybitClient
from reformer.cli import main
from reformer.data.csv_io import write_klines

MINUTE = 60_000
T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC
END = T0 + 60 * MINUTE  # the last candle's close
CLI = [sys.executable, "-m", "reformer.cli", "fake-exchange"]


@pytest.fixture(scope="module")
def candles() -> list[Kline]:
    """An hour of one-minute candles from 2024-01-01 00:00 UTC."""
    return [Kline(T0 + n * MINUTE, 100.0 + n, 102.5 + n, 99.0 + n, 101.0 + n, 1.5 + n, 150.0 + 100 * n)
            for n in range(60)]


@pytest.fixture
def csv(candles: list[Kline], tmp_path: Path) -> Path:
    path = tmp_path / "minutes.csv"
    write_klines(candles, path)
    return path


@contextlib.contextmanager
def served(*args: str) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """The command in a child process; yields it and its four banner lines, and stops it with Ctrl-C."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        banner = [proc.stdout.readline().rstrip("\n") for _ in range(4)]
        assert banner[1].startswith("BYBIT_BASE_URL="), (banner, proc.stderr.read() if proc.stderr else "")
        yield proc, banner
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def urls(banner: list[str]) -> tuple[str, str]:
    found = dict(line.partition("=")[::2] for line in banner if line.startswith("BYBIT_"))
    return found["BYBIT_BASE_URL"], found["BYBIT_WS_URL"]


async def stream_until(base_url: str, ws_url: str, since: int, last: int) -> tuple[list[Kline], int]:
    """Closed candles through the real stream, from `since` until the one opening at `last`; and its reconnects."""
    got: list[Kline] = []
    async with BybitClient(base_url, ws_url=ws_url, rate_limit=None, backoff_base=0.01, backoff_max=0.05) as client:
        stream = BybitStream("BTCUSDT", "1", client=client, since=since, reconnect_backoff=(0.01, 0.05))
        klines = cast(AsyncGenerator[Kline, None], aiter(stream))
        async with contextlib.aclosing(klines):
            async for kline in klines:
                got.append(kline)
                if kline.start_time >= last:
                    break
        return got, stream.reconnects


def test_a_live_market_with_drops_runs_to_the_data_end(csv: Path, candles: list[Kline]) -> None:
    with served("--csv", str(csv), "--interval", "1", "--start", "2024-01-01T00:40:00Z", "--speed", "600",
                "--drop-every", "0.4") as (proc, banner):
        assert banner[0] == "fake Bybit serving 60 BTCUSDT 1 candles"
        assert banner[3] == ("clock: starts at 2024-01-01 00:40:00 UTC (1704069600000 ms), 600x real time; the "
                             "data ends at 2024-01-01 01:00:00 UTC")
        base_url, ws_url = urls(banner)
        with SyncBybitClient(base_url, rate_limit=None) as client:
            early = client.get_klines("BTCUSDT", "1", limit=1000)
            now = client.get_server_time()
        assert early == candles[:len(early)] and len(early) >= 40
        assert early[-1].start_time + MINUTE <= now, "no candle served before the clock has closed it"
        # twenty minutes of market at 600x: two seconds, cut every 0.4 s
        got, reconnects = asyncio.run(asyncio.wait_for(
            stream_until(base_url, ws_url, T0 + 40 * MINUTE, candles[-1].start_time), 30))
        assert got == candles[40:], "every candle once, in order, across the drops"
        assert reconnects >= 1
        assert proc.stderr is not None
        lines: list[str] = []
        while "the market stops here" not in (lines or [""])[-1]:
            lines.append(proc.stderr.readline())
            assert lines[-1], f"the process ended first: {lines}"
        assert "clock reached the end of the data (2024-01-01 01:00:00 UTC" in lines[-1]
        with SyncBybitClient(base_url, rate_limit=None) as client:
            assert client.get_klines("BTCUSDT", "1", limit=1000) == candles, "all closed, none invented"
            assert client.get_server_time() == END
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=20)
    assert proc.returncode == 0 and "Traceback" not in rest
    assert sum("the market stops here" in line for line in [*lines, *rest.splitlines()]) == 1, "said once"
    assert any("dropped 1 WebSocket connection(s)" in line for line in [*lines, *rest.splitlines()])


def test_fault_rate_is_retried_through_and_a_still_clock_holds(csv: Path, candles: list[Kline]) -> None:
    start = T0 + 30 * MINUTE + 20_000
    with served("--csv", str(csv), "--interval", "1", "--start", str(start), "--speed", "0",
                "--fault-rate", "0.3") as (_, banner):
        assert banner[3].startswith("clock: starts at 2024-01-01 00:30:20 UTC (1704069020000 ms), held still;")
        base_url, _ = urls(banner)
        failed = 0
        with httpx.Client(base_url=base_url, timeout=5.0) as http:
            for _ in range(30):
                try:
                    answer = http.get("/v5/market/kline", params={"symbol": "BTCUSDT", "interval": "1"})
                    failed += answer.status_code != 200 or answer.json()["retCode"] != 0
                except (httpx.HTTPError, ValueError):  # a dropped, reset or truncated answer
                    failed += 1
        assert 3 <= failed <= 20, "about 30% of the requests fail"
        with SyncBybitClient(base_url, rate_limit=None, backoff_base=0.01, backoff_max=0.05) as client:
            assert client.get_klines("BTCUSDT", "1", limit=1000) == candles[:30], "retried through, as of the clock"


@pytest.mark.parametrize(("flags", "named"), [
    (["--speed", "-1"], "--speed -1.0: use 0"),
    (["--fault-rate", "1.5"], "--fault-rate 1.5 is not a fraction"),
    (["--drop-every", "0"], "--drop-every 0.0: use a period > 0"),
    (["--start", "2023-12-31"], "start 2023-12-31 00:00:00 UTC is outside the data"),
    (["--start", "yesterday"], "--start 'yesterday' is not a time"),
    (["--interval", "60"], "is not the open time of a 60 candle; is --interval 60 right"),  # served as another
])
def test_bad_flags_are_one_line_and_exit_2(csv: Path, flags: list[str], named: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fake-exchange", "--csv", str(csv), "--interval", "1", *flags]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and named in captured.err, captured.err
    assert "BYBIT_BASE_URL" not in captured.out, "refused before serving"


def test_correlated_synthetic_symbols_are_served_side_by_side() -> None:
    import numpy as np

    from reformer.api import SyncBybitClient

    with served("--synthetic", "--symbols", "BTCUSDT,ETHUSDT", "--bars", "600", "--speed", "0") as (_, banner):
        assert "serving 600 BTCUSDT, ETHUSDT 60 candles" in banner[0]
        base_url, _ = urls(banner)
        client = SyncBybitClient(base_url)
        btc, eth = (client.get_klines(symbol, "60", limit=500) for symbol in ("BTCUSDT", "ETHUSDT"))
    assert [k.start_time for k in btc] == [k.start_time for k in eth]
    returns = [np.diff(np.log([k.close for k in candles])) for candles in (btc, eth)]
    assert np.corrcoef(*returns)[0, 1] > 0.15  # one market factor in both

"""The data CLI as real processes and long-running commands: a fetch killed with SIGKILL and resumed,
`reformer stream` following the fake's clock and stopped with Ctrl-C, `reformer fake-exchange` served and
stopped with Ctrl-C."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from reformer.api import FakeExchange, Fault, FaultPlan, Kline
from reformer.cli import main
from reformer.data.csv_io import write_klines
from reformer.data.store import KlineStore
from reformer.data.sync import format_ms

KEY = ("linear", "BTCUSDT", "60")
YEAR_2024 = (1_704_067_200_000, 1_735_686_000_000)
KLINE_PATH = "/v5/market/kline"
CLI = [sys.executable, "-m", "reformer.cli"]
PATIENCE_S = 60.0  # safety net for the condition polls below (process start-up imports torch), never a pace


def cli(*args: object) -> int:
    return main([str(a) for a in args])


def stored_rows(db: Path) -> int:
    """Rows in the store as another process sees them (0 before the file and table exist)."""
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM klines").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen[bytes]) -> None:
    """Poll `condition` while `proc` runs; fail if the process ends first or the safety net expires."""
    deadline = time.monotonic() + PATIENCE_S
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"process ended first (exit {proc.returncode}): {proc.stderr.read() if proc.stderr else ''!r}")
        if time.monotonic() > deadline:
            pytest.fail("condition not met in time")
        time.sleep(0.02)


def test_a_fetch_killed_midway_resumes_with_only_the_missing_part(tmp_path: Path, synthetic_year: list[Kline]) -> None:
    db = tmp_path / "k.sqlite"
    # every kline answer takes 0.3 s, so the kill lands between pages
    slow = FaultPlan(rate=1.0, kinds=(Fault.SLOW,), slow_delay=0.3, paths=(KLINE_PATH,))
    # 2024's last candle is closed
    series = [*synthetic_year, synthetic_year[-1]._replace(start_time=YEAR_2024[1] + 3_600_000)]
    with FakeExchange({KEY: series}, faults=slow) as fake:
        args = ["fetch", "--symbol", "BTCUSDT", "--interval", "60", "--start", YEAR_2024[0], "--end",
                YEAR_2024[1], "--base-url", fake.base_url, "--db", db]
        proc = subprocess.Popen([*CLI, *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_for(lambda: stored_rows(db) > 0, proc)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        held = stored_rows(db)
        assert proc.returncode == -signal.SIGKILL
        assert 0 < held < 8784 and held % 1000 == 0, "whole pages only, and some still missing"

        fake.faults = FaultPlan()
        fake.clear_log()
        assert cli(*args) == 0
        windows = [(int(r.params["start"]), int(r.params["end"])) for r in fake.requests if r.path == KLINE_PATH]

    print(f"\nkilled with {held} rows stored; the rerun made {len(windows)} kline requests")
    assert len(windows) == -(-(8784 - held) // 1000)  # only the missing part, in full windows
    assert windows[0][0] == synthetic_year[held].start_time
    with KlineStore(db) as store:
        assert store.load(*KEY) == synthetic_year  # identical, and no duplicates (one row per open time)


def test_stream_prints_and_stores_three_closed_candles(tmp_path: Path, synthetic_year: list[Kline],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    day = synthetic_year[:48]
    db = tmp_path / "k.sqlite"

    async def scenario() -> int:
        async with FakeExchange({KEY: day}, now_ms=day[10].start_time + 1000) as fake:
            args = ["stream", "--symbol", "BTCUSDT", "--interval", "60", "--db", db, "--base-url", fake.base_url,
                    "--ws-url", fake.ws_url, "--max-candles", 3]
            command = asyncio.create_task(asyncio.to_thread(cli, *args))
            subscribed = asyncio.create_task(fake.wait_for_subscribers("BTCUSDT", "60"))
            await asyncio.wait({command, subscribed}, return_when=asyncio.FIRST_COMPLETED)
            assert not command.done(), f"stream ended before subscribing (exit {command.result()})"
            for candle in day[11:14]:  # each step closes the candle before it
                await fake.advance_to(candle.start_time + 1000)
            return await command

    assert asyncio.run(asyncio.wait_for(scenario(), PATIENCE_S)) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.endswith("stored")]
    assert [line[:16] for line in lines] == ["2024-01-01 10:00", "2024-01-01 11:00", "2024-01-01 12:00"]
    with KlineStore(db) as store:
        assert store.load(*KEY) == day[10:13]


def opened(candle: Kline) -> int:
    """A clock value just after `candle` opened (so the one before it has closed)."""
    return candle.start_time + 1000


def restart_stream(db: Path, served: list[Kline], stopped_after: int, now_index: int, max_candles: int) -> int:
    """`reformer stream` started on a store holding `served[:stopped_after]` while the fake's clock says candle
    `now_index` is open, then one more candle closing live; returns the exit code.

    A stream that does not resume would wait for `max_candles` live candles: after the safety net the clock runs on
    until it has them, so such a run ends (and its assertions fail) instead of hanging."""
    with KlineStore(db) as store:
        store.upsert(*KEY, served[:stopped_after])

    async def scenario() -> int:
        async with FakeExchange({KEY: served}, now_ms=opened(served[stopped_after])) as fake:
            await fake.advance_to(opened(served[now_index]))  # these close while no stream runs
            args = ["stream", "--symbol", "BTCUSDT", "--interval", "60", "--db", db, "--base-url", fake.base_url,
                    "--ws-url", fake.ws_url, "--max-candles", max_candles]
            command = asyncio.create_task(asyncio.to_thread(cli, *args))
            subscribed = asyncio.create_task(fake.wait_for_subscribers("BTCUSDT", "60"))
            await asyncio.wait({command, subscribed}, return_when=asyncio.FIRST_COMPLETED)
            assert not command.done(), f"stream ended before subscribing (exit {command.result()})"
            await fake.advance_to(opened(served[now_index + 1]))  # one candle closes live
            await asyncio.wait({command}, timeout=PATIENCE_S)
            for candle in served[now_index + 2:now_index + 2 + max_candles]:
                if command.done():
                    break
                await fake.advance_to(opened(candle))
            return await command

    return asyncio.run(asyncio.wait_for(scenario(), 3 * PATIENCE_S))


def test_a_restarted_stream_first_stores_what_closed_while_it_was_stopped(
        tmp_path: Path, synthetic_year: list[Kline], capsys: pytest.CaptureFixture[str]) -> None:
    hours = synthetic_year[:80]
    db = tmp_path / "k.sqlite"
    # stored up to 11:00; 25 candles close while no stream runs, then one more while it streams
    assert restart_stream(db, hours, stopped_after=12, now_index=37, max_candles=26) == 0
    out, err = capsys.readouterr()
    lines = [line for line in out.splitlines() if line.endswith("stored")]
    assert [line[:16] for line in lines] == [format_ms(k.start_time)[:16] for k in hours[12:38]]
    assert not any(line.endswith("already stored") for line in lines)
    assert f"from {format_ms(hours[12].start_time)}, after the last stored candle" in out
    with KlineStore(db) as store:
        assert store.load(*KEY) == hours[:38]  # every candle once: no hole, no duplicate
        assert store.gaps(*KEY) == []
    assert err == ""


def test_a_restarted_stream_names_the_candles_the_exchange_does_not_have(
        tmp_path: Path, synthetic_year: list[Kline], capsys: pytest.CaptureFixture[str]) -> None:
    hours = synthetic_year[:80]
    served = [*hours[:20], *hours[25:]]  # the exchange has nothing from 20:00 to 00:00 (maintenance)
    db = tmp_path / "k.sqlite"
    assert restart_stream(db, served, stopped_after=12, now_index=32, max_candles=21) == 0
    err = capsys.readouterr().err
    assert err == ("warning: the exchange has no BTCUSDT 60 linear candles from 2024-01-01 20:00 UTC to "
                   "2024-01-02 00:00 UTC (5 missing); the store keeps that gap\n")
    with KlineStore(db) as store:
        assert store.load(*KEY) == [*hours[:20], *hours[25:38]]
        assert store.gaps(*KEY) == [(hours[20].start_time, hours[24].start_time)]


def test_stream_stops_cleanly_on_ctrl_c(tmp_path: Path, synthetic_year: list[Kline]) -> None:
    """A user's Ctrl-C: SIGINT to a `reformer stream` process while candles keep closing on the fake."""
    db = tmp_path / "k.sqlite"
    with FakeExchange({KEY: synthetic_year}, now_ms=synthetic_year[0].start_time + 1000) as fake:
        proc = spawn("stream", "--symbol", "BTCUSDT", "--interval", "60", "--db", str(db), "--base-url",
                     fake.base_url, "--ws-url", fake.ws_url)
        try:
            read_until(proc, "streaming ")  # subscribed-to-be: the command has started its stream
            deadline = time.monotonic() + PATIENCE_S
            for candle in synthetic_year[1:]:
                # close one candle every 50 ms (pacing the fake's clock, not synchronising) until one is stored
                fake.set_now(candle.start_time + 1000)
                if stored_rows(db) > 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=PATIENCE_S)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, err
    with KlineStore(db) as store:
        stored = store.load(*KEY)
    assert stored and f"stopped after {len(stored)} closed candle(s)" in out
    first = synthetic_year.index(stored[0])
    assert stored == synthetic_year[first:first + len(stored)]


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def read_until(proc: subprocess.Popen[str], prefix: str) -> list[str]:
    """Lines of `proc`'s stdout up to the first starting with `prefix` (EOF fails, so this cannot hang)."""
    assert proc.stdout is not None
    lines: list[str] = []
    while not (lines and lines[-1].startswith(prefix)):
        line = proc.stdout.readline()
        assert line, f"process exited early: {proc.stderr.read() if proc.stderr else ''}"
        lines.append(line.rstrip("\n"))
    return lines


def test_fake_exchange_command_serves_a_csv_until_ctrl_c(tmp_path: Path, synthetic_year: list[Kline]) -> None:
    source = tmp_path / "day.csv"
    write_klines(synthetic_year[:48], source)
    db = tmp_path / "k.sqlite"
    proc = spawn("fake-exchange", "--csv", str(source), "--port", "0")
    try:
        urls = dict(line.partition("=")[::2] for line in read_until(proc, "BYBIT_WS_URL=") if line.startswith("BYBIT_"))
        assert cli("fetch", "--symbol", "BTCUSDT", "--interval", "60", "--limit", 10, "--db", db,
                   "--base-url", urls["BYBIT_BASE_URL"]) == 0
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=PATIENCE_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and "Traceback" not in err
    with KlineStore(db) as store:
        assert store.load(*KEY) == synthetic_year[37:47]  # the newest candle is still open on the fake's clock

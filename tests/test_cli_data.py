"""`reformer fetch / export / import` end to end: the fake exchange on loopback, a real SQLite store in tmp_path."""

from __future__ import annotations

import hashlib
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reformer.api import FakeExchange, FaultPlan, Kline
from reformer.cli import main
from reformer.data.csv_io import EXPORT_COLUMNS, read_klines, write_klines
from reformer.data.store import KlineStore

from .synthetic import Candles

HOUR = 3_600_000
KEY = ("linear", "BTCUSDT", "60")
YEAR_ARGS = ("--start", "2024-01-01T00:00:00Z", "--end", "2024-12-31T23:00:00Z")
YEAR_2024 = (1_704_067_200_000, 1_735_686_000_000)


def cli(*args: object) -> int:
    return main([str(a) for a in args])


def fetch_args(fake: FakeExchange | str, db: Path, *extra: object, symbol: str = "BTCUSDT",
               interval: str = "60") -> list[object]:
    url = fake if isinstance(fake, str) else fake.base_url
    return ["fetch", "--symbol", symbol, "--interval", interval, "--base-url", url, "--db", db, *extra]


def exported(db: Path, out: Path) -> list[Kline]:
    assert cli("export", "--symbol", "BTCUSDT", "--interval", "60", "--db", db, "--out", out) == 0
    if out.suffix == ".csv":
        assert out.read_text().splitlines()[0] == ",".join(EXPORT_COLUMNS)
    return read_klines(out)


@pytest.fixture(scope="module")
def small_fake(synthetic_year: list[Kline]) -> Iterator[FakeExchange]:
    with FakeExchange({KEY: synthetic_year[:100]}) as fake:
        yield fake


def test_a_year_fetched_and_exported_equals_the_source(tmp_path: Path, candle_source: Candles,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "k.sqlite"
    with FakeExchange({KEY: candle_source.klines}) as fake:
        began = time.perf_counter()
        assert cli(*fetch_args(fake, db, *YEAR_ARGS)) == 0
        seconds = time.perf_counter() - began
        requests = fake.count()
    out = capsys.readouterr().out
    with capsys.disabled():
        print(f"\nyear fetch via CLI: {requests} kline requests, {seconds:.2f} s")
    assert "+8784 rows in 9 kline request(s)" in out and "no gaps" in out
    # fast, counted rather than timed (shared CI cores): 9 pages and no retry, so no backoff pause either; the
    # rest is the client's rate limit (10 req/s, ~1.5 s on loopback)
    assert requests == 9
    assert exported(db, tmp_path / "year.csv") == candle_source.year


@pytest.mark.parametrize("seed", [4, 19])  # seeds whose draws hit this short run (4 and 6 faults, 9 kinds)
def test_a_year_with_15_percent_failed_requests_is_identical(tmp_path: Path, synthetic_series: list[Kline],
                                                            synthetic_year: list[Kline], seed: int) -> None:
    db = tmp_path / "k.sqlite"
    # retryable kinds the fake knows; SLOW answers outlast --timeout, so they time out and are retried
    plan = FaultPlan(rate=0.15, seed=seed, slow_delay=0.5)
    with FakeExchange({KEY: synthetic_series}, faults=plan) as fake:
        assert cli(*fetch_args(fake, db, *YEAR_ARGS, "--timeout", 0.25)) == 0
        faults = [r.fault for r in fake.requests if r.fault is not None]
    print(f"faults injected: {sorted(faults)}")
    assert len(faults) >= 3, "the seed should inject faults"
    assert exported(db, tmp_path / "year.csv") == synthetic_year


def test_import_of_the_shared_file_exports_it_back_exactly(tmp_path: Path, candle_source: Candles,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "k.sqlite"
    args = ("import", "--csv", candle_source.csv, "--symbol", "BTCUSDT", "--interval", "60", "--db", db)
    assert cli(*args) == 0
    assert f"+{len(candle_source.klines)} new" in capsys.readouterr().out
    assert exported(db, tmp_path / "out.parquet") == read_klines(candle_source.csv) == candle_source.klines


def test_import_of_an_ordinary_ohlcv_csv_reports_its_gaps(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "ohlcv.csv"
    hours = [0, 1, 2, 5, 6]  # 03:00 and 04:00 missing
    source.write_text("Date,Open,High,Low,Close,Volume\n" + "".join(
        f"2024-01-01 {h:02d}:00:00,{100 + h},{102 + h},{99 + h},{101 + h},{10 + h}\n" for h in hours))
    db = tmp_path / "k.sqlite"
    args = ("import", "--csv", source, "--symbol", "ethusdt", "--interval", "1h", "--db", db)
    assert cli(*args) == 0
    out = capsys.readouterr().out
    assert "+5 new" in out and "1 gap(s)" in out and "2024-01-01 03:00" in out and "2024-01-01 04:00" in out
    assert cli(*args) == 0
    assert "+0 new" in capsys.readouterr().out  # importing again changes nothing
    with KlineStore(db) as store:
        stored = store.load("linear", "ETHUSDT", "60")
        assert store.gaps("linear", "ETHUSDT", "60") == [(YEAR_2024[0] + 3 * HOUR, YEAR_2024[0] + 4 * HOUR)]
    assert [k.start_time for k in stored] == [YEAR_2024[0] + h * HOUR for h in hours]
    assert stored[0][:6] == (YEAR_2024[0], 100.0, 102.0, 99.0, 101.0, 10.0)
    out_csv = tmp_path / "eth.csv"
    assert cli("export", "--symbol", "ETHUSDT", "--interval", "60", "--db", db, "--out", out_csv) == 0
    assert out_csv.read_text().splitlines()[1].endswith(",10.0,")  # unknown turnover stays empty


def test_import_changes_stored_candles_only_with_replace(tmp_path: Path, synthetic_year: list[Kline],
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "k.sqlite"
    first = tmp_path / "first.csv"
    write_klines(synthetic_year[:20], first)
    assert cli("import", "--csv", first, "--symbol", "BTCUSDT", "--interval", "60", "--db", db) == 0
    # the same hours from another source: two candles differ, eighteen are identical, two are new
    other = [*synthetic_year[:22]]
    other[5] = other[5]._replace(close=other[5].close + 1.0)
    other[12] = other[12]._replace(volume=other[12].volume * 2)
    second = tmp_path / "second.csv"
    write_klines(other, second)
    capsys.readouterr()
    before = hashlib.sha256(db.read_bytes()).hexdigest()

    args = ("import", "--csv", second, "--symbol", "BTCUSDT", "--interval", "60", "--db", db)
    assert cli(*args) == 2
    err = capsys.readouterr().err
    assert err == (f"error: {second}: 2 of its candles are stored in {db} with other values (the first opens "
                   "2024-01-01 05:00 UTC); nothing was imported: pass --replace to overwrite them\n")
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before, "a refused import stores nothing"

    assert cli(*args, "--replace") == 0
    assert "+2 new, 2 replaced" in capsys.readouterr().out
    with KlineStore(db) as store:
        assert store.load(*KEY) == other
    assert cli(*args) == 0  # the same file again: identical candles are no conflict
    assert "+0 new" in capsys.readouterr().out


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed on leaving: nothing listens there


def malformed_csv(tmp_path: Path) -> Path:
    path = tmp_path / "bad.csv"
    path.write_text("timestamp,open,high,low,close,volume\n1704067200000,1,2,0.5,1.5,3\n1704070800000,x,2,1,1,1\n")
    return path


def off_grid_csv(tmp_path: Path) -> Path:
    path = tmp_path / "15m.csv"
    path.write_text("timestamp,open,high,low,close,volume\n1704067200000,1,2,0.5,1.5,3\n1704068100000,1,2,1,1,1\n")
    return path


def hourly_csv(tmp_path: Path) -> Path:
    path = tmp_path / "1h.csv"
    rows = "".join(f"{1704067200000 + i * 3_600_000},1,2,0.5,1.5,3\n" for i in range(5))
    path.write_text("timestamp,open,high,low,close,volume\n" + rows)
    return path


def funding_csv(tmp_path: Path) -> Path:
    path = tmp_path / "funding.csv"  # what `reformer export --what funding` writes
    rows = "".join(f"{1704067200000 + i * 28_800_000},0.0001\n" for i in range(3))
    path.write_text("timestamp,funding_rate\n" + rows)
    return path


Case = Callable[[FakeExchange, Path, Path], list[object]]  # (fake, db, tmp_path) -> argv
ERROR_CASES: dict[str, tuple[Case, str]] = {
    "unknown symbol": (lambda f, db, t: fetch_args(f, db, "--limit", 5, symbol="ETHUSDT"),
                       "unknown symbol 'ETHUSDT'"),
    "bad interval": (lambda f, db, t: fetch_args(f, db, "--limit", 5, interval="7"), "invalid interval '7'"),
    "monthly interval": (lambda f, db, t: fetch_args(f, db, "--limit", 5, interval="M"), "calendar month"),
    "start after end": (lambda f, db, t: fetch_args(f, db, "--start", "2024-02-01", "--end", "2024-01-01"),
                        "after end.*swap"),
    "unreadable time": (lambda f, db, t: fetch_args(f, db, "--start", "yesterday"), "--start 'yesterday'"),
    "zero limit": (lambda f, db, t: fetch_args(f, db, "--limit", 0), "at least 1"),
    "unreachable host": (lambda f, db, t: fetch_args(f"http://127.0.0.1:{closed_port()}", db, "--limit", 5,
                                                     "--retries", 0), "127.0.0.1.*--base-url"),
    "negative retries": (lambda f, db, t: fetch_args(f, db, "--limit", 5, "--retries", -1), "--retries -1"),
    "stream of an unknown symbol": (lambda f, db, t: ["stream", "--symbol", "ETHUSDT", "--interval", "60", "--db", db,
                                                      "--base-url", f.base_url, "--ws-url", f.ws_url],
                                    "unknown symbol 'ETHUSDT'"),
    "stream of no candles": (lambda f, db, t: ["stream", "--symbol", "BTCUSDT", "--interval", "60", "--db", db,
                                               "--max-candles", 0], "--max-candles 0"),
    "malformed csv": (lambda f, db, t: ["import", "--csv", malformed_csv(t), "--symbol", "BTCUSDT",
                                        "--interval", "60", "--db", db], "line 3, column 'open'"),
    "missing csv": (lambda f, db, t: ["import", "--csv", t / "nope.csv", "--symbol", "BTCUSDT",
                                      "--interval", "60", "--db", db], "no such file"),
    "csv of another interval": (lambda f, db, t: ["import", "--csv", off_grid_csv(t), "--symbol", "BTCUSDT",
                                                  "--interval", "60", "--db", db], "is --interval 60 right"),
    "hourly csv imported as 15-minute": (lambda f, db, t: ["import", "--csv", hourly_csv(t), "--symbol", "BTCUSDT",
                                                           "--interval", "15", "--db", db],
                                         "mostly 60 minutes apart, not 15.*--interval 60"),
    "funding file imported as candles": (lambda f, db, t: ["import", "--csv", funding_csv(t), "--symbol", "BTCUSDT",
                                                           "--interval", "60", "--db", db],
                                         "missing column 'open'.*import stores candles only.*--funding --mark"),
    "export of nothing": (lambda f, db, t: ["export", "--symbol", "ETHUSDT", "--interval", "60", "--db", db,
                                            "--out", t / "x.csv"], "no ETHUSDT 60 linear candles.*reformer fetch"),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_errors_are_one_line_exit_2_and_leave_the_store_alone(case: str, tmp_path: Path, synthetic_year: list[Kline],
                                                              small_fake: FakeExchange,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    build, match = ERROR_CASES[case]
    fresh = tmp_path / "fresh.sqlite"
    assert cli(*build(small_fake, fresh, tmp_path)) == 2
    assert not fresh.exists(), "a failed command must not create the store"
    capsys.readouterr()

    db = tmp_path / "k.sqlite"
    with KlineStore(db) as store:
        store.upsert(*KEY, synthetic_year[:10])
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    assert cli(*build(small_fake, db, tmp_path)) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err
    assert re.search(match, err), err
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert not (tmp_path / "x.csv").exists()

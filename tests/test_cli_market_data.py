"""`reformer fetch --funding --mark` and `reformer export --what funding|mark` end to end: the fake exchange on
loopback, a real SQLite store in tmp_path."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pandas as pd
import pytest

from reformer.api import FakeExchange, FundingRate, Kline
from reformer.api._fake_derivatives import mark_kline
from reformer.cli import main
from reformer.data import DerivativesStore
from reformer.data.csv_io import EXPORT_COLUMNS, read_klines

HOUR = 3_600_000
KEY = ("linear", "BTCUSDT", "60")
RANGE = ("--start", "2024-01-02T00:00:00Z", "--end", "2024-01-09T23:00:00Z")


def cli(*args: object) -> int:
    return main([str(a) for a in args])


def fetch(fake: FakeExchange, db: Path, *extra: object) -> int:
    return cli("fetch", "--symbol", "BTCUSDT", "--interval", "60", "--base-url", fake.base_url, "--db", db, *extra)


def export(db: Path, out: Path, *extra: object) -> int:
    return cli("export", "--symbol", "BTCUSDT", "--db", db, "--out", out, *extra)


def test_fetch_funding_and_mark_then_export_them(tmp_path: Path, synthetic_year: list[Kline],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "k.sqlite"
    month = synthetic_year[:24 * 31]
    week = month[24:24 * 9]  # the candles of the range asked for
    with FakeExchange({KEY: month}) as fake:
        assert fetch(fake, db, *RANGE, "--funding", "--mark") == 0
        served = [r for r in fake.market.funding("linear", "BTCUSDT")
                  if week[0].start_time <= r.time_ms <= week[-1].start_time + HOUR]
        out = capsys.readouterr().out
        assert "BTCUSDT 60 linear: +192 rows" in out and "BTCUSDT 60 linear mark: +192 rows" in out
        assert f"BTCUSDT linear funding: +{len(served)} settlements" in out and "regular grid" in out
        assert "BTCUSDT linear risk limits: 10 tiers, 100x up to 2,000,000" in out

        funding_csv = tmp_path / "funding.csv"
        assert export(db, funding_csv, "--what", "funding") == 0  # no --interval needed
        assert f"wrote {len(served)} funding rates (2024-01-02 00:00 UTC .. 2024-01-10 00:00 UTC)" \
            in capsys.readouterr().out
        lines = funding_csv.read_text().splitlines()
        assert lines[0] == "timestamp,funding_rate"
        assert [(int(t), float(r)) for t, r in (line.split(",") for line in lines[1:])] == \
            [(r.time_ms, r.rate) for r in served]  # exact: epoch ms and the rates as served

        mark_csv = tmp_path / "mark.parquet"
        assert export(db, mark_csv, "--what", "mark", "--interval", "1h") == 0
        frame = pd.read_parquet(mark_csv)
        assert list(frame.columns) == ["timestamp", "open", "high", "low", "close"]
        assert [tuple(row) for row in frame.itertuples(index=False)] == [mark_kline(k, HOUR, "BTCUSDT") for k in week]

        klines_csv = tmp_path / "klines.csv"
        assert export(db, klines_csv, "--interval", "60") == 0  # the default is still the candles, unchanged
        assert klines_csv.read_text().splitlines()[0] == ",".join(EXPORT_COLUMNS) and read_klines(klines_csv) == week

        # a later fetch of a longer range asks the exchange only for what is new
        fake.clear_log()
        assert fetch(fake, db, "--start", "2024-01-02T00:00:00Z", "--end", "2024-01-10T23:00:00Z", "--funding",
                     "--mark") == 0
        mark_windows = [(int(r.params["start"]), int(r.params["end"])) for r in fake.requests
                        if r.path == "/v5/market/mark-price-kline"]
        assert mark_windows == [(week[-1].start_time + HOUR, week[-1].start_time + 24 * HOUR)]
        out = capsys.readouterr().out
        assert "mark: +24 rows" in out and "funding: +3 settlements" in out and "+0 new, 0 changed" in out


def test_a_hole_in_the_exchange_s_funding_is_a_warning(tmp_path: Path, synthetic_year: list[Kline],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    days = synthetic_year[:24 * 6]
    settlements = [FundingRate(k.start_time, 1e-4) for k in days[::8]]
    del settlements[5]  # the exchange lost the settlement of 2024-01-02 16:00
    with FakeExchange({KEY: days}, funding={("linear", "BTCUSDT"): settlements}) as fake:
        assert fetch(fake, tmp_path / "k.sqlite", "--limit", 140, "--funding") == 0
    captured = capsys.readouterr()
    assert captured.err == ("warning: BTCUSDT linear funding settlements from 2024-01-02 08:00 UTC to 2024-01-03 "
                            "00:00 UTC are not on a regular 1, 4 or 8-hour grid (a missing settlement or an odd time); "
                            "the store keeps them as they are\n")
    assert "1 irregular stretch(es)" in captured.out and " mark:" not in captured.out  # only what was asked


ERRORS = {
    "spot with --funding": (lambda f, db, t: ["fetch", "--interval", 60, "--category", "spot", "--limit", 5,
                                              "--funding", "--base-url", f.base_url, "--db", db],
                            "--funding/--mark: spot markets have no funding or mark price; use --category linear"),
    "spot with --mark": (lambda f, db, t: ["fetch", "--interval", 60, "--category", "spot", "--limit", 5, "--mark",
                                           "--base-url", f.base_url, "--db", db],
                         "spot markets have no funding or mark price"),
    "unknown --what": (lambda f, db, t: ["export", "--what", "fundings", "--db", db, "--out", t / "x.csv"],
                       "--what 'fundings' is not a stored series: use klines, funding or mark"),
    "mark without --interval": (lambda f, db, t: ["export", "--what", "mark", "--db", db, "--out", t / "x.csv"],
                                "--what mark needs --interval"),
    "spot funding export": (lambda f, db, t: ["export", "--what", "funding", "--category", "spot", "--db", db,
                                              "--out", t / "x.csv"], "'spot' has no funding"),
    "export of no funding": (lambda f, db, t: ["export", "--what", "funding", "--db", db, "--out", t / "x.csv"],
                             r"holds no BTCUSDT linear funding rates; fetch them first: reformer fetch .* --funding"),
    "export of no mark": (lambda f, db, t: ["export", "--what", "mark", "--interval", "60", "--db", db, "--out",
                                            t / "x.csv"], r"holds no BTCUSDT 60 linear mark-price candles.* --mark"),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_errors_are_one_line_and_leave_the_store_alone(case: str, tmp_path: Path, synthetic_year: list[Kline],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    build, match = ERRORS[case]
    db = tmp_path / "k.sqlite"
    with FakeExchange({KEY: synthetic_year[:50], ("spot", "BTCUSDT", "60"): synthetic_year[:50]}) as fake:
        assert cli(*build(fake, tmp_path / "fresh.sqlite", tmp_path)) == 2
        assert not (tmp_path / "fresh.sqlite").exists(), "a failed command must not create the store"
        assert fake.count(None) == 0, "refused before any request"
        assert fetch(fake, db, "--limit", 10) == 0  # candles only
        capsys.readouterr()
        before = hashlib.sha256(db.read_bytes()).hexdigest()
        fake.clear_log()
        assert cli(*build(fake, db, tmp_path)) == 2
        assert fake.count(None) == 0
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err
    assert re.search(match, err), err
    if not case.startswith("export of no"):  # those open the store, which gains the perpetuals' tables
        assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize("what", ["funding", "mark"])
def test_export_out_is_checked_as_for_candles(what: str, tmp_path: Path, synthetic_year: list[Kline],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "k.sqlite"
    with FakeExchange({KEY: synthetic_year[:50]}) as fake:
        assert fetch(fake, db, "--limit", 20, f"--{what}") == 0
    out = tmp_path / "result.csv"
    out.write_text("earlier result")
    assert export(db, out, "--what", what, "--interval", "60") == 2
    assert f"{out} exists: pass --force" in capsys.readouterr().err and out.read_text() == "earlier result"
    link = tmp_path / "link.csv"
    link.symlink_to(out)
    assert export(db, link, "--what", what, "--interval", "60", "--force") == 2
    assert "symbolic link" in capsys.readouterr().err and out.read_text() == "earlier result"
    assert export(db, out, "--what", what, "--interval", "60", "--force") == 0
    with DerivativesStore(db) as store:
        stored = len(store.load_funding(*KEY[:2])) if what == "funding" else len(store.load_mark_klines(*KEY))
    assert len(out.read_text().splitlines()) == stored + 1 > 1

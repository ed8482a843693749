"""KlineStore: exact round trips, idempotent upserts, coverage, gaps and missing ranges, paths, errors."""

from __future__ import annotations

import math
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from reformer.api.types import Kline
from reformer.data.store import ConflictingCandlesError, Coverage, Inserted, KlineStore, SeriesInfo
from reformer.errors import DataFormatError, UserInputError

HOUR = 3_600_000
KEY = ("linear", "BTCUSDT", "60")


def make_klines(starts: list[int], seed: int = 0) -> list[Kline]:
    """Candles with awkward floats (many significant digits) so an inexact round trip would show."""
    rng = np.random.default_rng(seed)
    klines = []
    for start in starts:
        low, high = sorted(rng.uniform(10_000, 70_000, size=2).tolist())
        klines.append(Kline(start, rng.uniform(low, high), high, low, rng.uniform(low, high),
                            rng.uniform(0, 500), rng.uniform(0, 1e8)))
    return klines


@pytest.fixture
def store(tmp_path: Path):
    with KlineStore(tmp_path / "klines.sqlite") as opened:
        yield opened


def test_round_trip_is_exact_and_ascending(store: KlineStore) -> None:
    klines = make_klines([hour * HOUR for hour in range(500)])
    assert store.upsert(*KEY, reversed(klines)) == 500
    assert store.load(*KEY) == klines
    assert store.load(*KEY, start=10 * HOUR, end=12 * HOUR) == klines[10:13]  # inclusive bounds
    assert store.load("spot", "BTCUSDT", "60") == []


def test_load_frame_matches_load(store: KlineStore) -> None:
    klines = make_klines([hour * HOUR for hour in range(20)])
    store.upsert(*KEY, klines)
    frame = store.load_frame(*KEY, start=5 * HOUR)
    assert list(frame.columns) == ["timestamp", "open", "high", "low", "close", "volume", "turnover"]
    assert frame["timestamp"].dtype == np.int64
    assert [Kline(*row) for row in frame.itertuples(index=False)] == klines[5:]
    empty = store.load_frame(*KEY, start=100 * HOUR)
    assert len(empty) == 0 and empty["close"].dtype == np.float64


def test_unknown_turnover_reads_back_as_nan(store: KlineStore) -> None:
    store.upsert(*KEY, [Kline(0, 1.0, 2.0, 0.5, 1.5, 3.0, math.nan)])
    assert math.isnan(store.load(*KEY)[0].turnover)
    assert math.isnan(store.load_frame(*KEY)["turnover"].iloc[0])


def test_same_page_twice_adds_nothing(store: KlineStore) -> None:
    page = make_klines([hour * HOUR for hour in range(100)])
    assert store.upsert(*KEY, page) == 100
    assert store.upsert(*KEY, page) == 0
    assert store.coverage(*KEY) == Coverage(0, 99 * HOUR, 100)
    assert store.load(*KEY) == page


def test_changed_values_are_replaced_when_asked_and_counted_apart(store: KlineStore) -> None:
    page = make_klines([hour * HOUR for hour in range(10)])
    store.upsert(*KEY, page)
    revised = page[-1]._replace(close=page[-1].close + 1.0, volume=page[-1].volume * 2)
    extra = make_klines([10 * HOUR, 11 * HOUR], seed=1)
    assert store.insert(*KEY, [page[0], revised, *extra], replace=True) == Inserted(added=2, replaced=1)
    assert store.load(*KEY) == [*page[:-1], revised, *extra]
    assert store.upsert(*KEY, [revised], replace=True) == 0  # identical again: neither new nor replaced


def test_changed_values_are_refused_by_default_and_nothing_is_stored(store: KlineStore) -> None:
    page = make_klines([hour * HOUR for hour in range(10)])
    store.upsert(*KEY, [*page[:5], page[5]._replace(turnover=math.nan), *page[6:]])
    changed = [page[7]._replace(close=page[7].close + 0.5), page[3]._replace(high=page[3].high * 1.01)]
    extra = make_klines([10 * HOUR], seed=1)
    before = store.load(*KEY)
    with pytest.raises(ConflictingCandlesError, match=r"2 stored linear BTCUSDT 60 candle.*replace=True") as caught:
        store.insert(*KEY, [*page[:3], *changed, *extra])
    assert (caught.value.count, caught.value.first_start) == (2, 3 * HOUR)
    assert store.load(*KEY) == before, "a refused insert stores nothing, not even its new candles"
    # identical candles (an unknown turnover included) are no conflict
    assert store.insert(*KEY, [*before, *extra]) == Inserted(added=1, replaced=0)


def test_series_are_kept_apart(store: KlineStore) -> None:
    store.upsert(*KEY, make_klines([0, HOUR]))
    store.upsert("spot", "BTCUSDT", "60", make_klines([0]))
    store.upsert("linear", "ETHUSDT", "D", make_klines([0, 86_400_000, 2 * 86_400_000]))
    assert store.series() == [
        SeriesInfo("linear", "BTCUSDT", "60", 2, 0, HOUR),
        SeriesInfo("linear", "ETHUSDT", "D", 3, 0, 2 * 86_400_000),
        SeriesInfo("spot", "BTCUSDT", "60", 1, 0, 0),
    ]
    assert store.coverage("linear", "BTCUSDT", "1") is None


def test_gaps_between_stored_candles(store: KlineStore) -> None:
    hours = [0, 1, 2, 5, 6, 10, 11, 12]
    store.upsert(*KEY, make_klines([hour * HOUR for hour in hours]))
    assert store.gaps(*KEY) == [(3 * HOUR, 4 * HOUR), (7 * HOUR, 9 * HOUR)]
    assert store.gaps(*KEY, interval_ms=HOUR) == [(3 * HOUR, 4 * HOUR), (7 * HOUR, 9 * HOUR)]
    # the window only considers candles inside it: nothing before 5h or after 6h counts as a gap
    assert store.gaps(*KEY, start=5 * HOUR, end=6 * HOUR) == []
    assert store.gaps(*KEY, start=4 * HOUR) == [(7 * HOUR, 9 * HOUR)]
    assert store.gaps("spot", "BTCUSDT", "60") == []


def test_no_gaps_in_a_complete_series(store: KlineStore) -> None:
    store.upsert(*KEY, make_klines([hour * HOUR for hour in range(48)]))
    assert store.gaps(*KEY) == []


def test_missing_ranges_cover_edges_and_holes(store: KlineStore) -> None:
    hours = [3, 4, 5, 8, 9]
    store.upsert(*KEY, make_klines([hour * HOUR for hour in hours]))
    assert store.missing_ranges(*KEY, None, 0, 12 * HOUR) == [
        (0, 2 * HOUR), (6 * HOUR, 7 * HOUR), (10 * HOUR, 12 * HOUR)]
    assert store.missing_ranges(*KEY, HOUR, 3 * HOUR, 9 * HOUR) == [(6 * HOUR, 7 * HOUR)]
    assert store.missing_ranges(*KEY, None, 3 * HOUR, 5 * HOUR) == []
    # bounds off the grid round inwards: 2h+1ms -> 3h, 10h-1ms -> 9h
    assert store.missing_ranges(*KEY, None, 2 * HOUR + 1, 10 * HOUR - 1) == [(6 * HOUR, 7 * HOUR)]
    assert store.missing_ranges(*KEY, None, HOUR + 1, 2 * HOUR - 1) == []  # no candle opens in there
    assert store.missing_ranges("inverse", "BTCUSD", "60", None, 0, 2 * HOUR) == [(0, 2 * HOUR)]


def test_missing_ranges_then_fetching_them_completes_the_series(store: KlineStore) -> None:
    source = make_klines([hour * HOUR for hour in range(200)])
    rng = np.random.default_rng(3)
    store.upsert(*KEY, [kline for kline in source if rng.random() < 0.6])
    for first, last in store.missing_ranges(*KEY, None, 0, 199 * HOUR):
        store.upsert(*KEY, [kline for kline in source if first <= kline.start_time <= last])
    assert store.load(*KEY) == source
    assert store.missing_ranges(*KEY, None, 0, 199 * HOUR) == []


def test_missing_ranges_ignore_off_grid_rows_and_use_monday_weeks(store: KlineStore) -> None:
    store.upsert(*KEY, make_klines([HOUR + 17]))  # a stray row fills no grid slot
    assert store.missing_ranges(*KEY, None, 0, 2 * HOUR) == [(0, 2 * HOUR)]
    monday = 1_704_067_200_000  # 2024-01-01 00:00 UTC was a Monday
    week = 7 * 86_400_000
    assert store.missing_ranges("linear", "BTCUSDT", "W", None, monday - 1, monday + week) == [
        (monday, monday + week)]


def test_default_path_env_and_explicit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("REFORMER_DB", raising=False)
    with KlineStore() as default:
        assert default.path == tmp_path / "home" / ".reformer" / "klines.sqlite"
        assert default.path.is_file()
    monkeypatch.setenv("REFORMER_DB", str(tmp_path / "env" / "db.sqlite"))
    with KlineStore() as from_env:
        assert from_env.path == tmp_path / "env" / "db.sqlite"
    with KlineStore(tmp_path / "explicit.sqlite") as explicit:
        assert explicit.path == tmp_path / "explicit.sqlite"


def test_wal_mode_and_two_connections_see_each_other(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite"
    with KlineStore(path) as writer, KlineStore(path) as reader:
        writer.upsert(*KEY, make_klines([0, HOUR]))
        assert len(reader.load(*KEY)) == 2
        reader.upsert(*KEY, make_klines([2 * HOUR]))
        assert writer.coverage(*KEY) == Coverage(0, 2 * HOUR, 3)
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_failing_page_stores_nothing(store: KlineStore) -> None:
    good = make_klines([0, HOUR])
    bad = Kline(2 * HOUR, math.nan, 1.0, 1.0, 1.0, 1.0, 1.0)
    with pytest.raises(UserInputError, match=r"klines\[2\]\.open=nan"):
        store.upsert(*KEY, [*good, bad])
    assert store.coverage(*KEY) is None


@pytest.mark.parametrize(
    ("call", "pattern"),
    [
        (lambda s: s.upsert("futures", "BTCUSDT", "60", []), r"category='futures'.*spot, linear, inverse"),
        (lambda s: s.upsert("linear", "", "60", []), r"symbol=''"),
        (lambda s: s.load("linear", "BTCUSDT", "1h"), r"interval='1h'.*60"),
        (lambda s: s.upsert(*KEY, [Kline(1.5, 1, 1, 1, 1, 1, 1)]), r"start_time=1\.5"),
        (lambda s: s.upsert(*KEY, [(0, 1.0)]), r"klines\[0\] has 2 fields"),
        (lambda s: s.load(*KEY, start=5, end=4), r"start=5 is after end=4"),
        (lambda s: s.gaps(*KEY, interval_ms=60_000), r"interval_ms=60000 contradicts.*pass 3600000"),
        (lambda s: s.gaps("linear", "BTCUSDT", "M"), r"interval='M' has no fixed length"),
    ],
)
def test_bad_arguments_name_the_parameter(store: KlineStore, call, pattern: str) -> None:
    with pytest.raises(UserInputError, match=pattern):
        call(store)


def test_a_file_where_the_folder_should_be_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder")
    expected = rf"^{blocker} is a file, not a folder: check the path or choose another --db$"
    for path in (blocker / "k.sqlite", blocker / "sub" / "k.sqlite"):
        with pytest.raises(UserInputError, match=expected):
            KlineStore(path)
    assert blocker.read_text() == "a file, not a folder"


def test_a_foreign_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.sqlite"
    path.write_text("not a database, just text " * 100)
    with pytest.raises(DataFormatError, match=r"notes\.sqlite.*not a reformer kline store"):
        KlineStore(path)
    with pytest.raises(UserInputError, match="is a folder"):
        KlineStore(tmp_path)


def test_concurrent_writers_wait_instead_of_failing(tmp_path: Path) -> None:
    # Two connections in two threads lock the file exactly as two processes would.
    path = tmp_path / "busy.sqlite"
    KlineStore(path).close()  # create the schema once, before the race
    source = make_klines([hour * HOUR for hour in range(2_000)])
    errors: list[BaseException] = []

    def writer(offset: int) -> None:
        try:
            with KlineStore(path) as store:
                for first in range(offset * 100, len(source), 200):
                    store.upsert(*KEY, source[first:first + 100])
        except BaseException as exc:  # surfaced below; a thread cannot fail the test itself
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(offset,)) for offset in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with KlineStore(path) as store:
        assert store.load(*KEY) == source


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc, a folder SQLite cannot create a file in")
def test_a_place_sqlite_cannot_create_a_file_in_is_one_line() -> None:
    # /proc reads as writable to root, so the folder check passes and SQLite itself refuses (others are stopped by
    # the folder check)
    with pytest.raises(UserInputError, match=r"(store /proc/k\.sqlite cannot be opened for writing|folder /proc is "
                                             r"not writable).*choose another --db"):
        KlineStore("/proc/k.sqlite")

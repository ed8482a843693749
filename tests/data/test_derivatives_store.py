"""DerivativesStore: funding rates, mark-price candles and risk-limit tiers in the kline store's file: exact round
trips as pandas objects, idempotent inserts, changed values refused unless replaced, stores that predate the
tables, funding grids and mark holes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reformer.api.types import FundingRate, Kline, MarkKline, RiskLimitTier
from reformer.bars import bar_frame, times_to_ms
from reformer.data import ConflictingRowsError, DerivativesStore
from reformer.data.store import ConflictingCandlesError, Coverage, Inserted, KlineStore
from reformer.errors import UserInputError

from ..test_data_safety import digest, read_only, unprivileged

HOUR = 3_600_000
T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC
FUNDING_KEY = ("linear", "BTCUSDT")
MARK_KEY = ("linear", "BTCUSDT", "60")
TABLES = {"funding_rates", "mark_klines", "risk_limits"}


def settlements(count: int, every: int = 8 * HOUR, seed: int = 0) -> list[FundingRate]:
    rng = np.random.default_rng(seed)
    return [FundingRate(T0 + i * every, float(rng.normal(1e-4, 2e-4))) for i in range(count)]  # full-precision floats


def marks(count: int, seed: int = 0) -> list[MarkKline]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(count):
        low, high = sorted(rng.uniform(40_000, 45_000, size=2).tolist())
        rows.append(MarkKline(T0 + i * HOUR, rng.uniform(low, high), high, low, rng.uniform(low, high)))
    return rows


TIERS = [RiskLimitTier(n, 2e6 * n, 0.005 * n, 0.005 * (n + 1), round(1 / (0.005 * (n + 1)), 2)) for n in range(1, 6)]


@pytest.fixture
def store(tmp_path: Path):
    with DerivativesStore(tmp_path / "k.sqlite") as opened:
        yield opened


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_funding_round_trip_as_a_utc_series(store: DerivativesStore) -> None:
    rates = settlements(300)
    assert store.insert_funding(*FUNDING_KEY, reversed(rates)) == Inserted(300, 0)
    series = store.load_funding(*FUNDING_KEY)
    assert series.name == "funding_rate" and series.dtype == np.float64 and series.index.name == "time"
    assert isinstance(series.index, pd.DatetimeIndex) and str(series.index.tz) == "UTC"
    assert series.index[0] == pd.Timestamp("2024-01-01", tz="UTC")
    assert list(series.to_numpy()) == [r.rate for r in rates]  # exact, ascending
    assert list(times_to_ms(series.index)) == [r.time_ms for r in rates]
    part = store.load_funding(*FUNDING_KEY, start=rates[10].time_ms, end=rates[12].time_ms)
    assert list(part.to_numpy()) == [r.rate for r in rates[10:13]]  # inclusive bounds
    assert store.funding_coverage(*FUNDING_KEY) == Coverage(rates[0].time_ms, rates[-1].time_ms, 300)
    empty = store.load_funding("inverse", "BTCUSD")
    assert empty.empty and empty.dtype == np.float64 and isinstance(empty.index, pd.DatetimeIndex)
    assert store.funding_coverage("inverse", "BTCUSD") is None


def test_mark_round_trip_as_a_bar_frame(store: DerivativesStore) -> None:
    candles = marks(200)
    assert store.insert_mark_klines(*MARK_KEY, candles[::-1]) == Inserted(200, 0)
    assert store.load_mark_klines(*MARK_KEY) == candles
    frame = store.load_mark_frame(*MARK_KEY, start=candles[5].start_time)
    assert list(frame.columns) == ["open", "high", "low", "close"] and (frame.dtypes == np.float64).all()
    assert frame.index.name == "time" and str(frame.index.tz) == "UTC"
    assert [tuple(row) for row in frame.itertuples(index=False)] == [m[1:] for m in candles[5:]]
    pd.testing.assert_frame_equal(bar_frame(frame), frame)  # the bars' own layout: nothing to convert
    assert store.mark_coverage(*MARK_KEY) == Coverage(candles[0].start_time, candles[-1].start_time, 200)
    assert store.load_mark_frame(*MARK_KEY, start=10**13).empty
    # the candles live beside the traded ones, not among them
    assert store.load(*MARK_KEY) == [] and store.series() == []


def test_risk_tiers_round_trip_lowest_first(store: DerivativesStore) -> None:
    assert store.insert_risk_tiers(*FUNDING_KEY, reversed(TIERS)) == Inserted(5, 0)
    assert store.load_risk_tiers(*FUNDING_KEY) == TIERS
    assert store.load_risk_tiers("inverse", "BTCUSD") == []


def test_inserting_the_same_rows_again_changes_nothing(store: DerivativesStore) -> None:
    rates, candles = settlements(50), marks(50)
    store.insert_funding(*FUNDING_KEY, rates)
    store.insert_mark_klines(*MARK_KEY, candles)
    store.insert_risk_tiers(*FUNDING_KEY, TIERS)
    wal = store.path.with_name(store.path.name + "-wal")
    before = (digest(store.path), wal.stat().st_size)
    assert store.insert_funding(*FUNDING_KEY, rates[10:]) == Inserted(0, 0)
    assert store.insert_mark_klines(*MARK_KEY, candles) == Inserted(0, 0)
    assert store.insert_risk_tiers(*FUNDING_KEY, TIERS, replace=True) == Inserted(0, 0)
    assert (digest(store.path), wal.stat().st_size) == before, "an unchanged row is never rewritten"
    assert store.insert_funding(*FUNDING_KEY, settlements(60)) == Inserted(10, 0)  # only the new ones count


def test_a_changed_value_is_refused_unless_replace(store: DerivativesStore) -> None:
    rates, candles = settlements(20), marks(20)
    store.insert_funding(*FUNDING_KEY, rates)
    store.insert_mark_klines(*MARK_KEY, candles)
    revised = [*rates, FundingRate(rates[-1].time_ms + 8 * HOUR, 1e-4)]
    revised[7] = revised[7]._replace(rate=revised[7].rate + 1e-6)
    with pytest.raises(ConflictingRowsError, match=r"1 stored linear BTCUSDT funding settlement\(s\).*replace=True") \
            as refused:
        store.insert_funding(*FUNDING_KEY, revised)
    assert (refused.value.count, refused.value.first_start) == (1, rates[7].time_ms)
    assert isinstance(refused.value, ConflictingCandlesError) and isinstance(refused.value, UserInputError)
    assert list(store.load_funding(*FUNDING_KEY).to_numpy()) == [r.rate for r in rates], "all or nothing"
    assert store.insert_funding(*FUNDING_KEY, revised, replace=True) == Inserted(1, 1)
    assert list(store.load_funding(*FUNDING_KEY).to_numpy()) == [r.rate for r in revised]

    moved = [candles[3]._replace(close=candles[3].close * 1.001)]
    with pytest.raises(ConflictingRowsError, match="mark-price candle"):
        store.insert_mark_klines(*MARK_KEY, moved)
    assert store.load_mark_klines(*MARK_KEY) == candles
    assert store.insert_mark_klines(*MARK_KEY, moved, replace=True) == Inserted(0, 1)
    assert store.load_mark_klines(*MARK_KEY)[3] == moved[0]


def test_a_risk_table_is_one_snapshot(store: DerivativesStore) -> None:
    store.insert_risk_tiers(*FUNDING_KEY, TIERS)
    with pytest.raises(ConflictingRowsError, match="risk-limit tier"):  # a tier the new table no longer has
        store.insert_risk_tiers(*FUNDING_KEY, TIERS[:4])
    revised = [TIERS[0]._replace(max_leverage=50.0), *TIERS[1:4]]
    with pytest.raises(ConflictingRowsError) as refused:
        store.insert_risk_tiers(*FUNDING_KEY, revised)
    assert refused.value.count == 2 and refused.value.first_start == 1  # tier 1 changed, tier 5 gone
    assert store.load_risk_tiers(*FUNDING_KEY) == TIERS
    assert store.insert_risk_tiers(*FUNDING_KEY, revised, replace=True) == Inserted(0, 2)
    assert store.load_risk_tiers(*FUNDING_KEY) == revised
    extra = RiskLimitTier(9, 9e7, 0.1, 0.2, 5.0)
    assert store.insert_risk_tiers(*FUNDING_KEY, [*revised, extra]) == Inserted(1, 0)  # a new tier is no conflict


def test_a_store_written_before_the_tables_gains_them(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite"
    candles = [Kline(T0 + i * HOUR, 1.0, 2.0, 0.5, 1.5, 3.0, 4.0) for i in range(5)]
    with KlineStore(db) as old:  # what this store looked like before: klines only
        old.upsert(*MARK_KEY, candles)
    assert tables(db) == {"klines"}
    with DerivativesStore(db) as store:
        assert tables(db) == {"klines"} | TABLES
        assert store.load(*MARK_KEY) == candles  # the candles are untouched
        assert store.load_funding(*FUNDING_KEY).empty and store.load_risk_tiers(*FUNDING_KEY) == []
        store.insert_funding(*FUNDING_KEY, settlements(3))
    with KlineStore(db) as reopened:  # and the plain kline store still opens it
        assert reopened.load(*MARK_KEY) == candles
    with DerivativesStore(db) as again:
        assert len(again.load_funding(*FUNDING_KEY)) == 3


def test_a_read_only_store_without_the_tables_reads_as_empty(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite"
    with KlineStore(db) as old:
        old.upsert(*MARK_KEY, [Kline(T0, 1.0, 2.0, 0.5, 1.5, 3.0, 4.0)])
    before = digest(db)

    def attempts() -> list[object]:
        with DerivativesStore(db) as store:
            seen: list[object] = [store.read_only, len(store.load(*MARK_KEY)), len(store.load_funding(*FUNDING_KEY)),
                                  len(store.load_mark_frame(*MARK_KEY)), store.load_risk_tiers(*FUNDING_KEY),
                                  store.funding_irregular(*FUNDING_KEY), store.mark_gaps(*MARK_KEY)]
            try:
                store.insert_funding(*FUNDING_KEY, settlements(2))
            except UserInputError as exc:
                seen.append(str(exc))
            return seen

    with read_only(db):
        seen = unprivileged(attempts)
    assert seen[:7] == [True, 1, 0, 0, [], [], []]
    assert seen[7] == f"the store {db} is read-only: choose another --db or fix its permissions"
    assert digest(db) == before and tables(db) == {"klines"}


def test_funding_irregular_names_missing_settlements_and_odd_times(store: DerivativesStore) -> None:
    rates = settlements(30)
    kept = rates[:10] + rates[11:20] + [FundingRate(rates[20].time_ms + 30 * 60_000, 1e-4)] + rates[21:]
    store.insert_funding(*FUNDING_KEY, kept)
    assert store.funding_irregular(*FUNDING_KEY) == [
        (rates[9].time_ms, rates[11].time_ms),  # 16 hours: one settlement missing
        (rates[19].time_ms, rates[21].time_ms),  # 20:30 and back: the two spacings merge into one stretch
    ]
    assert store.funding_irregular(*FUNDING_KEY, start=rates[12].time_ms) == [(rates[19].time_ms, rates[21].time_ms)]
    assert store.funding_irregular(*FUNDING_KEY, start=rates[11].time_ms, end=rates[11].time_ms) == \
        [(rates[9].time_ms, rates[11].time_ms)]  # the settlement before `start` counts


@pytest.mark.parametrize("every", [1, 4, 8])
def test_regular_grids_and_interval_changes_are_not_irregular(store: DerivativesStore, every: int) -> None:
    store.insert_funding(*FUNDING_KEY, settlements(50, every * HOUR))
    last = T0 + 49 * every * HOUR
    store.insert_funding(*FUNDING_KEY, [FundingRate(last + n * HOUR, 1e-4) for n in range(1, 10)])  # then hourly
    assert store.funding_irregular(*FUNDING_KEY) == []
    store.insert_funding(*FUNDING_KEY, [FundingRate(last + 9 * HOUR + 3 * HOUR, 1e-4)])  # 3 hours: no grid
    assert store.funding_irregular(*FUNDING_KEY) == [(last + 9 * HOUR, last + 12 * HOUR)]


def test_mark_holes_and_missing_ranges(store: DerivativesStore) -> None:
    candles = marks(48)
    store.insert_mark_klines(*MARK_KEY, candles[:10] + candles[13:40])
    assert store.mark_gaps(*MARK_KEY) == [(T0 + 10 * HOUR, T0 + 12 * HOUR)]
    assert store.mark_missing_ranges(*MARK_KEY, T0 - HOUR // 2, T0 + 47 * HOUR) == [
        (T0 + 10 * HOUR, T0 + 12 * HOUR), (T0 + 40 * HOUR, T0 + 47 * HOUR)]
    assert store.missing_ranges(*MARK_KEY, None, T0, T0 + HOUR) == [(T0, T0 + HOUR)], "klines are another table"


@pytest.mark.parametrize(("call", "match"), [
    (lambda s: s.insert_funding("spot", "BTCUSDT", [(T0, 1e-4)]), "'spot' has no funding"),
    (lambda s: s.load_funding("spot", "BTCUSDT"), "'spot' has no funding"),
    (lambda s: s.insert_funding(*FUNDING_KEY, [(T0, float("nan"))]), r"rate=nan must be a finite number"),
    (lambda s: s.insert_funding(*FUNDING_KEY, [(T0 + 0.5, 1e-4)]), "must be an integer"),
    (lambda s: s.insert_mark_klines(*MARK_KEY, [(T0, 2.0, 1.0, 1.5, 1.2)]), "high 1.0 is below low 1.5"),
    (lambda s: s.insert_mark_klines(*MARK_KEY, [(T0, 0.0, 1.0, 0.5, 0.7)]), r"open=0.0 must be a finite number > 0"),
    (lambda s: s.insert_mark_klines(*MARK_KEY, [(T0, 1.0, 1.0, 1.0)]), "has 4 fields"),
    (lambda s: s.insert_mark_klines("linear", "BTCUSDT", "7", marks(1)), "interval='7'"),
    (lambda s: s.insert_risk_tiers(*FUNDING_KEY, [RiskLimitTier(1, -5.0, 0.005, 0.01, 100.0)]), "risk_limit_value"),
])
def test_bad_rows_are_one_line_errors_and_store_nothing(store: DerivativesStore, call, match: str) -> None:
    with pytest.raises(UserInputError, match=match) as refused:
        call(store)
    assert "\n" not in str(refused.value)
    assert store.funding_coverage(*FUNDING_KEY) is None and store.mark_coverage(*MARK_KEY) is None

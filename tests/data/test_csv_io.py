"""CSV / Parquet import and export: exact round trips of files in the shared BTC file's layout (synthetic and real
candles), format detection, atomic writes."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reformer.api.types import Kline
from reformer.data.csv_io import EXPORT_COLUMNS, read_klines, read_klines_frame, write_klines
from reformer.errors import DataFormatError, UserInputError

from ..synthetic import Candles

HOUR = 3_600_000
JAN_2024 = 1_704_067_200_000  # 2024-01-01 00:00 UTC
JAN_2025 = 1_735_689_600_000


@pytest.fixture(scope="module")
def btc_frame(candle_source: Candles) -> pd.DataFrame:
    return read_klines_frame(candle_source.csv)


def test_shared_file_reads_exactly(candle_source: Candles, btc_frame: pd.DataFrame) -> None:
    # The reference: Python's own float() of every cell, via the csv module.
    with open(candle_source.csv, newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == [*EXPORT_COLUMNS, "timestamp_string"]
    expected = [Kline(int(row[0]), *map(float, row[1:7])) for row in rows[1:]]
    assert len(btc_frame) == len(expected) == len(candle_source.klines)
    assert list(btc_frame.columns) == list(EXPORT_COLUMNS)
    assert btc_frame["timestamp"].dtype == np.int64
    assert read_klines(candle_source.csv) == expected == candle_source.klines


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_whole_shared_file_round_trips(tmp_path: Path, btc_frame: pd.DataFrame, suffix: str) -> None:
    target = tmp_path / f"btc{suffix}"
    assert write_klines(btc_frame, target) == len(btc_frame)
    pd.testing.assert_frame_equal(read_klines_frame(target), btc_frame, check_exact=True)


def test_year_2024_round_trips_through_klines(tmp_path: Path, btc_frame: pd.DataFrame) -> None:
    year = btc_frame[(btc_frame["timestamp"] >= JAN_2024) & (btc_frame["timestamp"] < JAN_2025)]
    klines = [Kline(*row) for row in year.itertuples(index=False)]
    assert len(klines) == 8_784  # 366 days x 24 hours, no gaps
    target = tmp_path / "2024.csv"
    write_klines(reversed(klines), target)  # any order in, ascending out
    assert read_klines(target) == klines
    lines = target.read_text().splitlines()
    assert lines[0] == "timestamp,open,high,low,close,volume,turnover"
    assert lines[1].startswith(f"{JAN_2024},")


def test_export_text_is_plain(tmp_path: Path) -> None:
    target = tmp_path / "k.csv"
    write_klines([Kline(JAN_2024, 0.1 + 0.2, 2.0, 0.25, 1.0, 3.0, math.nan)], target)
    assert target.read_text() == (
        "timestamp,open,high,low,close,volume,turnover\n1704067200000,0.30000000000000004,2.0,0.25,1.0,3.0,\n"
    )
    assert math.isnan(read_klines(target)[0].turnover)


def write_text(tmp_path: Path, text: str, name: str = "in.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("header", "first", "second"),
    [
        ("timestamp", "1704067200000", "1704070800000"),  # ms
        ("Time", "1704067200", "1704070800"),  # seconds, any case
        ("open_time", "1704067200.0", "1704070800.0"),  # seconds as floats
        ("date", "2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z"),
        ("Datetime", "2024-01-01 00:00:00", "2024-01-01 01:00:00"),  # naive = UTC
        ("start_time", "2024-01-01T02:00:00+02:00", "2024-01-01T01:00:00.000+00:00"),  # offsets
    ],
)
def test_time_column_units_and_names(tmp_path: Path, header: str, first: str, second: str) -> None:
    path = write_text(tmp_path, f"{header},Open,HIGH,low,close,volume\n{second},2,3,1,2,5\n{first},1,2,0.5,1.5,4\n")
    frame = read_klines_frame(path)
    assert frame["timestamp"].tolist() == [JAN_2024, JAN_2024 + HOUR]
    assert frame["open"].tolist() == [1.0, 2.0]
    assert frame["turnover"].isna().all()  # absent turnover stays unknown, never invented


def test_extra_columns_blank_lines_and_exact_duplicates_are_tolerated(tmp_path: Path) -> None:
    path = write_text(tmp_path, (
        "symbol,timestamp,open,high,low,close,volume,turnover\n"
        "BTC,1704067200000,1,2,0.5,1.5,4,6\n\n"
        "BTC,1704067200000,1,2,0.5,1.5,4,6\n"
        "BTC,1704070800000,2,3,1,2,5,\n"
    ))
    klines = read_klines(path)
    assert [kline.start_time for kline in klines] == [JAN_2024, JAN_2024 + HOUR]
    assert klines[0].turnover == 6.0 and math.isnan(klines[1].turnover)


GOOD = "1704067200000,1,2,0.5,1.5,4,6"
HEADER = "timestamp,open,high,low,close,volume,turnover"


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("", r"the file is empty"),
        (HEADER + "\n", r"no data rows"),
        ("timestamp,open,high,low,close\n1704067200000,1,2,0.5,1.5\n", r"missing column 'volume'"),
        ("when,open,high,low,close,volume\n1,1,2,0.5,1.5,4\n", r"no time column .*timestamp, start_time"),
        (f"{HEADER}\n{GOOD}\n1704070800000,1,2,abc,1.5,4,6\n", r"line 3, column 'low': 'abc' is not a finite number"),
        (f"{HEADER}\n{GOOD}\n1704070800000,1,2,,1.5,4,6\n", r"line 3, column 'low': empty \(or NaN\) is not a finite"),
        (f"{HEADER}\n{GOOD}\n1704070800000,1,2,0.5,1.5,inf,6\n", r"line 3, column 'volume': inf is not a finite"),
        (f"{HEADER}\n{GOOD}\n\n1704070800000,1,0.4,0.5,1.5,4,6\n", r"line 4, column 'high': 0.4 is below low"),
        (f"{HEADER}\n{GOOD}\n1704070800000,0,2,0.5,1.5,4,6\n", r"line 3, column 'open': 0.0 is not > 0"),
        (f"{HEADER}\n{GOOD}\n1704070800000,1,2,0.5,-1.5,4,6\n", r"line 3, column 'close': -1.5 is not > 0"),
        (f"{HEADER}\n{GOOD}\n1704070800000,1,2,0.5,1.5,-4,6\n", r"line 3, column 'volume': -4.0 is negative"),
        (f"{HEADER}\n{GOOD}\n1704070800000,1,2,0.5,1.5,4,-6\n", r"line 3, column 'turnover': -6.0 is negative"),
        (f"{HEADER}\n{GOOD}\n1704067200000,1,2,0.5,1.6,4,6\n", r"lines? 2 and line 3 both have timestamp"),
        (f"{HEADER}\n{GOOD}\n1704070800,1,2,0.5,1.5,4,6\n", r"line 3, column 'timestamp': 1704070800 is in seconds"),
        (f"{HEADER}\n1704067200000000,1,2,0.5,1.5,4,6\n", r"line 2, .*micro- or nanoseconds"),
        (f"{HEADER}\n1704067200000.5,1,2,0.5,1.5,4,6\n", r"line 2, .*not a whole number of milliseconds"),
        (f"{HEADER}\n-5,1,2,0.5,1.5,4,6\n", r"line 2, .*not a positive epoch time"),
        (f"{HEADER}\n,1,2,0.5,1.5,4,6\n", r"line 2, column 'timestamp': empty \(or NaN\) is not a finite number"),
        ("date,open,high,low,close,volume\n2024-01-01,1,2,0.5,1.5,4\n01.02.2024 10:00,1,2,0.5,1.5,4\n",
         r"line 3, column 'date' has '01.02.2024 10:00', not an ISO-8601"),
        ("timestamp,Open,open,high,low,close,volume\n", r"columns 'Open' and 'open' clash"),
        (f"{HEADER}\n{GOOD}\n{GOOD},7,8\n", r"not a readable CSV \(.*line 3.*\); save it as plain"),
    ],
)
def test_malformed_files_give_one_line_naming_the_place(tmp_path: Path, text: str, pattern: str) -> None:
    path = write_text(tmp_path, text, name="bad.csv")
    with pytest.raises(DataFormatError, match=pattern) as caught:
        read_klines(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    assert "; " in message  # a fix follows the problem


def test_missing_file_and_unreadable_parquet(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match=r"nope\.csv: no such file"):
        read_klines(tmp_path / "nope.csv")
    with pytest.raises(DataFormatError, match=r"junk\.parquet: not a readable Parquet file"):
        read_klines(write_text(tmp_path, "junk", name="junk.parquet"))


def test_parquet_with_datetime_column_is_read(tmp_path: Path) -> None:
    path = tmp_path / "dt.parquet"
    pd.DataFrame({
        "Date": pd.to_datetime([JAN_2024 + HOUR, JAN_2024], unit="ms"),  # naive = UTC
        "open": [2.0, 1.0], "high": [3.0, 2.0], "low": [1.0, 0.5], "close": [2.0, 1.5], "volume": [5.0, 4.0],
    }).to_parquet(path)
    assert read_klines_frame(path)["timestamp"].tolist() == [JAN_2024, JAN_2024 + HOUR]


def test_write_refuses_unknown_suffix_and_bad_rows(tmp_path: Path) -> None:
    klines = [Kline(JAN_2024, 1.0, 2.0, 0.5, 1.5, 4.0, 6.0)]
    with pytest.raises(DataFormatError, match=r"unsupported suffix '\.txt'; use one of \.csv, \.parquet"):
        write_klines(klines, tmp_path / "out.txt")
    with pytest.raises(DataFormatError, match=r"klines to write: row 2, column 'high'"):
        write_klines([*klines, Kline(JAN_2024 + HOUR, 1.0, 0.1, 0.5, 1.5, 4.0, 6.0)], tmp_path / "out.csv")
    assert list(tmp_path.iterdir()) == []
    folder = tmp_path / "exports.csv"  # a directory, even with a file-like name
    folder.mkdir()
    with pytest.raises(UserInputError, match=r"exports\.csv is a directory; name a file in it, e\.g\. .*klines\.csv"):
        write_klines(klines, folder)


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "sub" / "out.csv"
    write_klines([Kline(JAN_2024, 1.0, 2.0, 0.5, 1.5, 4.0, 6.0)], target)  # creates the folder
    before = target.read_bytes()

    def crash(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_klines([Kline(JAN_2024, 9.0, 9.0, 9.0, 9.0, 9.0, 9.0)], target)
    assert target.read_bytes() == before
    assert [path.name for path in target.parent.iterdir()] == ["out.csv"]


def test_parquet_needs_pyarrow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserInputError, match=r"needs pyarrow"):
        write_klines([Kline(JAN_2024, 1.0, 2.0, 0.5, 1.5, 4.0, 6.0)], tmp_path / "out.parquet")


@pytest.mark.parametrize("separator", [";", "\t"])
def test_semicolon_and_tab_separated_files_read_as_the_comma_file(tmp_path: Path, separator: str) -> None:
    # spreadsheets in many locales save "CSV" with semicolons; the separator is taken from the header
    rows = [HEADER, GOOD, "1704070800000,2,3,1,2,5,7"]
    comma = write_text(tmp_path, "\n".join(rows) + "\n", name="comma.csv")
    other = write_text(tmp_path, "\n".join(row.replace(",", separator) for row in rows) + "\n", name="other.csv")
    pd.testing.assert_frame_equal(read_klines_frame(other), read_klines_frame(comma), check_exact=True)


def test_a_nan_cell_is_named_as_empty_or_nan(tmp_path: Path) -> None:
    path = write_text(tmp_path, f"{HEADER}\n{GOOD}\n1704070800000,1,2,0.5,nan,4,6\n", name="nan.csv")
    with pytest.raises(DataFormatError,
                       match=r"line 3, column 'close': empty \(or NaN\) is not a finite number; fix or delete"):
        read_klines(path)

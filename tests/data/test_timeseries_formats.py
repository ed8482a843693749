"""`load_timeseries_csv` on the date forms, encodings and header mistakes of files saved outside this tool: each is
read right, or refused with one line naming the problem and the fix."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reformer.data.timeseries import load_timeseries_csv
from reformer.errors import DataFormatError

JULY_1 = 1_467_331_200_000
"""2016-07-01 00:00 UTC in epoch ms (ETTh1's first row)."""
HOUR = 3_600_000
DAY = 24 * HOUR


def _series_file(tmp_path: Path, dates: Sequence[str], header: str = "date,OT", sep: str = ",") -> Path:
    path = tmp_path / "series.csv"
    rows = [f"{date}{sep}{i + 0.5}" for i, date in enumerate(dates)]
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _hours(count: int, fmt: str, start: str = "2016-07-01") -> list[str]:
    return list(pd.date_range(start, periods=count, freq="h").strftime(fmt))


def _stamps(path: Path) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # pandas' warnings about guessed formats would reach the CLI
        series = load_timeseries_csv(path, target="OT")
    assert series.timestamps is not None
    return series.timestamps


def _error(path: Path) -> str:
    with pytest.raises(DataFormatError) as info:
        load_timeseries_csv(path, target="OT")
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message
    return message


# --- day-first and month-first text dates -----------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["%d.%m.%Y %H:%M", "%d/%m/%Y %H:%M", "%d-%m-%Y %H:%M:%S"])
@pytest.mark.parametrize("rows", [288, 400])  # days 1-12 only (both orders read every row), then days 13+ too
def test_day_first_dates_read_day_first(tmp_path: Path, fmt: str, rows: int) -> None:
    stamps = _stamps(_series_file(tmp_path, _hours(rows, fmt)))
    assert stamps[:2].tolist() == [JULY_1, JULY_1 + HOUR]
    assert (np.diff(stamps) == HOUR).all() and len(stamps) == rows


def test_day_first_dates_parsed_cell_by_cell(tmp_path: Path) -> None:
    # pandas infers no format for "01/07/2016 12:00 AM" and falls back to dateutil, which swaps day and month only
    # where the day is over 12: read month-first the rows jump from December back to July
    stamps = _stamps(_series_file(tmp_path, _hours(300, "%d/%m/%Y %I:%M %p")))
    assert stamps[:2].tolist() == [JULY_1, JULY_1 + HOUR] and (np.diff(stamps) == HOUR).all()


def test_day_first_daily_rows(tmp_path: Path) -> None:
    # month-first these are 7 January, 7 February, ...: steps of 29 to 31 days, against 1 day day-first
    dates = list(pd.date_range("2016-07-01", periods=12, freq="D").strftime("%d.%m.%Y"))
    assert _stamps(_series_file(tmp_path, dates)).tolist() == [JULY_1 + k * DAY for k in range(12)]


def test_month_first_dates_still_read_month_first(tmp_path: Path) -> None:
    # US dates with days 1-12 only: month-first is the evenly spaced reading
    stamps = _stamps(_series_file(tmp_path, _hours(288, "%m/%d/%Y %H:%M")))
    assert stamps[:2].tolist() == [JULY_1, JULY_1 + HOUR] and (np.diff(stamps) == HOUR).all()
    days = list(pd.date_range("2016-07-13", periods=3, freq="D").strftime("%m/%d/%Y"))  # day 13+: month-first only
    assert _stamps(_series_file(tmp_path, days)).tolist() == [JULY_1 + k * DAY for k in range(12, 15)]


def test_ambiguous_dates_refused(tmp_path: Path) -> None:
    # 1 and 2 July, or 7 January and 7 February: both run forward with one step
    message = _error(_series_file(tmp_path, ["01.07.2016", "02.07.2016"]))
    assert "line 2, column 'date': '01.07.2016'" in message
    assert "month-first and day-first" in message and "YYYY-MM-DD" in message


@pytest.mark.parametrize(("dates", "first", "step"), [
    (["2016-07-01 00:00:00", "2016-07-01 01:00:00"], JULY_1, HOUR),
    (["2016-07-01T00:00:00Z", "2016-07-01T01:00:00Z"], JULY_1, HOUR),
    (["2016-07-01 02:00:00+02:00", "2016-07-01 03:00:00+02:00"], JULY_1, HOUR),  # converted to UTC
    (["2016/07/01 00:00", "2016/07/01 01:00"], JULY_1, HOUR),
    (["2016-07-01", "2016-07-02"], JULY_1, DAY),  # year-first is never read day-first (2016-01-07)
    (["2016-07-01", "2016-08-01"], JULY_1, 31 * DAY),
    (["07/13/2016 00:00", "07/13/2016 01:00"], JULY_1 + 12 * DAY, HOUR),
    (["01-Jul-2016 00:00", "01-Jul-2016 01:00"], JULY_1, HOUR),
    (["Jul 1 2016", "Jul 2 2016"], JULY_1, DAY),
    (["2016-07-01 12:00 AM", "2016-07-01 01:00 AM"], JULY_1, HOUR),
    (["2016-07-01 00:00:00.000000", "2016-07-01 01:00:00.000000"], JULY_1, HOUR),
    (["1467331200", "1467334800"], JULY_1, HOUR),  # epoch seconds
    (["1467331200000", "1467334800000"], JULY_1, HOUR),  # epoch ms
])
def test_known_date_forms_unchanged(tmp_path: Path, dates: list[str], first: int, step: int) -> None:
    assert _stamps(_series_file(tmp_path, dates)).tolist() == [first, first + step]


def test_bad_date_names_the_cell_and_the_fix(tmp_path: Path) -> None:
    message = _error(_series_file(tmp_path, ["01.07.2016 00:00", "13.07.2016 00:00", "soon"]))
    assert "line 4, column 'date': 'soon' is not a date; write dates as ISO" in message
    assert "date_col" not in message  # a library argument the CLI's user cannot pass


# --- compact integer dates --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("fmt", "freq", "step"), [
    ("%Y%m%d", "D", DAY), ("%Y%m%d%H", "h", HOUR), ("%Y%m%d%H%M", "15min", 15 * 60_000),
    ("%Y%m%d%H%M%S", "s", 1000),
])
def test_compact_integer_dates(tmp_path: Path, fmt: str, freq: str, step: int) -> None:
    dates = list(pd.date_range("2016-07-01", periods=40, freq=freq).strftime(fmt))
    stamps = _stamps(_series_file(tmp_path, dates))
    assert stamps.tolist() == [JULY_1 + k * step for k in range(40)]


def test_epoch_seconds_that_start_like_a_compact_date_stay_epoch(tmp_path: Path) -> None:
    # 2016070100 s is 2033-11-20 03:28:20 UTC and also reads as YYYYMMDDHH; one hour on, 2016073700 does not
    epoch = [str(2_016_070_100 + k * 3600) for k in range(3)]
    assert _stamps(_series_file(tmp_path, epoch)).tolist() == [(2_016_070_100 + k * 3600) * 1000 for k in range(3)]
    # a 13-digit value is no compact width: ms even where its digits would form a date
    assert _stamps(_series_file(tmp_path, ["2016070100000"])).tolist() == [2_016_070_100_000]


def test_compact_dates_outside_1900_2100_stay_epoch(tmp_path: Path) -> None:
    # 1899-12-30 and 1899-12-31 are calendar dates but not of the years the rule takes: epoch seconds (1970-08-08)
    assert _stamps(_series_file(tmp_path, ["18991230", "18991231"])).tolist() == [18_991_230_000, 18_991_231_000]
    assert _stamps(_series_file(tmp_path, ["21001230", "21001231"]))[0] == pd.Timestamp("2100-12-30").value // 10**6


# --- header, columns, cells -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("header", "named"), [
    ("date,a,OT,OT", "'OT'"), ("date,a,OT, a", "'a'"), ("date,a,a,OT,OT", "'a', 'OT'"),
])
def test_repeated_header_names_refused(tmp_path: Path, header: str, named: str) -> None:
    path = tmp_path / "dup.csv"
    columns = header.count(",")
    path.write_text(f"{header}\n2016-07-01 00:00{',1.5' * columns}\n2016-07-01 01:00{',2.5' * columns}\n")
    message = _error(path)
    assert f"the header names {named} more than once" in message and "rename or remove the repeat" in message


def test_a_column_really_named_like_a_pandas_repeat_is_read(tmp_path: Path) -> None:
    path = tmp_path / "dotted.csv"
    path.write_text("date,OT.1,OT\n2016-07-01 00:00,1.5,2.5\n2016-07-01 01:00,3.5,4.5\n")
    series = load_timeseries_csv(path, target="OT")
    assert series.columns == ("OT.1", "OT") and series.values[:, -1].tolist() == [2.5, 4.5]


@pytest.mark.parametrize(("header", "dates"), [
    ("ts,OT", ["2016-07-01 00:00:00", "2016-07-01 01:00:00"]),
    ("Datum,OT", ["01.07.2016 00:00", "01.07.2016 01:00"]),
    ("Zeit;OT", ["13.07.2016 00:00", "13.07.2016 01:00"]),
])
def test_dates_under_an_unknown_name_named_as_dates(tmp_path: Path, header: str, dates: list[str]) -> None:
    sep = ";" if ";" in header else ","
    name = header.split(sep)[0]
    message = _error(_series_file(tmp_path, dates, header, sep))
    assert f"column {name!r} holds dates, not numbers (e.g. {dates[0]!r})" in message
    assert "rename it to date, time or timestamp" in message


def test_second_date_column_named_with_the_date_column(tmp_path: Path) -> None:
    path = tmp_path / "two_dates.csv"
    path.write_text("timestamp,label,OT\n1,25.03.2020 10:00,2\n2,25.03.2020 11:00,3\n")
    message = _error(path)
    assert "column 'label' holds dates" in message and "the date column is 'timestamp': remove it" in message


@pytest.mark.parametrize("cells", [["1,5", "2,5", "3,25"], ["12", "5,3", "-0,5"], ["1.234,5", "2.345,75", "3"]])
def test_decimal_commas_named(tmp_path: Path, cells: list[str]) -> None:
    path = tmp_path / "semi.csv"
    dates = _hours(3, "%Y-%m-%d %H:%M")
    path.write_text("date;OT\n" + "".join(f"{d};{c}\n" for d, c in zip(dates, cells, strict=True)))
    message = _error(path)
    first = next(i for i, c in enumerate(cells) if "," in c)
    assert f"line {first + 2}, column 'OT': {cells[first]!r} is a number with a decimal comma" in message
    assert "use a decimal point" in message and "holds text" not in message


def test_plain_text_column_fix_fits_every_command(tmp_path: Path) -> None:
    path = tmp_path / "label.csv"
    path.write_text("date,label,OT\n2016-07-01 00:00,a,1\n2016-07-01 01:00,b,2\n")
    message = _error(path)
    assert "column 'label' holds text, not numbers (e.g. 'a'); remove it from the file" in message
    assert "where the command takes --features, pass --features S" in message


# --- not UTF-8 CSV ----------------------------------------------------------------------------------------------

TEXT = "date,Temp °C,OT\n2016-07-01 00:00,1.5,2.5\n2016-07-01 01:00,3.5,4.5\n"


@pytest.mark.parametrize(("data", "expected"), [
    (TEXT.encode("latin-1"), "not UTF-8 text (line 1 is in another encoding"),
    (TEXT.replace("°", "").replace("3.5", "3.5°").encode("cp1252"), "not UTF-8 text (line 3 is"),
    (TEXT.encode("utf-16"), "is UTF-16 text, not UTF-8"),
    (TEXT.encode("utf-16-le"), "is not UTF-8 text (it holds NUL bytes"),
])
def test_other_encodings_named(tmp_path: Path, data: bytes, expected: str) -> None:
    path = tmp_path / "encoded.csv"
    path.write_bytes(data)
    message = _error(path)
    assert expected in message and "re-save it as UTF-8 CSV" in message and "codec" not in message


def test_parquet_file_named(tmp_path: Path) -> None:
    path = tmp_path / "series.parquet"
    frame = pd.DataFrame({"date": ["2016-07-01 00:00"], "OT": [1.5]})
    try:
        frame.to_parquet(path)
    except ImportError:  # no Parquet engine: the magic bytes are what the loader looks at
        path.write_bytes(b"PAR1" + bytes(64) + b"PAR1")
    message = _error(path)
    assert "is a Parquet file, but this command reads CSV only; export it as CSV" in message

"""Every reader of a user CSV shares one file check, one cell validator and one seconds-or-milliseconds guess
(`reformer.textio`, `reformer.api.intervals.epoch_in_seconds`), so the same mistake reads the same in every file;
and the M/S/MS feature modes have one check."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reformer.api.intervals import EPOCH_MS_FROM, epoch_in_seconds
from reformer.data.csv_io import read_klines_frame
from reformer.data.sync import parse_time_ms
from reformer.data.timeseries import TimeSeries, check_features, load_timeseries_csv
from reformer.errors import ConfigError, DataFormatError, UserInputError
from reformer.predictions import Predictions
from reformer.strategy.io import read_funding_csv, read_positions_csv, read_predictions_csv

T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC, epoch ms
HOUR = 3_600_000

# each reader with a good file of two rows; `{t0}`/`{t1}` are the times, `{v}` a cell of the numeric column `name`
READERS: dict[str, tuple[Callable[[Path], object], str, str]] = {
    "klines": (read_klines_frame, "timestamp,open,high,low,close,volume\n{t0},1,2,0.5,1.5,4\n{t1},1,2,0.5,{v},4\n",
               "close"),
    "series": (lambda p: load_timeseries_csv(p, target="OT"), "date,a,OT\n{t0},1,2\n{t1},3,{v}\n", "OT"),
    "positions": (read_positions_csv, "timestamp,position\n{t0},1\n{t1},{v}\n", "position"),
    "predictions": (read_predictions_csv, "timestamp,prediction\n{t0},0.1\n{t1},{v}\n", "prediction"),
    "predictions+meta": (Predictions.from_csv, "# reformer predictions: interval=60\ntimestamp,prediction\n"
                                               "{t0},0.1\n{t1},{v}\n", "prediction"),
    "funding": (read_funding_csv, "timestamp,funding_rate\n{t0},0.0001\n{t1},{v}\n", "funding_rate"),
}
GOOD_CELL = {"close": "1.5", "OT": "2", "position": "0.5", "prediction": "0.2", "funding_rate": "0.0001"}


def _write(tmp_path: Path, reader: str, t0: object = T0, t1: object = T0 + HOUR, cell: str | None = None) -> Path:
    _, template, name = READERS[reader]
    path = tmp_path / f"{reader}.csv"
    path.write_text(template.format(t0=t0, t1=t1, v=GOOD_CELL[name] if cell is None else cell))
    return path


@pytest.mark.parametrize("reader", READERS)
def test_a_folder_is_named_as_a_folder_by_every_reader(tmp_path: Path, reader: str) -> None:
    folder = tmp_path / "exports.csv"  # a folder with a file-like name
    folder.mkdir()
    with pytest.raises(UserInputError, match=r"exports\.csv is a folder: give the CSV file inside it$"):
        READERS[reader][0](folder)
    with pytest.raises(UserInputError, match=r"absent\.csv: no such file; "):
        READERS[reader][0](tmp_path / "absent.csv")


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize(("cell", "shown"), [("abc", "'abc'"), ("inf", "inf")])
def test_a_bad_cell_reads_the_same_in_every_file(tmp_path: Path, reader: str, cell: str, shown: str) -> None:
    path = _write(tmp_path, reader, cell=cell)
    line = 4 if reader == "predictions+meta" else 3  # the metadata line comes first
    name = READERS[reader][2]
    with pytest.raises(DataFormatError) as caught:
        READERS[reader][0](path)
    assert str(caught.value) == (f"{path}: line {line}, column {name!r}: {shown} is not a finite number; fix or "
                                 "delete that row")


def test_the_seconds_or_milliseconds_guess_is_one_threshold() -> None:
    assert epoch_in_seconds(EPOCH_MS_FROM - 1) and not epoch_in_seconds(EPOCH_MS_FROM)
    np.testing.assert_array_equal(epoch_in_seconds(np.array([1.7e9, 1.7e12, -5.0])), [True, False, True])
    with pytest.raises(UserInputError, match="looks like epoch seconds"):
        parse_time_ms(str(EPOCH_MS_FROM - 1))
    assert parse_time_ms(str(EPOCH_MS_FROM)) == EPOCH_MS_FROM


def _times(reader: str, result: object) -> list[int]:
    if reader == "klines":
        assert isinstance(result, pd.DataFrame)
        return [int(t) for t in result["timestamp"]]
    if reader == "series":
        assert isinstance(result, TimeSeries) and result.timestamps is not None
        return [int(t) for t in result.timestamps]
    values = result.values if isinstance(result, Predictions) else result
    assert isinstance(values, pd.Series | pd.DataFrame)
    index = pd.DatetimeIndex(values.index)
    return [int(t) for t in (index - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)]


@pytest.mark.parametrize("reader", READERS)
def test_every_reader_takes_epoch_seconds_and_milliseconds_alike(tmp_path: Path, reader: str) -> None:
    read = READERS[reader][0]
    in_ms = _times(reader, read(_write(tmp_path, reader)))
    in_s = _times(reader, read(_write(tmp_path, reader, t0=T0 // 1000, t1=(T0 + HOUR) // 1000)))
    assert in_ms == in_s == [T0, T0 + HOUR]


@pytest.mark.parametrize("reader", READERS)
def test_a_column_mixing_seconds_and_milliseconds_is_refused_by_every_reader(tmp_path: Path, reader: str) -> None:
    # before: the series and prediction readers judged the unit by the column's largest value, so seconds in a
    # millisecond column became dates in January 1970 without a word
    path = _write(tmp_path, reader, t0=T0 // 1000, t1=T0 + HOUR)
    line = 4 if reader == "predictions+meta" else 3
    with pytest.raises(DataFormatError, match=rf"line {line}, column '\w+': {T0 + HOUR} is in milliseconds unlike "
                                              r"the first row; use one unit for the whole column"):
        READERS[reader][0](path)


def test_the_feature_modes_have_one_check(tmp_path: Path) -> None:
    expected = "is invalid: use M (all columns in and out), S (the target only) or MS (all in, the target out)"
    for mode in ("M", "S", "MS"):
        check_features(mode)
    with pytest.raises(ConfigError) as caught:
        check_features("X", "--features")
    assert str(caught.value) == f"--features 'X' {expected}"
    with pytest.raises(ConfigError) as caught:
        load_timeseries_csv(_write(tmp_path, "series"), target="OT", features="X")  # type: ignore[arg-type]
    assert str(caught.value) == f"features 'X' {expected}"
    assert isinstance(caught.value, ValueError)

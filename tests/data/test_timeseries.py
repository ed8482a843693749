"""Generic CSV time series: ETTh1 (and a synthetic file in its layout) loading, the standard LSTF split protocol,
malformed files."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pytest

from reformer.data.timeseries import TimeSeries, load_timeseries_csv, lstf_borders, lstf_splits
from reformer.errors import ConfigError, DataFormatError, UserInputError

from ..synthetic import ETT_COLUMNS, write_ett_like_csv


class EttFile(NamedTuple):
    path: Path
    first_ot: float
    """The first row's OT value as the file writes it."""


@pytest.fixture(scope="module", params=["synthetic", "real"])
def ett_file(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> EttFile:
    """A series in ETTh1's layout and length (tests/synthetic.py), then the real ETTh1: the protocol's borders and
    train-only scaling depend on the layout and the length only."""
    if request.param == "real":
        return EttFile(request.getfixturevalue("etth1_csv"), 30.5310001373291)
    path = tmp_path_factory.mktemp("ett") / "ETTh1_like.csv"
    return EttFile(path, float(write_ett_like_csv(path)[0, -1]))


@pytest.fixture(scope="module")
def etth1(ett_file: EttFile) -> TimeSeries:
    return load_timeseries_csv(ett_file.path, target="OT", features="M")


def test_load_etth1(etth1: TimeSeries, ett_file: EttFile) -> None:
    assert etth1.values.shape == (17_420, 7) and etth1.columns == ETT_COLUMNS
    assert etth1.timestamps is not None
    assert etth1.timestamps[0] == pd.Timestamp("2016-07-01 00:00", tz="UTC").value // 1_000_000
    assert (np.diff(etth1.timestamps) == 3_600_000).all()
    np.testing.assert_allclose(etth1.values[0, -1], ett_file.first_ot)
    univariate = load_timeseries_csv(ett_file.path, target="HULL", features="S")
    assert univariate.columns == ("HULL",) and univariate.values.shape == (17_420, 1)
    ms = load_timeseries_csv(ett_file.path, target="HULL", features="MS")
    assert ms.columns[-1] == "HULL" and len(ms.columns) == 7  # the target is moved last
    np.testing.assert_array_equal(ms.values[:, -1], univariate.values[:, 0])


def test_standard_ett_hour_split_sizes(etth1: TimeSeries) -> None:
    splits = lstf_splits(etth1, seq_len=96, pred_len=96, protocol="ett_hour")
    assert splits.border1s == (0, 8640 - 96, 8640 + 2880 - 96)
    assert splits.border2s == (8640, 11520, 14400)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (8640, 2976, 2976)
    # len - seq_len - pred_len + 1 windows, all kept (the protocol's 2,785 test windows at H = 96)
    assert splits.n_windows() == (8449, 2785, 2785)
    train = splits.train.astype(np.float64)
    np.testing.assert_allclose(train.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(train.std(axis=0), 1.0, atol=1e-5)
    assert lstf_splits(etth1, 96, 24).n_windows()[2] == 2857


def test_scaler_fitted_on_train_rows_only(etth1: TimeSeries) -> None:
    changed = TimeSeries(etth1.values.copy(), etth1.columns, etth1.timestamps, etth1.target, etth1.path)
    changed.values[8640:] *= 5.0  # val, test and the unused tail
    original = lstf_splits(etth1, 96, 96).scaler.to_dict()
    assert lstf_splits(changed, 96, 96).scaler.to_dict() == original
    np.testing.assert_allclose(original["mean"], etth1.values[:8640].mean(axis=0))


def test_other_protocols() -> None:
    b1, b2 = lstf_borders(69_680, 96, "ett_minute")
    assert b2 == [34_560, 46_080, 57_600] and b1 == [0, 34_560 - 96, 46_080 - 96]
    b1, b2 = lstf_borders(1000, 24, "ratio")
    assert b2 == [700, 800, 1000] and b1 == [0, 676, 776]
    with pytest.raises(ConfigError, match="protocol 'ett_hour' needs 14400 rows"):
        lstf_borders(5000, 96, "ett_hour")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "series.csv"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("text", "expected"), [
    ("date,a,b\n2020-01-01,1,2\n", "target column 'OT' not found"),
    ("date,a,OT\n2020-01-01,1,2\n2020-01-02,x,3\n", "line 3, column 'a': 'x' is not a finite number"),
    ("date,a,OT\n2020-01-01,1,2\n2020-01-02,4,\n", "line 3, column 'OT'"),
    ("", "empty"),
    ("date,a,OT\n", "no data rows"),
    ("date,a,OT\nyesterday,1,2\n", "line 2, column 'date': 'yesterday' is not a date"),
    # a second date column beside the series (the shared BTC file's timestamp_string): named, with the way out
    ("timestamp,label,OT\n1,25.03.2020 10:00,2\n2,25.03.2020 11:00,3\n",
     "column 'label' holds dates, not numbers (e.g. '25.03.2020 10:00'); the date column is 'timestamp': remove it "
     "from the file (or, where the command takes --features, pass --features S to read the target only)"),
])
def test_malformed_csv_raises_one_line_error(tmp_path: Path, text: str, expected: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(DataFormatError) as info:
        load_timeseries_csv(path, target="OT")
    message = str(info.value)
    assert expected in message and str(path) in message and "\n" not in message


def test_missing_file_and_epoch_dates(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="no such file"):
        load_timeseries_csv(tmp_path / "absent.csv")
    path = _write(tmp_path, "timestamp,price\n1700000000000,1.5\n1700003600000,2.5\n")
    series = load_timeseries_csv(path, target="price", features="S")
    assert series.timestamps is not None and series.timestamps.tolist() == [1_700_000_000_000, 1_700_003_600_000]
    no_dates = load_timeseries_csv(_write(tmp_path, "x,y\n1,2\n3,4\n"), target="y", date_col=None)
    assert no_dates.timestamps is None and no_dates.columns == ("x", "y")


def test_semicolon_separated_series_reads_as_the_comma_file(tmp_path: Path) -> None:
    rows = ["date,a,b", "2024-01-01 00:00,1.5,2", "2024-01-01 01:00,2.5,3", "2024-01-01 02:00,3.5,4"]
    comma = load_timeseries_csv(_write(tmp_path, "\n".join(rows) + "\n"), target="b")
    semi_path = tmp_path / "semi.csv"
    semi_path.write_text("\n".join(row.replace(",", ";") for row in rows) + "\n")
    semi = load_timeseries_csv(semi_path, target="b")
    assert semi.columns == comma.columns == ("a", "b")
    np.testing.assert_array_equal(semi.values, comma.values)
    assert semi.timestamps is not None and comma.timestamps is not None
    np.testing.assert_array_equal(semi.timestamps, comma.timestamps)

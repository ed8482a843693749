"""Series on a calendar (weekday and monthly rows) train, forecast with their own next dates, and every series
command speaks of gaps and of a protocol that does not fit the rows' spacing."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from reformer.cli import main
from reformer.errors import DataFormatError
from reformer.pipelines.series_models import forecast_all, forecast_latest, load_series_checkpoint

from .test_series import CONFIG, _frame

TINY = ["--seq-len", "48", "--horizon", "12", "--epochs", "1", "--max-batches", "2", "--batch-size", "16",
        "--patch-len", "8", "--stride", "8", "--d-model", "8", "--n-heads", "2", "--n-layers", "1", "--d-ff", "16",
        "--threads", "1", "--protocol", "ratio"]


def _dated(dates: pd.DatetimeIndex, path: Path) -> Path:
    frame = _frame(len(dates))
    frame["date"] = dates.strftime("%Y-%m-%d %H:%M:%S")
    frame.to_csv(path, index=False)
    return path


def _train(csv: Path, root: Path) -> Path:
    config = root / "series.toml"
    config.write_text(CONFIG)
    run = root / "run"
    torch.set_num_threads(1)
    assert main(["train", "--csv", str(csv), "--target", "level", "--config", str(config), "--out", str(run)]) == 0
    return run


@pytest.mark.parametrize(("dates", "calendar"), [
    (pd.bdate_range("2015-01-01", periods=400), "business days"),
    (pd.date_range("1980-01-01", periods=300, freq="MS"), "months"),
])
def test_calendar_rows_train_and_forecast_their_own_next_dates(dates: pd.DatetimeIndex, calendar: str,
                                                               tmp_path: Path) -> None:
    csv = _dated(dates, tmp_path / "series.csv")
    run = _train(csv, tmp_path)
    _, meta = load_series_checkpoint(run)
    assert meta.data.calendar == calendar
    latest = forecast_latest(run, csv)
    stamps = pd.to_datetime(latest.table["timestamp"], unit="ms", utc=True).dt.strftime("%Y-%m-%d").tolist()
    following = pd.date_range(dates[-1], periods=13, freq=dates.freq)[1:]  # pandas' own calendar
    assert stamps == following.strftime("%Y-%m-%d").tolist()
    every = forecast_all(run, csv)  # no weekend or month length is a gap
    assert len(every) == len(dates) - 48 + 1
    holed = _dated(dates.delete(range(len(dates) - 30, len(dates) - 27)), tmp_path / "holed.csv")
    with pytest.warns(UserWarning, match=f"not all {calendar} apart"):
        assert len(forecast_all(run, holed)) < len(dates) - 3 - 48 + 1
    with pytest.raises(DataFormatError, match=f"the last 48 rows, the model's input, are not all {calendar} apart"):
        forecast_latest(run, holed)
    daily = _dated(pd.date_range("2015-01-01", periods=100), tmp_path / "daily.csv")
    with pytest.raises(DataFormatError, match=f"rows are 86400 s apart, the model was trained on rows {calendar}"):
        forecast_latest(run, daily)


def test_a_file_with_no_evenly_spaced_window_is_an_error(tmp_path: Path) -> None:
    dates = pd.date_range("2021-01-01", periods=300, freq="h")
    csv = _dated(dates, tmp_path / "hourly.csv")
    run = _train(csv, tmp_path)
    sparse = _dated(dates.delete(range(20, 300, 40)), tmp_path / "sparse.csv")  # an hour missing every 40
    with pytest.raises(DataFormatError, match="246 of 246 windows of 48 rows span a gap, so no window is left"):
        forecast_all(run, sparse)


def test_evaluate_refuses_a_protocol_of_another_spacing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    quarter_hours = _frame(600)
    quarter_hours["date"] = pd.date_range("2016-07-01", periods=600, freq="15min").strftime("%Y-%m-%d %H:%M:%S")
    csv = tmp_path / "m15.csv"
    quarter_hours.to_csv(csv, index=False)
    argv = ["evaluate", "--csv", str(csv), "--target", "level", "--json", *TINY[:-2]]
    assert main([*argv, "--protocol", "ett-hourly"]) == 2
    assert capsys.readouterr().err == (f"error: {csv}: rows are 900 s apart, but protocol 'ett-hourly' counts its "
                                       "12/4/4 months in rows 3600 s apart: use --protocol ett-15min\n")


def test_evaluate_warns_of_gaps_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frame = _frame(600).drop(index=range(300, 305))  # five hours missing
    csv = tmp_path / "holed.csv"
    frame.to_csv(csv, index=False)
    assert main(["evaluate", "--csv", str(csv), "--target", "level", "--json", *TINY]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if line]
    warned = [line for line in err if line.startswith("warning: ")]
    assert warned == [f"warning: {csv}: rows are not all 3600 s apart (the first gap after 2021-01-13 11:00 UTC); "
                      "59 of 536 windows of 60 rows span a gap, and are used as they are: fill the gaps for evenly "
                      "spaced windows"]
    assert not any("UserWarning" in line or "warnings.warn" in line for line in err)

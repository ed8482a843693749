"""`data.spacing.Spacing`: fixed and calendar row steps, the gaps that break them, and the dates that follow."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from reformer.data.spacing import Spacing


def _ms(times: pd.DatetimeIndex) -> np.ndarray:
    return np.asarray(times.as_unit("ms").asi8, dtype=np.int64)


@pytest.mark.parametrize(("times", "calendar"), [
    (pd.date_range("2021-01-01", periods=500, freq="h", tz="UTC"), None),
    (pd.date_range("2021-01-01", periods=400, freq="D", tz="UTC"), None),  # every day: not business days
    (pd.date_range("2000-01-02", periods=200, freq="W", tz="UTC"), None),  # weekly is a fixed step
    (pd.bdate_range("2019-01-01", periods=700, tz="UTC"), "business days"),
    (pd.date_range("1990-01-01", periods=300, freq="MS", tz="UTC"), "months"),
    (pd.date_range("1990-01-31", periods=300, freq="ME", tz="UTC"), "month ends"),
    (pd.DatetimeIndex([pd.Timestamp(2000, 1, 15, tz="UTC") + pd.DateOffset(months=k) for k in range(80)]), "months"),
    (pd.date_range("1990-01-01", periods=100, freq="QS", tz="UTC"), "quarters"),
    (pd.date_range("1990-03-31", periods=100, freq="QE", tz="UTC"), "quarter ends"),
    (pd.date_range("1901-01-01", periods=100, freq="YS", tz="UTC"), "years"),
])
def test_infers_the_step_that_explains_every_row(times: pd.DatetimeIndex, calendar: str | None) -> None:
    stamps = _ms(times)
    spacing = Spacing.infer(stamps)
    assert spacing is not None and spacing.calendar == calendar
    assert spacing.regular(stamps).all() and not spacing.broken_windows(stamps, 10).any()
    # the dates that follow the last row are the series' own next dates
    following = times[-1] + pd.tseries.frequencies.to_offset(times.freq) if times.freq is not None else None
    if following is not None:
        assert spacing.following(int(stamps[-1]), 1)[0] == _ms(pd.DatetimeIndex([following]))[0]


def test_a_gap_keeps_the_spacing_and_is_found() -> None:
    days = pd.bdate_range("2019-01-01", periods=300, tz="UTC")
    stamps = np.delete(_ms(days), range(100, 103))  # three business days missing
    spacing = Spacing.infer(stamps)
    assert spacing == Spacing(86_400_000, "business days")
    assert np.flatnonzero(~spacing.regular(stamps)).tolist() == [99]
    broken = spacing.broken_windows(stamps, 20)  # (297 - 20 + 1,)
    assert broken.shape == (278,) and broken.sum() == 19 and broken[81:100].all() and not broken[[80, 100]].any()
    message = spacing.describe_gaps(stamps, 20)
    first = days[99]
    assert message == (f"rows are not all business days apart (the first gap after {first:%Y-%m-%d} 00:00 UTC); "
                       "19 of 278 windows of 20 rows span a gap")
    assert Spacing.infer(_ms(days)).describe_gaps(_ms(days), 20) is None


def test_weekday_forecasts_skip_the_weekend_and_months_keep_their_day() -> None:
    friday = pd.Timestamp(2021, 1, 8, tz="UTC")
    after = Spacing(86_400_000, "business days").following(int(friday.value // 10**6), 3)
    assert pd.to_datetime(after, unit="ms", utc=True).strftime("%a %d").tolist() == ["Mon 11", "Tue 12", "Wed 13"]
    end = pd.Timestamp(2020, 1, 31, tz="UTC")
    ends = Spacing(2_678_400_000, "month ends").following(int(end.value // 10**6), 3)
    assert pd.to_datetime(ends, unit="ms", utc=True).strftime("%m-%d").tolist() == ["02-29", "03-31", "04-30"]
    hourly = Spacing(3_600_000)
    assert hourly.following(0, 3).tolist() == [3_600_000, 7_200_000, 10_800_000]


def test_matching_spacings_and_too_few_rows() -> None:
    assert Spacing(2_678_400_000, "months").matches(Spacing(2_635_200_000, "months"))  # the median varies
    assert not Spacing(86_400_000, "business days").matches(Spacing(86_400_000))
    assert not Spacing(3_600_000).matches(Spacing(900_000))
    assert Spacing.infer(np.array([5], dtype=np.int64)) is None
    assert Spacing(3_600_000).describe() == "3600 s apart" and Spacing(1, "years").describe() == "years apart"

from __future__ import annotations

import pytest

from reformer.api import VALID_INTERVALS, interval_ms, parse_interval
from reformer.errors import InvalidIntervalError, UserInputError


@pytest.mark.parametrize(("given", "code"), [("60", "60"), (60, "60"), ("1h", "60"), ("4h", "240"), ("1m", "1"),
                                             ("15m", "15"), ("1d", "D"), ("D", "D"), ("1w", "W"), ("1M", "M")])
def test_parse_interval_accepts_codes_and_spellings(given: str | int, code: str) -> None:
    assert parse_interval(given) == code


def test_interval_lengths() -> None:
    assert interval_ms("1") == 60_000
    assert interval_ms("60") == 3_600_000
    assert interval_ms("720") == 43_200_000
    assert interval_ms("D") == 86_400_000
    assert interval_ms("W") == 604_800_000
    assert all(interval_ms(code) > 0 for code in VALID_INTERVALS if code != "M")


@pytest.mark.parametrize("bad", ["2", "90", "1H", "hour", "", "0"])
def test_bad_interval_names_the_valid_ones(bad: str) -> None:
    with pytest.raises(InvalidIntervalError, match="use one of 1, 3, 5, 15, 30, 60, 120, 240, 360, 720, D, W, M"):
        parse_interval(bad)


def test_month_has_no_fixed_length() -> None:
    with pytest.raises(InvalidIntervalError, match="calendar month"):
        interval_ms("M")
    assert issubclass(InvalidIntervalError, UserInputError)

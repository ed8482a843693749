"""How the rows of a dated series are spaced: a fixed step (hours, minutes, days), or a calendar one whose length
varies (business days, months, quarters, years).

A series model reads consecutive rows as consecutive steps, so its windows must not span a gap, and its forecasts
are stamped with the dates that follow the last row. Monthly rows are 28 to 31 days apart and weekday rows skip the
weekend: measured in milliseconds they look irregular, though no row is missing. `Spacing.infer` names such a
calendar when it explains the rows better than any fixed step does.

Shapes: n rows; `stamps` (n,) int64 epoch ms UTC, increasing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["CALENDARS", "Spacing"]

_DAY_MS = 86_400_000

CALENDARS: dict[str, pd.DateOffset] = {
    "business days": pd.offsets.BDay(1),
    "months": pd.DateOffset(months=1),
    "month ends": pd.offsets.MonthEnd(1),
    "quarters": pd.DateOffset(months=3),
    "quarter ends": pd.offsets.QuarterEnd(startingMonth=3),
    "years": pd.DateOffset(years=1),
}
"""The calendar steps `Spacing.infer` recognises, by the name a checkpoint keeps."""


def _times(stamps: np.ndarray) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(np.asarray(stamps, dtype=np.int64), unit="ms", utc=True))


def _ms(times: pd.DatetimeIndex) -> np.ndarray:
    return np.asarray(times.as_unit("ms").asi8, dtype=np.int64)


@dataclass(frozen=True)
class Spacing:
    """The step between consecutive rows: `calendar` (a key of `CALENDARS`) when set, else `step_ms`."""

    step_ms: int
    """The usual (median) distance between rows, ms; the step itself when `calendar` is None."""
    calendar: str | None = None

    @classmethod
    def infer(cls, stamps: np.ndarray) -> Spacing | None:
        """The spacing that explains the most consecutive pairs of `stamps`: the median step, or a calendar step
        that explains more pairs than it and at least half of them (only for rows a day or more apart). None for
        fewer than two rows."""
        if len(stamps) < 2:
            return None
        diffs = np.diff(stamps)  # (n-1,)
        step = int(np.median(diffs))
        fixed = cls(step)
        explained = int((diffs == step).sum())
        if explained == len(diffs) or step < _DAY_MS:
            return fixed
        best, best_count = fixed, max(explained, (len(diffs) + 1) // 2 - 1)
        for name in CALENDARS:
            count = int(cls(step, name).regular(stamps).sum())
            if count > best_count:
                best, best_count = cls(step, name), count
        return best

    def matches(self, other: Spacing) -> bool:
        """The same spacing: one calendar step, or one fixed step (calendar rows' median varies with the range)."""
        return self.calendar == other.calendar and (self.calendar is not None or self.step_ms == other.step_ms)

    def regular(self, stamps: np.ndarray) -> np.ndarray:
        """Whether each row follows the one before it by exactly one step: (n-1,) bool."""
        stamps = np.asarray(stamps, dtype=np.int64)
        if self.calendar is None:
            return np.diff(stamps) == self.step_ms
        return self.following_each(stamps[:-1]) == stamps[1:]

    def broken_windows(self, stamps: np.ndarray, window: int) -> np.ndarray:
        """Whether each run of `window` consecutive rows holds two neighbours that are not one step apart (a gap
        or a change of spacing): (n - window + 1,) bool, by the run's first row; empty when n < window."""
        n = len(stamps)
        if n < window:
            return np.zeros(0, dtype=bool)
        bad = np.concatenate([[0], np.cumsum(~self.regular(stamps))])  # (n,) such neighbours up to each row
        return (bad[window - 1:] - bad[: n - window + 1]) != 0

    def describe_gaps(self, stamps: np.ndarray, window: int) -> str | None:
        """For messages: where the rows break this spacing and how many runs of `window` rows that touches, or
        None when no run does."""
        spanning = self.broken_windows(stamps, window)  # (w,)
        if not spanning.any():
            return None
        first = pd.Timestamp(int(stamps[np.argmin(self.regular(stamps))]), unit="ms", tz="UTC")
        return (f"rows are not all {self.describe()} (the first gap after {first:%Y-%m-%d %H:%M} UTC); "
                f"{int(spanning.sum())} of {len(spanning)} windows of {window} rows span a gap")

    def following_each(self, stamps: np.ndarray) -> np.ndarray:
        """The stamp one step after each of `stamps`: (k,) -> (k,) int64."""
        stamps = np.asarray(stamps, dtype=np.int64)
        if self.calendar is None:
            return stamps + self.step_ms
        return _ms(_times(stamps) + CALENDARS[self.calendar])

    def following(self, last: int, count: int) -> np.ndarray:
        """The `count` stamps after `last`, one step apart: (count,) int64."""
        out = np.empty(count, dtype=np.int64)
        stamp = np.array([last], dtype=np.int64)
        for k in range(count):
            stamp = self.following_each(stamp)
            out[k] = stamp[0]
        return out

    def describe(self) -> str:
        """In words, for messages: "3600 s apart" or "business days apart"."""
        return f"{self.calendar} apart" if self.calendar else f"{self.step_ms / 1000:g} s apart"

"""A look-ahead check in the spirit of freqtrade's lookahead-analysis.

Compute the signals (or predictions) once on all the klines, then again on the klines cut at a sample of signal
times, and compare every row at or before the cut. A causal function sees the same data for those rows in both
runs, so any difference means a value used bars after its own time. Like freqtrade's tool it only verifies the
sampled rows: a clean report lowers the odds of a leak, it does not prove there is none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..errors import UserInputError
from .bars import to_bar_frame, to_bar_times

__all__ = ["LookaheadReport", "check_lookahead"]

SignalFunction = Callable[[pd.DataFrame], pd.Series | pd.DataFrame]


@dataclass(frozen=True)
class LookaheadReport:
    """What `check_lookahead` compared and what changed."""

    cut_times: tuple[pd.Timestamp, ...]
    """The bar times at which the klines were cut (after that bar's close)."""
    differences: pd.DataFrame = field(repr=False)
    """One row per changed value: cut_at, time, column, full (value on all data), cut (value on the cut data)."""

    @property
    def n_checked(self) -> int:
        """How many cuts were recomputed."""
        return len(self.cut_times)

    @property
    def has_lookahead(self) -> bool:
        """True when any value at or before a cut changed when later bars were removed."""
        return not self.differences.empty

    @property
    def biased_times(self) -> list[pd.Timestamp]:
        """Bar times whose value changed in at least one cut, sorted."""
        return sorted(set(self.differences["time"]))

    def __str__(self) -> str:
        if not self.has_lookahead:
            return f"no look-ahead found in {self.n_checked} cuts"
        first = self.differences.iloc[0]
        return (f"look-ahead: {len(self.biased_times)} bar(s) changed in {self.n_checked} cuts; first: value at "
                f"{first['time']} was {_shown(first['full'])} on all data, {_shown(first['cut'])} with data cut at "
                f"{first['cut_at']}")


def _shown(value: Any) -> str:
    """A number as text (numpy scalars' repr is `np.float64(-1.0)`)."""
    try:
        return f"{float(value):g}"
    except (TypeError, ValueError):
        return repr(value)


def _as_frame(output: Any, what: str) -> pd.DataFrame:
    if isinstance(output, pd.Series):
        output = output.to_frame(name=output.name if output.name is not None else "value")
    if not isinstance(output, pd.DataFrame):
        raise UserInputError(f"{what} returned {type(output).__name__}: it must return a pandas Series or "
                             "DataFrame indexed by bar time")
    frame = output.set_axis(to_bar_times(output.index, what))
    return frame.apply(pd.to_numeric, errors="coerce").astype("float64")


def _signal_times(full: pd.DataFrame) -> pd.DatetimeIndex:
    # rows where any output changes: the "entries and exits" a strategy acts on
    values = full.to_numpy()
    changed = np.zeros(len(full), dtype=bool)
    changed[1:] = ~((values[1:] == values[:-1]) | (np.isnan(values[1:]) & np.isnan(values[:-1]))).all(axis=1)
    changed &= ~np.isnan(values).all(axis=1)
    return full.index[changed] if changed.any() else full.index


def check_lookahead(signal_fn: SignalFunction, klines: Any, *, n_samples: int = 20, seed: int = 0,
                    atol: float = 1e-9, rtol: float = 1e-9) -> LookaheadReport:
    """Recompute `signal_fn` on klines cut at sampled signal times and report every value that changes.

    Args:
        signal_fn: bars -> signals/predictions (Series or DataFrame indexed by bar time). It receives the bar
            frame of `to_bar_frame` (UTC DatetimeIndex, float OHLC and any extra columns), cut or whole.
        klines: DataFrame or list of `Kline`, as for `run_backtest`.
        n_samples: how many signal times to cut at (at most; all of them if fewer).
        seed: seed of the sampling, for reproducible reports.
        atol, rtol: tolerance when comparing values (NaN equals NaN; a row missing from the cut run is NaN).

    Returns:
        A `LookaheadReport`.

    Raises:
        UserInputError: `n_samples` < 1, or `signal_fn` returns something other than a pandas object.
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise UserInputError(f"n_samples={n_samples!r} is invalid: use an integer >= 1, e.g. 20")
    bars = to_bar_frame(klines)
    full = _as_frame(signal_fn(bars), "signal_fn")
    candidates = _signal_times(full)
    candidates = candidates[candidates < bars.index[-1]]  # a cut at the last bar removes nothing
    if len(candidates) > n_samples:
        picks = np.sort(np.random.default_rng(seed).choice(len(candidates), size=n_samples, replace=False))
        candidates = candidates[picks]
    records = []
    for cut_at in candidates:
        cut_bars = bars.loc[:cut_at]
        cut = _as_frame(signal_fn(cut_bars), "signal_fn").reindex(index=full.index[full.index <= cut_at],
                                                                   columns=full.columns)
        before = full.loc[:cut_at]
        a, b = before.to_numpy(), cut.to_numpy()
        same = (np.abs(a - b) <= atol + rtol * np.abs(a)) | (np.isnan(a) & np.isnan(b))
        for row, col in zip(*np.nonzero(~same), strict=True):
            records.append({"cut_at": cut_at, "time": before.index[row], "column": before.columns[col],
                            "full": float(a[row, col]), "cut": float(b[row, col])})
    differences = pd.DataFrame(records, columns=["cut_at", "time", "column", "full", "cut"])
    return LookaheadReport(cut_times=tuple(candidates), differences=differences)

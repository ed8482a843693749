"""Several symbols' candles as one training set: per-symbol features and scaling, one calendar split for all.

    data = prepare_symbols({"BTCUSDT": btc, "ETHUSDT": eth}, seq_len=168, horizon=24)
    data.split.test_start                 # epoch ms: every symbol's test windows end at or after it
    data.symbols["ETHUSDT"].scaler        # fitted on ETHUSDT's training rows only

The split's borders are times, placed at the (train, val, test) fractions of the union of all symbols' window end
times; each symbol's windows fall into train / val / test by their end bar's time, and a window is kept in an
earlier split only if it ends `embargo` bars before the later split's border. So a training window of any symbol
has its target closed before any symbol's validation period starts, and no symbol's test period reaches into
another's training or model selection.

Shapes: `w` windows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from reformer.data.dataset import DataLoader, DatasetConfig, PreparedDataset
from reformer.data.features import FeatureSpec
from reformer.data.windows import Split, bar_step
from reformer.errors import ConfigError, DataFormatError, UserInputError

__all__ = ["CalendarSplit", "MultiSymbolDataset", "calendar_split", "prepare_symbols"]


def _utc(ms: int) -> str:
    return f"{pd.to_datetime(ms, unit='ms', utc=True):%Y-%m-%d %H:%M} UTC"


@dataclass(frozen=True)
class CalendarSplit:
    """Train / val / test borders as times, shared by every symbol."""

    val_start: int
    """Epoch ms: validation windows end at or after it (== test_start when there is no validation split)."""
    test_start: int
    """Epoch ms: test windows end at or after it."""
    embargo_ms: int
    """A window stays in an earlier split only if it ends at least this long before the later split's border."""

    def assign(self, end_times: np.ndarray) -> Split:
        """Window positions of train / val / test, from `[w]` increasing end times (epoch ms)."""
        end_times = np.asarray(end_times, dtype=np.int64)
        train = np.flatnonzero(end_times <= self.val_start - self.embargo_ms)
        val = np.flatnonzero((end_times >= self.val_start) & (end_times <= self.test_start - self.embargo_ms))
        test = np.flatnonzero(end_times >= self.test_start)
        return Split(train, val, test)

    def to_dict(self) -> dict[str, int]:
        return {"val_start": self.val_start, "test_start": self.test_start, "embargo_ms": self.embargo_ms}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> CalendarSplit:
        """Inverse of `to_dict`. Raises: DataFormatError on a missing or non-integer key."""
        values = [doc.get(key) for key in ("val_start", "test_start", "embargo_ms")]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise DataFormatError(f"CalendarSplit: {dict(doc)} needs integer val_start, test_start and embargo_ms")
        return cls(*(int(v) for v in values if v is not None))


def calendar_split(end_times: Mapping[str, np.ndarray], bar_ms: int, embargo: int,
                   fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)) -> CalendarSplit:
    """The borders at `fractions` of the union of the symbols' window end times.

    Args:
        end_times: symbol -> `[w]` end times (epoch ms) of its windows.
        bar_ms: the bar step all symbols share.
        embargo: gap in bars (>= horizon) between an earlier split's last end and the later split's border.
        fractions: (train, val, test), train and test > 0, summing to 1.

    Raises:
        ConfigError: bad fractions. UserInputError: too few distinct end times for three splits.
    """
    if len(fractions) != 3 or min(fractions) < 0 or fractions[0] <= 0 or fractions[2] <= 0 \
            or abs(sum(fractions) - 1.0) > 1e-9:
        raise ConfigError(f"fractions={fractions} must be (train, val, test) >= 0 with train, test > 0 and sum 1, "
                          "e.g. (0.7, 0.1, 0.2)")
    union = np.unique(np.concatenate([np.asarray(t, dtype=np.int64) for t in end_times.values()]))
    n_train, n_val = round(len(union) * fractions[0]), round(len(union) * fractions[1])
    if n_train + n_val >= len(union):
        raise UserInputError(f"{len(union)} window end times are too few for fractions={fractions}; fetch more "
                             "history or use a shorter seq_len or horizon")
    return CalendarSplit(int(union[n_train]), int(union[n_train + n_val]), int(embargo) * int(bar_ms))


@dataclass(frozen=True, eq=False)
class MultiSymbolDataset:
    """Every symbol's prepared windows (its own features, targets and scaler) under one calendar split."""

    symbols: dict[str, PreparedDataset]
    """symbol -> its windows; `split` holds its positions of the shared calendar split."""
    split: CalendarSplit
    bar_ms: int


def prepare_symbols(frames: Mapping[str, pd.DataFrame], seq_len: int = 168, horizon: int = 24, *,
                    task: Literal["regression", "classification"] = "regression", class_threshold: float = 0.0,
                    normalization: Literal["train", "window", "none"] = "train",
                    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2), embargo: int | None = None,
                    spec: FeatureSpec | None = None) -> MultiSymbolDataset:
    """Windows of every symbol, split by one calendar, each symbol scaled by a scaler fitted on its training rows.

    Args:
        frames: symbol -> candles in time order (as `DataLoader.prepare_dataset` takes them), one bar step for all.
        seq_len, horizon, task, class_threshold, normalization, fractions, embargo: see `DatasetConfig`.
        spec: the feature spec (one for all symbols).

    Returns:
        `MultiSymbolDataset`.

    Raises:
        UserInputError: no symbol, bar steps that differ, or a symbol without windows in one of the splits.
        DataFormatError: bad candles, or symbols whose features differ (turnover in some only).
    """
    if not frames:
        raise UserInputError("no symbol given: pass at least one symbol's candles")
    config = DatasetConfig(seq_len, horizon, task, class_threshold, normalization, fractions, embargo)
    loader = DataLoader(spec)
    bases = {symbol: loader._base(frame, seq_len, horizon, 1, require_target=True)
             for symbol, frame in frames.items()}
    steps = {symbol: bar_step(base.frame["timestamp"].to_numpy()) for symbol, base in bases.items()}
    if len(set(steps.values())) > 1:
        raise UserInputError(f"the symbols' bar steps differ ({', '.join(f'{s}: {ms} ms' for s, ms in steps.items())})"
                             "; give candles of one interval for every symbol")
    bar_ms = next(iter(steps.values()))
    end_times = {symbol: base.frame["timestamp"].to_numpy()[base.ends] for symbol, base in bases.items()}
    split = calendar_split(end_times, bar_ms, config.embargo or horizon, config.fractions)
    prepared: dict[str, PreparedDataset] = {}
    for symbol, base in bases.items():
        positions = split.assign(end_times[symbol])
        missing = [name for name, idx in (("training", positions.train), ("validation", positions.val),
                                          ("test", positions.test)) if not len(idx) and
                   (name != "validation" or config.fractions[1] > 0)]
        if missing:
            raise UserInputError(f"{symbol} has no {missing[0]} window in the shared split (validation from "
                                 f"{_utc(split.val_start)}, test from {_utc(split.test_start)}); its history "
                                 "covers too little of the other symbols' period: drop it or fetch more of it")
        prepared[symbol] = loader._assemble(base, config, positions)
    names = {symbol: data.feature_names for symbol, data in prepared.items()}
    if len(set(names.values())) > 1:
        raise DataFormatError(f"the symbols' features differ ({names}); give every symbol candles with the same "
                              "columns (turnover for all or for none)")
    return MultiSymbolDataset(prepared, split, bar_ms)

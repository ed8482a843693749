"""Windows, forward targets, chronological splits with an embargo, and walk-forward folds.

A window is identified by its *end bar* t: its inputs are bars t-seq_len+1 .. t (never later), and its target is
computed from its *target period*, bars t+1 .. t+h (h = horizon) and the close of bar t: the forward log return
ln(C_{t+h} / C_t), its down/flat/up class, or the log realised variance ln(RV_t) with

    RV_t = sum_{i=t+1}^{t+h} r_i^2,    r_i = ln(C_i / C_{i-1})

(`forward_realized_variance`). A run of h unchanged closes has RV_t = 0, whose log is -inf: RV is floored at
`RV_FLOOR` = 1e-12 (one bar's move of 1e-6 in log price, far below a tick of any traded price), so such a window keeps
its place with a finite, very low target instead of leaving a hole in the calendar of windows.

Embargo rule (overlapping targets would otherwise leak): between consecutive splits (train -> val -> test, and
inside each walk-forward fold) the end bars of the last window of the earlier split and the first window of the
later split are at least `embargo >= horizon` bars apart. Hence every earlier target period ends at or before the
first later window's end bar: no training target ever covers a bar whose future the validation or test windows are
asked to predict. The later split's *inputs* may reach back into the earlier split (as in the ETT protocol); its
targets never do. Windows inside the embargo gap are dropped from the earlier split ("purged").

Gaps: candles missing from a series (an exchange outage, a hole in a CSV) would make a window's bars, and its
target's h bars, span more time than they claim. A window is kept only if its warm-up, its inputs and its target
period lie in one gap-free run of bars (`gap_free_ends`).

Shapes: `n` bars, `f` features, `w` windows, `l` = seq_len.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from reformer.errors import ConfigError, UserInputError

__all__ = [
    "RV_FLOOR", "TASKS", "Split", "Task", "bar_runs", "bar_step", "chronological_split", "classify_returns",
    "forward_log_return", "forward_realized_variance", "gap_free_ends", "gather_windows", "target_periods_disjoint",
    "task_targets", "walk_forward_folds", "window_end_bars",
]

DOWN, FLAT, UP = 0, 1, 2
RV_FLOOR = 1e-12
"""The least realised variance a target holds (see the module docstring): ln(RV_FLOOR) ~ -27.6."""
Task = Literal["regression", "classification", "realized-vol"]
"""What a candle window's target is: its forward log return, that return's down/flat/up class, or its log
realised variance."""
TASKS: tuple[Task, ...] = ("regression", "classification", "realized-vol")


def forward_log_return(close: np.ndarray, horizon: int) -> np.ndarray:
    """ln(C_{t+h} / C_t) for every bar t; the last `horizon` entries are NaN (no future yet).

    Args:
        close: `[n]` closes.
        horizon: h >= 1 bars.

    Returns:
        `[n]` float64.
    """
    _positive("horizon", horizon)
    log_close = np.log(np.asarray(close, dtype=np.float64))
    out = np.full(log_close.shape, np.nan)
    out[:-horizon] = log_close[horizon:] - log_close[:-horizon]
    return out


def forward_realized_variance(close: np.ndarray, horizon: int) -> np.ndarray:
    """RV_t = max(sum_{i=t+1}^{t+h} ln(C_i / C_{i-1})^2, RV_FLOOR) for every bar t: bars after t only; the last
    `horizon` entries are NaN (no future yet).

    Args:
        close: `[n]` closes.
        horizon: h >= 1 bars.

    Returns:
        `[n]` float64.
    """
    _positive("horizon", horizon)
    squared = np.diff(np.log(np.asarray(close, dtype=np.float64))) ** 2  # [n-1], squared[j] = r_{j+1}^2
    out = np.full(len(squared) + 1, np.nan)
    if len(squared) >= horizon:
        # a sum per window, not a difference of cumulative sums: those cancel to a few 1e-16 of noise instead of
        # 0 for a flat stretch late in a long series
        sums = np.lib.stride_tricks.sliding_window_view(squared, horizon).sum(axis=1)  # sums[t] = RV_t
        out[: len(sums)] = np.maximum(sums, RV_FLOOR)
    return out


def task_targets(task: Task, forward: np.ndarray, realized_var: np.ndarray, threshold: float) -> np.ndarray:
    """The windows' targets for `task`: `[w]` float64 forward log returns, int64 classes (`classify_returns`) or
    float64 ln(RV) (`forward_realized_variance`); NaN stays NaN (a class of NaN is meaningless)."""
    if task == "classification":
        return classify_returns(forward, threshold)
    if task == "realized-vol":
        return np.log(realized_var)
    return forward


def classify_returns(returns: np.ndarray, threshold: float) -> np.ndarray:
    """Down / flat / up class indices: 0 if r < -threshold, 2 if r > threshold, else 1.

    Args:
        returns: `[w]` log returns (finite).
        threshold: >= 0, in log-return units (0 means flat only for exactly zero returns).

    Returns:
        `[w]` int64 in {0, 1, 2}.
    """
    if not threshold >= 0:
        raise ConfigError(f"class threshold={threshold} must be >= 0 (a log return, e.g. 0.002)")
    returns = np.asarray(returns, dtype=np.float64)
    return np.where(returns > threshold, UP, np.where(returns < -threshold, DOWN, FLAT)).astype(np.int64)


def window_end_bars(n_bars: int, seq_len: int, horizon: int, warmup: int = 0, stride: int = 1,
                    require_target: bool = True) -> np.ndarray:
    """End bars t of all windows whose inputs lie after the warm-up (and whose target is known).

    Windows end at t = warmup + seq_len - 1, then every `stride` bars, up to n - 1 - horizon
    (or n - 1 when `require_target` is False, e.g. for live prediction).

    Returns:
        `[w]` int64 end bars, increasing (possibly empty).
    """
    _positive("seq_len", seq_len)
    _positive("horizon", horizon)
    _positive("stride", stride)
    if warmup < 0:
        raise ConfigError(f"warmup={warmup} must be >= 0")
    last = n_bars - 1 - (horizon if require_target else 0)
    return np.arange(warmup + seq_len - 1, last + 1, stride, dtype=np.int64)


def bar_step(timestamps: np.ndarray | list[int]) -> int:
    """The bar step of a series: the most common difference between consecutive open times (0 for < 2 bars)."""
    steps = np.diff(np.asarray(timestamps, dtype=np.int64))
    if not steps.size:
        return 0
    values, counts = np.unique(steps, return_counts=True)
    return int(values[np.argmax(counts)])


def bar_runs(timestamps: np.ndarray) -> np.ndarray:
    """Gap-free run number of every bar: `[n]` int64 open times -> `[n]` int64, 0 up to the first gap, then 1, ...

    A difference between consecutive open times above 1.5 `bar_step`s is a gap (calendar months of 28-31 days
    stay one run).
    """
    times = np.asarray(timestamps, dtype=np.int64)
    if len(times) < 2:
        return np.zeros(len(times), dtype=np.int64)
    return np.concatenate([[0], np.cumsum(np.diff(times) > 1.5 * bar_step(times))]).astype(np.int64)


def gap_free_ends(ends: np.ndarray, runs: np.ndarray, before: int, after: int) -> np.ndarray:
    """The end bars t whose bars t - before .. t + after all lie in one run of `bar_runs`.

    Args:
        ends: `[w]` end bars with t - before >= 0 and t + after < n.
        runs: `[n]` from `bar_runs`.
        before: bars needed before t (warm-up + seq_len - 1); after: bars needed after t (the horizon, or 0).

    Returns:
        `[w']` the kept end bars, in order.
    """
    ends = np.asarray(ends, dtype=np.int64)
    return ends[runs[ends - before] == runs[ends + after]]


def gather_windows(values: np.ndarray, ends: np.ndarray, seq_len: int) -> np.ndarray:
    """Stack windows values[t-seq_len+1 : t+1] for each end bar t.

    Args:
        values: `[n, f]`.
        ends: `[w]` end bars, each >= seq_len - 1.
        seq_len: l.

    Returns:
        `[w, l, f]` copy.
    """
    values = np.asarray(values)
    ends = np.asarray(ends, dtype=np.int64)
    if ends.size and (ends.min() < seq_len - 1 or ends.max() >= values.shape[0]):
        raise UserInputError(f"window end bars must lie in [{seq_len - 1}, {values.shape[0] - 1}]")
    offsets = np.arange(-seq_len + 1, 1)
    return values[ends[:, None] + offsets[None, :]]  # (w, l, f)


@dataclass(frozen=True)
class Split:
    """Window indices (positions in the `ends` array) of one chronological split or walk-forward fold."""

    train: np.ndarray
    """`[w_train]` int64 positions, increasing."""
    val: np.ndarray
    """`[w_val]` int64 positions (may be empty)."""
    test: np.ndarray
    """`[w_test]` int64 positions."""

    def sizes(self) -> tuple[int, int, int]:
        """(train, val, test) window counts."""
        return len(self.train), len(self.val), len(self.test)


def _purge(ends: np.ndarray, earlier: np.ndarray, later_first_end: int, embargo: int) -> np.ndarray:
    keep = ends[earlier] <= later_first_end - embargo
    return earlier[keep]


def _check_embargo(horizon: int, embargo: int | None) -> int:
    _positive("horizon", horizon)
    embargo = horizon if embargo is None else embargo
    if embargo < horizon:
        raise ConfigError(f"embargo={embargo} bars is shorter than horizon={horizon}: training targets would reach "
                          "into the next split; use embargo >= horizon (default: horizon)")
    return embargo


def chronological_split(ends: np.ndarray, horizon: int, fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
                        embargo: int | None = None) -> Split:
    """Split windows in time order by fractions, then purge the embargo gap at each border.

    The borders are placed at fractions of the window count; the earlier split loses its last windows until its
    end bars are <= the later split's first end bar minus `embargo`.

    Args:
        ends: `[w]` increasing end bars (from `window_end_bars`).
        horizon: target horizon h in bars.
        fractions: (train, val, test) fractions, each >= 0 (val may be 0), summing to 1.
        embargo: minimum gap in bars between split end bars; default `horizon`; must be >= horizon.

    Returns:
        `Split` of window positions.

    Raises:
        ConfigError: bad fractions or embargo.
        UserInputError: too few windows to give every split (train, test, val if its fraction > 0) one window.
    """
    embargo = _check_embargo(horizon, embargo)
    fractions = tuple(float(x) for x in fractions)  # type: ignore[assignment]
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-9 or fractions[0] <= 0 \
            or fractions[2] <= 0:
        raise ConfigError(f"fractions={fractions} must be (train, val, test) >= 0 with train, test > 0 and sum 1, "
                          "e.g. (0.7, 0.1, 0.2)")
    ends = np.asarray(ends, dtype=np.int64)
    n = len(ends)
    n_train = round(n * fractions[0])
    n_val = round(n * fractions[1])
    positions = np.arange(n, dtype=np.int64)
    train, val, test = positions[:n_train], positions[n_train:n_train + n_val], positions[n_train + n_val:]
    if len(test) and len(val):
        val = _purge(ends, val, int(ends[test[0]]), embargo)
    if len(train) and (len(val) or len(test)):
        first_later = val[0] if len(val) else test[0]
        train = _purge(ends, train, int(ends[first_later]), embargo)
    if not len(train) or not len(test) or (fractions[1] > 0 and not len(val)):
        raise UserInputError(f"{n} windows are too few for fractions={fractions} with an embargo of {embargo} bars "
                             f"(sizes after purging: {len(train)}/{len(val)}/{len(test)}); use more bars, a shorter "
                             "seq_len or horizon, or larger fractions")
    return Split(train, val, test)


def walk_forward_folds(ends: np.ndarray, horizon: int, n_folds: int | None, test_windows: int,
                       train_windows: int | None = None, val_windows: int = 0,
                       mode: Literal["rolling", "expanding"] = "rolling", embargo: int | None = None, *,
                       trainable: np.ndarray | None = None) -> list[Split]:
    """Walk-forward folds: consecutive test blocks, each after its own train (and val) windows.

    With `n_folds`, fold k (k = 0 .. n_folds-1) tests on the k-th of the last `n_folds * test_windows` windows'
    blocks (an evaluation's layout). With `n_folds=None` the blocks run from the first window that has a whole
    fold before it to the last window, the last block possibly shorter (a model retrained every `test_windows`
    windows, as a live run would be). Each block's validation block (if `val_windows`) and training block precede
    it, separated by the embargo: every one of their end bars is at least `embargo` bars before the next block's
    first. `rolling` keeps `train_windows` training windows; `expanding` starts every fold's training at the
    first window.

    Args:
        ends: `[w]` increasing end bars.
        horizon: target horizon h in bars.
        n_folds: number of folds >= 1, or None (as many blocks as fit, up to the last window).
        test_windows: windows per test block >= 1.
        train_windows: training windows per fold (required for `rolling`; for `expanding`, the minimum).
        val_windows: validation windows per fold (0: none).
        mode: "rolling" or "expanding".
        embargo: minimum gap in bars at each border; default `horizon`.
        trainable: `[w]` bool, the windows that may train or validate (e.g. those whose target is known and spans
            no gap); default all. Training and validation windows are counted among these; test blocks take every
            window.

    Returns:
        `Split`s in time order (test blocks disjoint and contiguous).

    Raises:
        ConfigError: bad arguments.
        UserInputError: not enough windows for the requested folds.
    """
    embargo = _check_embargo(horizon, embargo)
    if n_folds is not None:
        _positive("n_folds", n_folds)
    _positive("test_windows", test_windows)
    if mode not in ("rolling", "expanding"):
        raise ConfigError(f"mode={mode!r} must be 'rolling' or 'expanding'")
    if mode == "rolling" and train_windows is None:
        raise ConfigError("train_windows is required for mode='rolling' (e.g. 2 * 365 * 24 for two years hourly)")
    if train_windows is not None:
        _positive("train_windows", train_windows)
    if val_windows < 0:
        raise ConfigError(f"val_windows={val_windows} must be >= 0")
    ends = np.asarray(ends, dtype=np.int64)
    n = len(ends)
    if trainable is not None and np.shape(trainable) != (n,):
        raise ConfigError(f"trainable has shape {np.shape(trainable)}; expected ({n},), one flag per window")
    usable = np.arange(n, dtype=np.int64) if trainable is None else np.flatnonzero(trainable).astype(np.int64)
    usable_ends = ends[usable]
    min_train = train_windows if train_windows is not None else 1
    if n_folds is None:
        first = _first_test(ends, usable_ends, min_train, val_windows, embargo)
        if first >= n:
            raise UserInputError(f"{n} windows leave no bar to predict after the first fold's {min_train} training "
                                 f"and {val_windows} validation windows with an embargo of {embargo} bars; use "
                                 "more data or fewer training windows")
        starts = list(range(first, n, test_windows))
    else:
        starts = [n - (n_folds - k) * test_windows for k in range(n_folds)]
    folds = []
    for test_start in starts:
        if test_start < 0:
            _too_few(n, n_folds, test_windows, val_windows, min_train, embargo)
        test = np.arange(test_start, min(test_start + test_windows, n), dtype=np.int64)
        # usable[:cutoff] end at least `embargo` bars before the first test window ends
        cutoff = int(np.searchsorted(usable_ends, ends[test_start] - embargo, side="right"))
        val = usable[max(0, cutoff - val_windows): cutoff]
        if val_windows and cutoff - val_windows < 0:
            _too_few(n, n_folds, test_windows, val_windows, min_train, embargo)
        train_stop = (int(np.searchsorted(usable_ends, ends[val[0]] - embargo, side="right")) if val_windows
                      else cutoff)
        train_start = 0 if mode == "expanding" else train_stop - min_train
        if train_start < 0 or train_stop - train_start < min_train:
            _too_few(n, n_folds, test_windows, val_windows, min_train, embargo)
        folds.append(Split(usable[train_start:train_stop], val, test))
    return folds


def _first_test(ends: np.ndarray, usable_ends: np.ndarray, train_windows: int, val_windows: int, embargo: int
                ) -> int:
    """The first window position with a whole fold before it: `train_windows` usable windows (`usable_ends`:
    their end bars), then, the embargo later, `val_windows` more, then the embargo again; `len(ends)` when there
    is none."""
    if len(usable_ends) < train_windows + val_windows:
        return len(ends)
    last = int(usable_ends[train_windows - 1])
    if val_windows:
        first_val = int(np.searchsorted(usable_ends, last + embargo, side="left"))
        if first_val + val_windows > len(usable_ends):
            return len(ends)
        last = int(usable_ends[first_val + val_windows - 1])
    return int(np.searchsorted(ends, last + embargo, side="left"))


def _too_few(n: int, n_folds: int | None, test_windows: int, val_windows: int, train_windows: int,
             embargo: int) -> None:
    folds = "walk-forward" if n_folds is None else n_folds
    raise UserInputError(f"{n} windows are too few for {folds} folds of {test_windows} test, {val_windows} val "
                         f"and {train_windows} train windows with an embargo of {embargo} bars; use fewer or smaller "
                         "folds or more data")


def target_periods_disjoint(ends: np.ndarray, earlier: np.ndarray, later: np.ndarray, horizon: int) -> bool:
    """True if no target period (t, t+h] of an `earlier` window reaches past the first `later` end bar.

    Equivalently: every earlier window's target period ends at or before the bar where the first later window's
    own target period begins, so the earlier split never sees the future the later split predicts.
    """
    if not len(earlier) or not len(later):
        return True
    ends = np.asarray(ends, dtype=np.int64)
    return bool(ends[earlier].max() + horizon <= ends[later].min())


def _positive(name: str, value: int) -> None:
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name}={value!r} must be an integer >= 1")

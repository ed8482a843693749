"""Windows, targets, embargoed chronological splits and walk-forward folds."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from reformer.data.windows import (
    Split,
    chronological_split,
    classify_returns,
    forward_log_return,
    gather_windows,
    target_periods_disjoint,
    walk_forward_folds,
    window_end_bars,
)
from reformer.errors import ConfigError, UserInputError


def _assert_no_leak(ends: np.ndarray, split: Split, horizon: int, embargo: int) -> None:
    parts = [p for p in (split.train, split.val, split.test) if len(p)]
    for earlier, later in itertools.pairwise(parts):
        # every target period (t, t+h] of the earlier split ends before the later split's targets begin
        assert (ends[earlier][:, None] + horizon <= ends[later][None, :]).all()
        assert target_periods_disjoint(ends, earlier, later, horizon)
        assert ends[later].min() - ends[earlier].max() >= embargo
    for part in parts:
        assert (np.diff(part) == 1).all()  # contiguous blocks


def test_forward_log_return_and_classes() -> None:
    close = np.array([100.0, 110.0, 121.0, 100.0])
    np.testing.assert_allclose(forward_log_return(close, 2)[:2], np.log([1.21, 100 / 110]))
    assert np.isnan(forward_log_return(close, 2)[2:]).all()
    np.testing.assert_array_equal(classify_returns(np.array([-0.02, -0.001, 0.0, 0.001, 0.03]), 0.005),
                                  [0, 1, 1, 1, 2])
    with pytest.raises(ConfigError):
        classify_returns(np.zeros(2), -1.0)


def test_window_ends_and_gather() -> None:
    ends = window_end_bars(n_bars=100, seq_len=10, horizon=5, warmup=7)
    assert ends[0] == 16 and ends[-1] == 94
    assert window_end_bars(100, 10, 5, 7, require_target=False)[-1] == 99
    assert list(window_end_bars(100, 10, 5, 0, stride=30)) == [9, 39, 69]
    values = np.arange(100.0)[:, None] * np.ones((1, 3))
    windows = gather_windows(values, ends, 10)
    assert windows.shape == (len(ends), 10, 3)
    np.testing.assert_array_equal(windows[0, :, 0], np.arange(7, 17))  # bars <= the end bar only
    with pytest.raises(UserInputError):
        gather_windows(values, np.array([5]), 10)


@pytest.mark.parametrize(("horizon", "embargo", "stride"), [(1, None, 1), (24, None, 1), (24, 48, 1), (96, None, 7)])
def test_chronological_split_has_no_target_overlap(horizon: int, embargo: int | None, stride: int) -> None:
    ends = window_end_bars(5000, 168, horizon, warmup=167, stride=stride)
    split = chronological_split(ends, horizon, (0.7, 0.1, 0.2), embargo)
    _assert_no_leak(ends, split, horizon, embargo or horizon)
    n_train, n_val, n_test = split.sizes()
    assert abs(n_test - 0.2 * len(ends)) <= 1
    assert n_train + n_val + n_test > len(ends) - 2 * (embargo or horizon) / stride - 3
    # the gap is tight: no more windows purged than the embargo requires
    assert ends[split.val[0]] - ends[split.train[-1]] < (embargo or horizon) + stride


def test_chronological_split_without_val_and_errors() -> None:
    ends = window_end_bars(1000, 10, 5)
    split = chronological_split(ends, 5, (0.8, 0.0, 0.2))
    assert len(split.val) == 0
    _assert_no_leak(ends, split, 5, 5)
    with pytest.raises(ConfigError, match="embargo"):
        chronological_split(ends, 5, embargo=3)
    with pytest.raises(ConfigError, match="fractions"):
        chronological_split(ends, 5, (0.5, 0.1, 0.1))
    with pytest.raises(UserInputError, match="too few"):
        chronological_split(window_end_bars(40, 10, 5), 5, (0.7, 0.1, 0.2))


def test_leaky_split_is_detected() -> None:
    # a naive split with no embargo lets training targets run into validation
    ends = np.arange(100)
    assert not target_periods_disjoint(ends, np.arange(70), np.arange(70, 100), horizon=5)


@pytest.mark.parametrize("mode", ["rolling", "expanding"])
def test_walk_forward_folds_have_no_overlap(mode: str) -> None:
    horizon = 24
    ends = window_end_bars(6000, 168, horizon, warmup=167)
    folds = walk_forward_folds(ends, horizon, n_folds=4, test_windows=500, train_windows=2000, val_windows=200,
                               mode=mode)  # type: ignore[arg-type]
    assert len(folds) == 4
    for fold in folds:
        _assert_no_leak(ends, fold, horizon, horizon)
        assert len(fold.test) == 500 and len(fold.val) == 200
        assert len(fold.train) == 2000 if mode == "rolling" else fold.train[0] == 0
    tests = np.concatenate([f.test for f in folds])
    assert (np.diff(tests) == 1).all() and tests[-1] == len(ends) - 1
    if mode == "expanding":
        assert all(len(a.train) < len(b.train) for a, b in itertools.pairwise(folds))


@pytest.mark.parametrize("mode", ["rolling", "expanding"])
def test_walk_forward_to_the_last_window_retrains_every_block_on_trainable_windows(mode: str) -> None:
    # n_folds=None: a live walk forward. Blocks of 250 windows from the first with a whole fold before it to the
    # last window; training and validation only on the trainable windows (target known, no gap)
    horizon, embargo = 6, 7
    ends = window_end_bars(2000, 32, horizon, warmup=10, require_target=False)  # up to the last bar
    trainable = ends + horizon < 2000
    trainable[400:420] = False  # e.g. targets over a hole in the candles
    folds = walk_forward_folds(ends, horizon, None, 250, 300, 40, mode, embargo,  # type: ignore[arg-type]
                               trainable=trainable)
    tests = np.concatenate([f.test for f in folds])
    assert (np.diff(tests) == 1).all() and tests[-1] == len(ends) - 1
    assert [len(f.test) for f in folds][:-1] == [250] * (len(folds) - 1) and 0 < len(folds[-1].test) <= 250
    for fold in folds:
        assert trainable[fold.train].all() and trainable[fold.val].all() and len(fold.val) == 40
        assert ends[fold.train].max() + embargo <= ends[fold.val].min()
        assert ends[fold.val].max() + embargo <= ends[fold.test[0]]  # targets closed before the block's first bar
        assert len(fold.train) == 300 if mode == "rolling" else fold.train[0] == 0
    # the first block starts at the first window with a whole fold before it: one window earlier has none
    first = int(folds[0].test[0])
    walk_forward_folds(ends[: first + 1], horizon, 1, 1, 300, 40, mode, embargo,  # type: ignore[arg-type]
                       trainable=trainable[: first + 1])
    with pytest.raises(UserInputError, match="too few"):
        walk_forward_folds(ends[:first], horizon, 1, 1, 300, 40, mode, embargo,  # type: ignore[arg-type]
                           trainable=trainable[:first])
    # the evaluation layout (n_folds) over the same windows gives the same training and validation windows
    # before the same test block: one implementation
    (last,) = walk_forward_folds(ends, horizon, 1, len(folds[-1].test), 300, 40, mode,  # type: ignore[arg-type]
                                 embargo, trainable=trainable)
    for part in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(last, part), getattr(folds[-1], part))
    with pytest.raises(UserInputError, match="leave no bar to predict"):
        walk_forward_folds(ends[:first], horizon, None, 250, 300, 40, mode, embargo)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="one flag per window"):
        walk_forward_folds(ends, horizon, None, 250, 300, trainable=trainable[:-1])


def test_walk_forward_datasets_to_the_last_candle() -> None:
    # the data layer's side of the walk: windows up to the last candle, the unknown targets NaN, each fold's
    # scaler fitted on the rows of its training windows only
    from reformer.data import DataLoader, StandardScaler, synthetic_frame
    from reformer.data.features import compute_features
    from reformer.data.synthetic import SyntheticMarketConfig

    frame = synthetic_frame(SyntheticMarketConfig(n_bars=900, seed=2))
    holed = frame.drop(index=range(500, 505)).reset_index(drop=True)
    with pytest.warns(UserWarning, match="1 gap"):
        folds = DataLoader().prepare_walk_forward(holed, 32, 6, n_folds=None, test_windows=100, train_windows=200,
                                                  val_windows=30, embargo=7)
    values = compute_features(holed, folds[0].spec).to_numpy(dtype=np.float64)
    assert folds[-1].end_bars[-1] == len(holed) - 1 and folds[-1].split.test[-1] == len(folds[-1].end_bars) - 1
    for fold in folds:
        ends, split = fold.end_bars, fold.split
        known = np.isfinite(fold.forward_returns)
        assert known[split.train].all() and known[split.val].all()
        assert not known[-6:].any()  # the last horizon's targets are not known yet
        times = holed["timestamp"].to_numpy()
        over = (times[np.minimum(ends + 6, len(holed) - 1)] - times[ends] != 6 * 3_600_000) & (ends + 6 < len(holed))
        assert over.any() and not known[over].any()  # a target across the hole is no 6-hour return
        rows = values[int(ends[split.train[0]]) - 31: int(ends[split.train[-1]]) + 1]
        assert fold.scaler is not None
        np.testing.assert_array_equal(fold.scaler.mean, StandardScaler().fit(rows).mean)


def test_walk_forward_errors() -> None:
    ends = window_end_bars(1000, 10, 5)
    with pytest.raises(UserInputError, match="too few"):
        walk_forward_folds(ends, 5, n_folds=5, test_windows=150, train_windows=400)
    with pytest.raises(ConfigError, match="train_windows"):
        walk_forward_folds(ends, 5, n_folds=2, test_windows=100)
    with pytest.raises(ConfigError, match="embargo"):
        walk_forward_folds(ends, 5, n_folds=2, test_windows=100, train_windows=100, embargo=2)

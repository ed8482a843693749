"""The realized-vol target: ln of the summed squared 1-bar log returns of the h bars after a window's last bar,
from those bars only; flat prices floored, not -inf; unknown targets NaN in a walk forward."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from reformer.data import DataLoader, SyntheticMarketConfig, synthetic_frame
from reformer.data.windows import RV_FLOOR, forward_realized_variance
from reformer.errors import ConfigError

SEQ, H = 16, 6


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return synthetic_frame(SyntheticMarketConfig(n_bars=400, seed=3))


def _shifted_after(frame: pd.DataFrame, bar: int, seed: int = 0) -> pd.DataFrame:
    """`frame` with every bar after `bar` moved by its own random factor (its OHLC together, so it stays a valid
    candle): the returns of bars bar+1 .. change, nothing up to `bar` does."""
    changed = frame.copy()
    factors = np.exp(np.random.default_rng(seed).normal(0.0, 0.02, len(frame) - bar - 1))
    for column in ("open", "high", "low", "close"):
        changed.loc[bar + 1:, column] = frame[column].to_numpy()[bar + 1:] * factors
    return changed


def test_the_target_is_the_log_of_the_hand_summed_squared_returns(candles: pd.DataFrame) -> None:
    vol = DataLoader().prepare_dataset(candles, SEQ, H, task="realized-vol")
    close = candles["close"].to_numpy()
    for i in (0, len(vol) // 2, len(vol) - 1):
        t = int(vol.end_bars[i])
        by_hand = sum(math.log(close[t + k] / close[t + k - 1]) ** 2 for k in range(1, H + 1))
        assert vol.realized_var[i] == pytest.approx(by_hand, rel=1e-12)
        assert float(vol.targets[i]) == pytest.approx(math.log(by_hand), rel=1e-6)  # float32
    assert vol.targets.dtype == torch.float32 and vol.config.task == "realized-vol"
    # the same windows, inputs and returns as the return task: only the target differs
    returns = DataLoader().prepare_dataset(candles, SEQ, H)
    np.testing.assert_array_equal(vol.end_bars, returns.end_bars)
    np.testing.assert_array_equal(vol.forward_returns, returns.forward_returns)
    np.testing.assert_array_equal(vol.realized_var, returns.realized_var)
    assert torch.equal(vol.features, returns.features)


def test_bars_after_a_window_change_its_target_and_never_its_inputs(candles: pd.DataFrame) -> None:
    base = DataLoader().prepare_dataset(candles, SEQ, H, task="realized-vol", normalization="none")
    i = len(base) // 2
    t = int(base.end_bars[i])
    moved = DataLoader().prepare_dataset(_shifted_after(candles, t), SEQ, H, task="realized-vol",
                                         normalization="none")
    up_to_t = base.end_bars <= t
    assert torch.equal(moved.features[torch.from_numpy(up_to_t)], base.features[torch.from_numpy(up_to_t)])
    # the target at t, and at every window whose h bars reach past t, sees the change; the one ending h bars
    # before t (its bars t-h+1 .. t) does not
    assert float(moved.targets[i]) != float(base.targets[i])
    reaching = (base.end_bars > t - H) & up_to_t
    assert (moved.realized_var[reaching] != base.realized_var[reaching]).all()
    closed = base.end_bars <= t - H
    np.testing.assert_array_equal(moved.realized_var[closed], base.realized_var[closed])
    assert torch.equal(moved.targets[torch.from_numpy(closed)], base.targets[torch.from_numpy(closed)])


def test_flat_prices_are_floored_not_minus_infinity() -> None:
    close = np.array([100.0, 101.0, 101.0, 101.0, 101.0, 102.0])
    rv = forward_realized_variance(close, 3)
    assert rv[0] == pytest.approx(math.log(101 / 100) ** 2, rel=1e-12)
    assert rv[1] == RV_FLOOR  # bars 2..4 never move
    assert rv[2] == pytest.approx(math.log(102 / 101) ** 2, rel=1e-12)
    assert np.isnan(rv[3:]).all()  # no future yet
    assert np.isfinite(np.log(rv[:3])).all()


def test_a_walk_forward_leaves_unknown_variances_nan(candles: pd.DataFrame) -> None:
    folds = DataLoader().prepare_walk_forward(candles, SEQ, H, n_folds=None, test_windows=50, train_windows=100,
                                              val_windows=20, task="realized-vol")
    last = folds[-1]
    unknown = last.end_bars + H >= len(candles)
    assert unknown.sum() == H
    assert np.isnan(last.realized_var[unknown]).all() and np.isnan(last.targets.numpy()[unknown]).all()
    assert np.isfinite(last.realized_var[~unknown]).all()
    for fold in folds:  # training and validation only on known targets
        used = np.concatenate([fold.split.train, fold.split.val])
        assert np.isfinite(fold.targets.numpy()[used]).all()


def test_an_unknown_task_is_named() -> None:
    with pytest.raises(ConfigError, match="'realized-vol'"):
        DataLoader().prepare_dataset(synthetic_frame(SyntheticMarketConfig(n_bars=200)), SEQ, H,
                                     task="volatility")  # type: ignore[arg-type]

"""Metrics and baselines against hand-computed values; ridge recovers a planted linear relation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reformer.training import baselines
from reformer.training.metrics import (
    base_rate,
    classification_metrics,
    directional_accuracy,
    ic_difference_interval,
    ic_interval,
    information_coefficient,
    json_safe,
    regression_metrics,
)

PRED = np.array([0.1, -0.2, 0.0, 0.3])
TARGET = np.array([0.2, 0.1, -0.1, 0.3])


def test_regression_metrics_by_hand() -> None:
    m = regression_metrics(PRED, TARGET)
    assert m["mse"] == pytest.approx((0.01 + 0.09 + 0.01 + 0.0) / 4)
    assert m["mae"] == pytest.approx((0.1 + 0.3 + 0.1 + 0.0) / 4)
    assert m["directional_accuracy"] == pytest.approx((1 + 0 + 0.5 + 1) / 4)  # zero prediction counts 1/2
    assert m["base_rate"] == pytest.approx(3 / 4)
    assert m["mse_skill"] == pytest.approx(1 - 0.0275 / ((0.04 + 0.01 + 0.01 + 0.09) / 4))
    # ranks: pred (3, 1, 2, 4), target (3, 2, 1, 4) -> Spearman 1 - 6 * (0 + 1 + 1 + 0) / (4 * 15) = 0.8
    assert m["ic"] == pytest.approx(0.8)
    assert m["n"] == 4


def test_edge_cases() -> None:
    assert directional_accuracy(np.zeros(3), [1.0, -1.0, 2.0]) == 0.5
    assert math.isnan(information_coefficient(np.zeros(3), [1.0, -1.0, 2.0]))
    assert base_rate([1.0, -1.0, 0.0, -2.0]) == 0.5
    assert json_safe({"a": [math.nan, 1.0], "b": np.float64(math.inf)}) == {"a": [None, 1.0], "b": None}
    with pytest.raises(ValueError, match="equal length"):
        regression_metrics([1.0], [1.0, 2.0])


def test_classification_metrics_by_hand() -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3]])
    m = classification_metrics(probs, [0, 2, 2], [-0.01, 0.02, 0.005])
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["majority_class_rate"] == pytest.approx(2 / 3)
    assert m["log_loss"] == pytest.approx(-(np.log(0.7) + np.log(0.6) + np.log(0.3)) / 3)
    assert m["directional_accuracy"] == pytest.approx(1.0)  # scores -0.6, +0.5, +0.1


def test_zero_and_momentum_baselines() -> None:
    close = np.array([100.0, 110.0, 121.0, 100.0, 90.0])
    assert baselines.momentum_forecast(close, np.array([2, 4]), 2) == pytest.approx(
        [np.log(121 / 100), np.log(90 / 121)])
    assert baselines.momentum_forecast(close, np.array([1]), 2) == pytest.approx([np.log(110 / 100)])
    assert baselines.zero_forecast(3).tolist() == [0.0, 0.0, 0.0]


def test_window_summary() -> None:
    windows = np.arange(2 * 3 * 2, dtype=np.float64).reshape(2, 3, 2)  # (w, l, f)
    summary = baselines.window_summary(windows)
    assert summary.tolist() == [[4, 5, 2, 3], [10, 11, 8, 9]]


def test_ridge_recovers_a_planted_linear_relation() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 4)) * np.array([1.0, 10.0, 0.1, 1.0])
    true = np.array([0.5, -0.05, 3.0, 0.0])
    y = x @ true + 0.2 + rng.normal(scale=0.05, size=600)
    model = baselines.select_ridge(x[:400], y[:400], x[400:], y[400:])
    scale = x.std(axis=0)  # compare effects of one std of each input (the noise sets their standard error)
    np.testing.assert_allclose(model.coefficients * scale, true * scale, atol=0.01)
    assert model.predict(np.zeros((1, 4)))[0] == pytest.approx(0.2, abs=0.02)
    assert model.alpha <= 1.0  # little noise: validation prefers a small penalty
    heavy = baselines.fit_ridge(x[:400], y[:400], alpha=1e9)
    assert np.abs(heavy.coefficients).max() < 1e-3  # huge alpha shrinks to the mean


def _overlapping(n: int, horizon: int, rng: np.random.Generator) -> np.ndarray:
    """n overlapping `horizon`-bar sums of i.i.d. shocks, one bar apart: how 24 h targets on hourly windows look."""
    shocks = rng.normal(size=n + horizon - 1)
    return np.convolve(shocks, np.ones(horizon), "valid")


def test_ic_interval_of_independent_noise_matches_theory() -> None:
    rng = np.random.default_rng(1)
    p, y = rng.normal(size=2000), rng.normal(size=2000)
    low, high = ic_interval(p, y, block=1)
    assert low < 0 < high or low < information_coefficient(p, y) < high
    assert 0.8 < (high - low) / (2 * 1.96 / np.sqrt(2000)) < 1.2  # the textbook width, 2 x 1.96 / sqrt(n)
    assert ic_interval(p, y, block=1) == (low, high)  # seeded
    assert all(math.isnan(v) for v in ic_interval(np.zeros(5), [1.0, 2.0, 3.0, 4.0, 5.0], block=2))


def test_block_bootstrap_keeps_its_coverage_on_overlapping_targets() -> None:
    """Independent forecast and target, both overlapping 24-bar sums: the true IC is 0.

    An i.i.d. bootstrap treats the 2,000 windows as independent and covers 0 far less often than it claims; blocks
    of 2 x horizon windows keep the dependence (measured: block 89 of 100, i.i.d. 36 of 100, 500 resamples).
    """
    covered_block = covered_iid = 0
    widths = []
    for i in range(40):
        rng = np.random.default_rng(100 + i)
        p, y = _overlapping(2000, 24, rng), _overlapping(2000, 24, rng)
        low, high = ic_interval(p, y, block=48, n_boot=400, seed=i)
        low_iid, high_iid = ic_interval(p, y, block=1, n_boot=400, seed=i)
        covered_block += low <= 0 <= high
        covered_iid += low_iid <= 0 <= high_iid
        widths.append((high - low) / (high_iid - low_iid))
    assert covered_block >= 32, covered_block  # >= 80%
    assert covered_iid <= 24, covered_iid  # <= 60%
    assert np.median(widths) > 2.5, np.median(widths)


def test_ic_difference_interval_is_paired() -> None:
    rng = np.random.default_rng(5)
    y = _overlapping(2000, 24, rng)
    good, noise = y + 3 * _overlapping(2000, 24, rng), _overlapping(2000, 24, rng)
    assert ic_difference_interval(good, good, y, block=48) == (0.0, 0.0, 0.0)  # same forecast: no difference
    diff, low, high = ic_difference_interval(good, noise, y, block=48)
    assert diff == information_coefficient(good, y) - information_coefficient(noise, y)
    assert 0 < low < diff < high
    assert ic_interval(good, y, block=48)[0] > 0.1  # a real signal's interval excludes 0
    assert all(math.isnan(v) for v in ic_difference_interval(np.zeros(2000), noise, y, block=48))

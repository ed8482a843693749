"""Forecast metrics on forward log returns: MSE, MAE, directional accuracy and its base rate, IC, MSE skill.

Conventions (all inputs are 1-D arrays of equal length n, NaN-free):

- directional accuracy: mean over windows of hit = 1 if sign(pred) == sign(target) != 0, 0 if the signs are
  opposite, 0.5 if either is exactly 0 (no opinion / no move). So the zero forecast scores exactly 0.5.
- base rate: the share of the majority direction in the targets, max(#(y > 0), #(y < 0)) / n: what "always up"
  (or "always down") would score. A directional accuracy is only interesting above this.
- information coefficient (IC): Spearman rank correlation of prediction and target (average ranks for ties);
  NaN when either side is constant (e.g. the zero forecast).
- MSE skill vs the zero-return forecast: 1 - MSE(pred) / mean(y^2). > 0 means better than predicting no move.
- IC interval: a 95% moving-block bootstrap interval (Kunsch 1989). Windows one bar apart share all but one bar of
  their `horizon`-bar targets (and most of their inputs), so n windows hold far fewer than n independent
  observations, and an i.i.d. bootstrap (or 1/sqrt(n)) would claim intervals several times too narrow. Blocks of
  `block` consecutive windows (the evaluation uses 2 x horizon) keep that dependence inside each resampled block.
  Each resample's IC is the Pearson correlation of the full sample's ranks over the resampled pairs (the rank
  transform is done once; re-ranking each resample, whose repeats are ties, changes it only in the third decimal).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from ..errors import UserInputError

__all__ = [
    "base_rate",
    "classification_metrics",
    "directional_accuracy",
    "ic_difference_interval",
    "ic_interval",
    "information_coefficient",
    "json_safe",
    "mae",
    "mse",
    "mse_skill",
    "regression_metrics",
]


def _pair(pred: Any, target: Any) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=np.float64).reshape(-1)
    y = np.asarray(target, dtype=np.float64).reshape(-1)
    if p.shape != y.shape or p.size == 0:
        raise UserInputError(f"predictions ({p.size}) and targets ({y.size}) must be non-empty and of equal length")
    return p, y


def mse(pred: Any, target: Any) -> float:
    """Mean squared error."""
    p, y = _pair(pred, target)
    return float(np.mean((p - y) ** 2))


def mae(pred: Any, target: Any) -> float:
    """Mean absolute error."""
    p, y = _pair(pred, target)
    return float(np.mean(np.abs(p - y)))


def directional_accuracy(pred: Any, target: Any) -> float:
    """Share of windows whose predicted sign matches the realised sign (ties with 0 count 0.5)."""
    p, y = _pair(pred, target)
    agreement = np.sign(p) * np.sign(y)  # +1 hit, -1 miss, 0 no opinion / no move
    return float(np.mean((agreement + 1.0) / 2.0))


def base_rate(target: Any) -> float:
    """Share of the majority direction in the targets: max(#up, #down) / n."""
    y = np.asarray(target, dtype=np.float64).reshape(-1)
    if y.size == 0:
        raise UserInputError("base_rate needs at least one target")
    return float(max((y > 0).sum(), (y < 0).sum()) / y.size)


def information_coefficient(pred: Any, target: Any) -> float:
    """Spearman rank correlation of predictions and targets; NaN if either is constant."""
    p, y = _pair(pred, target)
    rank_p, rank_y = _ranks(p), _ranks(y)
    if np.ptp(rank_p) == 0 or np.ptp(rank_y) == 0:
        return math.nan
    return float(np.corrcoef(rank_p, rank_y)[0, 1])


def _block_indices(n: int, block: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n) row indices: each row is ceil(n / block) random runs of `block` consecutive rows, cut to n."""
    block = max(1, min(int(block), n))
    runs = -(-n // block)
    starts = np.random.default_rng(seed).integers(0, n - block + 1, size=(n_boot, runs))  # (n_boot, runs)
    return (starts[:, :, None] + np.arange(block)).reshape(n_boot, runs * block)[:, :n]


def _resampled_corr(a: np.ndarray, b: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Pearson correlation of a[idx_i] and b[idx_i] for every row i of idx (n_boot, n) -> (n_boot,)."""
    out = np.empty(idx.shape[0])
    for lo in range(0, idx.shape[0], 256):  # 256 x n float64 at a time
        x, y = a[idx[lo:lo + 256]], b[idx[lo:lo + 256]]
        x = x - x.mean(axis=1, keepdims=True)
        y = y - y.mean(axis=1, keepdims=True)
        denom = np.sqrt((x * x).sum(axis=1) * (y * y).sum(axis=1))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[lo:lo + 256] = (x * y).sum(axis=1) / denom
    return out


def _interval(stats: np.ndarray, level: float) -> tuple[float, float]:
    """The central `level` percentile interval of bootstrap statistics (NaN resamples ignored)."""
    tail = 100 * (1 - level) / 2
    low, high = np.nanpercentile(stats, [tail, 100 - tail])
    return float(low), float(high)


def _ranks(values: np.ndarray) -> np.ndarray:
    return pd.Series(values).rank(method="average").to_numpy()


def ic_interval(pred: Any, target: Any, block: int, n_boot: int = 1000, seed: int = 0,
                level: float = 0.95) -> tuple[float, float]:
    """Moving-block bootstrap interval of the IC: (low, high) percentiles; (NaN, NaN) for a constant forecast."""
    p, y = _pair(pred, target)
    if np.ptp(p) == 0 or np.ptp(y) == 0:
        return math.nan, math.nan
    return _interval(_resampled_corr(_ranks(p), _ranks(y), _block_indices(p.size, block, n_boot, seed)), level)


def ic_difference_interval(pred_a: Any, pred_b: Any, target: Any, block: int, n_boot: int = 1000, seed: int = 0,
                           level: float = 0.95) -> tuple[float, float, float]:
    """IC(a) - IC(b) on the same windows and its paired block-bootstrap interval: (difference, low, high).

    Both forecasts are scored on the same resampled windows, so what they share (the market's moves) cancels.
    """
    a, y = _pair(pred_a, target)
    b, _ = _pair(pred_b, target)
    if np.ptp(a) == 0 or np.ptp(b) == 0 or np.ptp(y) == 0:
        return math.nan, math.nan, math.nan
    rank_a, rank_b, rank_y = _ranks(a), _ranks(b), _ranks(y)
    idx = _block_indices(a.size, block, n_boot, seed)
    low, high = _interval(_resampled_corr(rank_a, rank_y, idx) - _resampled_corr(rank_b, rank_y, idx), level)
    return information_coefficient(a, y) - information_coefficient(b, y), low, high


def mse_skill(pred: Any, target: Any) -> float:
    """1 - MSE(pred) / MSE(zero forecast); NaN if every target is 0."""
    p, y = _pair(pred, target)
    zero = float(np.mean(y**2))
    return math.nan if zero == 0 else 1.0 - mse(p, y) / zero


def regression_metrics(pred: Any, target: Any) -> dict[str, float]:
    """All of the above for one forecast: n, mse, mae, directional_accuracy, base_rate, ic, mse_skill."""
    p, y = _pair(pred, target)
    return {"n": float(p.size), "mse": mse(p, y), "mae": mae(p, y), "directional_accuracy": directional_accuracy(p, y),
            "base_rate": base_rate(y), "ic": information_coefficient(p, y), "mse_skill": mse_skill(p, y)}


def classification_metrics(probs: Any, classes: Any, returns: Any) -> dict[str, float]:
    """Metrics of a down/flat/up classifier.

    Args:
        probs: `[n, 3]` class probabilities (down, flat, up).
        classes: `[n]` true classes 0/1/2.
        returns: `[n]` realised forward log returns (for the directional metrics of the score p_up - p_down).

    Returns:
        n, accuracy, majority_class_rate, log_loss, and directional_accuracy / base_rate / ic of the score.
    """
    prob = np.asarray(probs, dtype=np.float64)
    cls = np.asarray(classes, dtype=np.int64).reshape(-1)
    if prob.ndim != 2 or prob.shape[0] != cls.size:
        raise UserInputError(f"probs must be [n, k] with n = {cls.size} rows, got shape {prob.shape}")
    score = prob[:, -1] - prob[:, 0]
    counts = np.bincount(cls, minlength=prob.shape[1])
    picked = np.clip(prob[np.arange(cls.size), cls], 1e-12, 1.0)
    return {"n": float(cls.size), "accuracy": float(np.mean(prob.argmax(axis=1) == cls)),
            "majority_class_rate": float(counts.max() / cls.size), "log_loss": float(-np.mean(np.log(picked))),
            "directional_accuracy": directional_accuracy(score, returns), "base_rate": base_rate(returns),
            "ic": information_coefficient(score, returns)}


def json_safe(value: Any) -> Any:
    """Replace NaN/inf floats by None (strict JSON), recursively through dicts and lists."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value

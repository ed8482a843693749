"""Forecast metrics on forward log returns: MSE, MAE, directional accuracy and its base rate, IC, MSE skill.

Conventions (all inputs are 1-D arrays of equal length n, NaN-free):

- directional accuracy: mean over windows of hit = 1 if sign(pred) == sign(target) != 0, 0 if the signs are
  opposite, 0.5 if either is exactly 0 (no opinion / no move). So the zero forecast scores exactly 0.5.
- base rate: the share of the majority direction in the targets, max(#(y > 0), #(y < 0)) / n: what "always up"
  (or "always down") would score. A directional accuracy is only interesting above this.
- information coefficient (IC): Spearman rank correlation of prediction and target (average ranks for ties);
  NaN when either side is constant (e.g. the zero forecast).
- MSE skill vs the zero-return forecast: 1 - MSE(pred) / mean(y^2). > 0 means better than predicting no move.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "base_rate",
    "classification_metrics",
    "directional_accuracy",
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
        raise ValueError(f"predictions ({p.size}) and targets ({y.size}) must be non-empty and of equal length")
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
        raise ValueError("base_rate needs at least one target")
    return float(max((y > 0).sum(), (y < 0).sum()) / y.size)


def information_coefficient(pred: Any, target: Any) -> float:
    """Spearman rank correlation of predictions and targets; NaN if either is constant."""
    p, y = _pair(pred, target)
    rank_p = pd.Series(p).rank(method="average").to_numpy()
    rank_y = pd.Series(y).rank(method="average").to_numpy()
    if np.ptp(rank_p) == 0 or np.ptp(rank_y) == 0:
        return math.nan
    return float(np.corrcoef(rank_p, rank_y)[0, 1])


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
        raise ValueError(f"probs must be [n, k] with n = {cls.size} rows, got shape {prob.shape}")
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

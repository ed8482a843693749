"""Scores for variance forecasts: QLIKE, MSE of log variance, Mincer-Zarnowitz, and HAC-based inference.

All series are `[n]` float arrays aligned on forecast origins. Variance forecasts and realised variances share units
(squared log returns summed over the horizon). Targets of neighbouring origins overlap (an H-bar target at t and t+1
share H-1 bars), so losses are autocorrelated and every interval or test here uses a Newey-West long-run variance;
the caller passes the lag, H - 1 at least for overlapping H-bar targets. The Bartlett kernel downweights the
autocovariances it keeps, so at lag H - 1 it still understates the long-run variance of an MA(H-1) loss by about a
third: in simulation a nominal 5% DM test then rejects a true null ~11% of the time, ~8% at lag 2H - 1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from statistics import NormalDist
from typing import Any

import numpy as np

from ..errors import ConfigError, UserInputError
from .metrics import json_safe

__all__ = ["diebold_mariano", "hac_variance", "mean_interval", "mincer_zarnowitz", "mse_log", "qlike",
           "volatility_scores"]


def _vec(name: str, x: object) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise UserInputError(f"{name} must be a 1-D array, got shape {a.shape}")
    return a


def _pair(rv: object, forecast: object) -> tuple[np.ndarray, np.ndarray]:
    y, f = _vec("rv", rv), _vec("forecast", forecast)
    if y.shape != f.shape:
        raise UserInputError(f"rv ({y.size}) and forecast ({f.size}) must have equal length")
    return y, f


def qlike(rv: object, forecast: object) -> np.ndarray:
    """`[n]`, `[n]` -> `[n]` per-observation QLIKE loss (Patton 2011):

        L(rv, f) = rv / f - ln(rv / f) - 1
    >= 0 with equality iff f = rv; robust to noise in the rv proxy, and it penalises under-prediction more than
    over-prediction. Needs rv > 0 and f > 0 (otherwise inf / NaN).
    """
    y, f = _pair(rv, forecast)
    ratio = y / f
    return ratio - np.log(ratio) - 1.0


def mse_log(rv: object, forecast: object) -> np.ndarray:
    """`[n]`, `[n]` -> `[n]`: per-observation (ln rv - ln f)^2."""
    y, f = _pair(rv, forecast)
    return (np.log(y) - np.log(f)) ** 2


def mincer_zarnowitz(log_rv: object, log_forecast: object) -> dict[str, float]:
    """OLS of ln rv on ln f: ln rv = a + b ln f + e. An unbiased forecast has a = 0, b = 1.

    Returns intercept a, slope b = cov(ln f, ln rv) / var(ln f), and r2 = 1 - SSR / SST. The slope and r2 are NaN
    for a constant forecast (no regression), r2 is NaN for a constant target.
    """
    y, f = _pair(log_rv, log_forecast)
    if y.size < 2:
        raise UserInputError("mincer_zarnowitz needs at least 2 observations")
    fc, yc = f - f.mean(), y - y.mean()
    sxx = float(fc @ fc)
    if sxx <= 0.0:
        return {"intercept": math.nan, "slope": math.nan, "r2": math.nan}
    slope = float(fc @ yc) / sxx
    intercept = float(y.mean() - slope * f.mean())
    resid = yc - slope * fc
    sst = float(yc @ yc)
    r2 = 1.0 - float(resid @ resid) / sst if sst > 0.0 else math.nan
    return {"intercept": intercept, "slope": slope, "r2": r2}


def hac_variance(x: object, lag: int) -> float:
    """Newey-West (Bartlett kernel) long-run variance of a `[n]` series:

        LRV = gamma_0 + 2 sum_{k=1..L} (1 - k / (L + 1)) gamma_k
        gamma_k = (1/n) sum_{t=k}^{n-1} (x_t - m)(x_{t-k} - m)
    with m the sample mean and L = min(lag, n - 1). So Var(mean of x) ~ LRV / n; lag 0 gives the sample variance
    with ddof = 0. The Bartlett weights keep LRV >= 0.
    """
    a = _vec("x", x)
    if lag < 0 or int(lag) != lag:
        raise ConfigError(f"HAC lag must be a non-negative integer, got {lag}")
    n = a.size
    if n == 0:
        raise UserInputError("hac_variance needs at least one observation")
    c = a - a.mean()
    lrv = float(c @ c) / n
    for k in range(1, min(int(lag), n - 1) + 1):
        lrv += 2.0 * (1.0 - k / (lag + 1.0)) * float(c[k:] @ c[:-k]) / n
    return lrv


def diebold_mariano(loss_model: object, loss_ref: object, lag: int) -> dict[str, float]:
    """Diebold-Mariano test of equal expected loss, with a Newey-West variance.

        d_t = L_model,t - L_ref,t,   DM = mean(d) / sqrt(LRV(d) / n),   p = 2 (1 - Phi(|DM|)) = erfc(|DM| / sqrt 2)
    DM is asymptotically N(0, 1) under equal expected loss; a negative stat means the model's loss is lower.
    Identical losses give stat 0 and p 1 (no evidence either way).
    """
    lm, lr = _vec("loss_model", loss_model), _vec("loss_ref", loss_ref)
    if lm.shape != lr.shape or lm.size < 2:
        raise UserInputError(f"losses must have equal length >= 2, got {lm.size} and {lr.size}")
    d = lm - lr
    mean = float(d.mean())
    var_mean = hac_variance(d, lag) / d.size
    # A constant difference has no sampling noise: a non-zero mean is then certain, a zero one no evidence at all.
    stat = math.copysign(math.inf, mean) if mean != 0.0 else 0.0
    if var_mean > 0.0:
        stat = mean / math.sqrt(var_mean)
    return {"stat": stat, "p_value": math.erfc(abs(stat) / math.sqrt(2.0)), "mean_diff": mean}


def mean_interval(x: object, lag: int, level: float = 0.95) -> tuple[float, float]:
    """Normal interval for the mean of a `[n]` series with a Newey-West standard error:

        mean(x) -/+ z_{(1+level)/2} sqrt(LRV(x) / n)
    """
    if not 0.0 < level < 1.0:
        raise ConfigError(f"interval level must be in (0, 1), got {level}")
    a = _vec("x", x)
    half = NormalDist().inv_cdf(0.5 + level / 2.0) * math.sqrt(hac_variance(a, lag) / a.size)
    m = float(a.mean())
    return m - half, m + half


def volatility_scores(rv: object, forecasts: Mapping[str, object], lag: int, reference: str = "har",
                      level: float = 0.95) -> dict[str, Any]:
    """Score every variance forecast on the same rows, JSON-safe (NaN/inf -> None).

    Args:
        rv: `[n]` realised variances (the targets).
        forecasts: name -> `[n]` variance forecast (not a log: a negative value is rejected).
        lag: Newey-West lag, H - 1 for overlapping H-bar targets.
        reference: the forecast every other one is DM-tested against, on QLIKE.

    Rows where rv or any forecast is non-finite or not positive are dropped for all forecasts alike, so every
    number compares the same observations. Returns {"n", "n_dropped", "lag", "level", "reference", "forecasts":
    {name: {"qlike", "qlike_lo", "qlike_hi", "mse_log", "mz": {intercept, slope, r2}, and for non-reference
    names "dm_qlike": {stat, p_value, mean_diff}}}}; mean_diff < 0 means lower QLIKE than the reference.
    """
    y = _vec("rv", rv)
    if reference not in forecasts:
        raise UserInputError(f"reference forecast {reference!r} is not among {sorted(forecasts)}")
    fs = {name: _vec(name, f) for name, f in forecasts.items()}
    keep = np.isfinite(y) & (y > 0)
    for name, f in fs.items():
        if f.shape != y.shape:
            raise UserInputError(f"forecast {name!r} has {f.size} rows, rv has {y.size}")
        if np.any(np.isfinite(f) & (f < 0)):
            raise UserInputError(f"forecast {name!r} has negative values: pass variances, not log variances")
        keep &= np.isfinite(f) & (f > 0)
    n = int(keep.sum())
    if n < 2:
        raise UserInputError(f"only {n} rows have a finite positive target and every forecast")
    y = y[keep]
    losses = {name: qlike(y, f[keep]) for name, f in fs.items()}
    out: dict[str, dict[str, Any]] = {}
    for name, f in fs.items():
        lo, hi = mean_interval(losses[name], lag, level)
        row: dict[str, Any] = {
            "qlike": float(losses[name].mean()),
            "qlike_lo": lo,
            "qlike_hi": hi,
            "mse_log": float(mse_log(y, f[keep]).mean()),
            "mz": mincer_zarnowitz(np.log(y), np.log(f[keep])),
        }
        if name != reference:
            row["dm_qlike"] = diebold_mariano(losses[name], losses[reference], lag)
        out[name] = row
    result = {"n": n, "n_dropped": int(keep.size - n), "lag": int(lag), "level": float(level),
              "reference": reference, "forecasts": out}
    return dict(json_safe(result))

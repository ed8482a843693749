"""Signals: pure functions from model predictions to a target-position Series in [-1, 1].

A prediction at bar t is made with data up to bar t's close; the engine fills the resulting target at bar
t+1's open, so nothing here shifts anything in time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import UserInputError
from ..predictions import LOG_VARIANCE, Predictions
from .config import BacktestConfig

__all__ = ["forecast_volatility", "prediction_score", "realized_volatility", "signals_from_predictions"]

_UP_NAMES = ("p_up", "up", "prob_up")
_DOWN_NAMES = ("p_down", "down", "prob_down")


def prediction_score(predictions: pd.Series | pd.DataFrame) -> pd.Series:
    """Reduce predictions to one score per bar: the predicted return, or p_up - p_down for class probabilities.

    Args:
        predictions: a Series of predicted returns (fractions), or a DataFrame with probability columns named
            p_up/p_down (also accepted: up/down, prob_up/prob_down).

    Returns:
        A float Series on the same index; missing predictions stay NaN.

    Raises:
        UserInputError: a DataFrame without recognisable up/down probability columns.
    """
    if isinstance(predictions, pd.Series):
        return pd.to_numeric(predictions, errors="coerce").astype("float64")
    if isinstance(predictions, pd.DataFrame):
        up = next((name for name in _UP_NAMES if name in predictions.columns), None)
        down = next((name for name in _DOWN_NAMES if name in predictions.columns), None)
        if up is None or down is None:
            raise UserInputError(f"predictions DataFrame has columns {list(predictions.columns)}: class "
                                 "probabilities need columns 'p_up' and 'p_down' (or pass a Series of returns)")
        return (predictions[up].astype("float64") - predictions[down].astype("float64")).rename("score")
    raise UserInputError(f"predictions of type {type(predictions).__name__} are not supported: pass a Series of "
                         "predicted returns or a DataFrame with p_up/p_down columns")


def realized_volatility(close: pd.Series, window: int) -> pd.Series:
    """Rolling per-bar volatility: the sample std (ddof=1) of log returns over the last `window` bars.

    Causal: the value at bar t uses closes up to and including bar t only. The first `window` bars are NaN.

    Args:
        close: close prices indexed by bar time.
        window: number of log returns in the window (>= 2).

    Returns:
        A Series of per-bar volatilities (fractions), not annualised.
    """
    log_returns = np.log(close.astype("float64")).diff()
    return log_returns.rolling(window, min_periods=window).std(ddof=1)


def forecast_volatility(predictions: Predictions) -> pd.Series:
    """Per-bar volatility from a volatility model's forecasts, on the forecasts' bars: sqrt(variance / h).

    A realized-vol model forecasts the variance of the sum of the next h one-bar log returns, v = E[sum r^2]; if
    those returns are uncorrelated, each carries v / h, so a bar's standard deviation is sqrt(v / h), the unit of
    `BacktestConfig.vol_target` and of `realized_volatility`.

    Args:
        predictions: `Predictions` with target "log-variance", a `variance` column and a horizon (a realized-vol
            checkpoint's `predict --all` or walk-forward `predictions.csv`).
    Raises:
        UserInputError: predictions of another target, or without variance or horizon.
    """
    values = predictions.values
    if (predictions.target != LOG_VARIANCE or not isinstance(values, pd.DataFrame)
            or "variance" not in values.columns or not predictions.horizon):
        raise UserInputError(f"{predictions.source or 'these predictions'} hold no variance forecast: a volatility "
                             "forecast comes from a --task realized-vol model's predictions (a variance column, "
                             "target=log-variance and a horizon in the file's metadata line)")
    variance = values["variance"].astype("float64")
    return np.sqrt(variance / predictions.horizon).rename("volatility")


def signals_from_predictions(predictions: pd.Series | pd.DataFrame, config: BacktestConfig | None = None,
                             volatility: pd.Series | None = None) -> pd.Series:
    """Map predictions to target positions: +1 above `long_threshold`, -1 below `short_threshold`, else 0.

    With `config.vol_target` set, the size is scaled by min(1, vol_target / volatility) so that the position
    carries about the target per-bar volatility; bars with unknown volatility (warm-up) are flat. Shorts become
    flat when `config.allow_short` is False. A missing prediction (NaN) means flat.

    Args:
        predictions: predicted returns (Series) or class probabilities (DataFrame with p_up/p_down).
        config: thresholds, short permission and volatility target; defaults to `BacktestConfig()`.
        volatility: per-bar volatility on the predictions' index, needed only when `config.vol_target` is set
            (see `realized_volatility`).

    Returns:
        A float Series named "position" with values in [-1, 1], on the predictions' index.

    Raises:
        UserInputError: bad predictions, or `vol_target` set without a volatility Series.
    """
    config = config or BacktestConfig()
    score = prediction_score(predictions)
    values = score.to_numpy()
    position = np.where(values > config.long_threshold, 1.0, 0.0)
    if config.shorts:
        position = np.where(values < config.short_threshold, -1.0, position)
    if config.vol_target is not None:
        if volatility is None:
            raise UserInputError("volatility is required when BacktestConfig.vol_target is set: pass "
                                 "realized_volatility(close, config.vol_window) on the predictions' index")
        vol = volatility.reindex(score.index).to_numpy(dtype="float64")
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.minimum(1.0, config.vol_target / vol)
        # unknown or zero volatility gives no basis for a size: stay flat rather than guess full size
        scale = np.where(np.isfinite(scale) & (vol > 0), scale, 0.0)
        position = position * scale
    return pd.Series(position, index=score.index, name="position")

"""Baselines every model result is set beside, on the same test windows (forward log returns over `horizon`).

- zero: predict no move, 0. Its MSE is mean(y^2), the denominator of `mse_skill`.
- momentum: predict that the last `horizon` bars repeat, ln(C_t / C_{t-h}) with t the window's last bar:
  sign *and* magnitude of the previous horizon's return (so its MSE is roughly twice the zero forecast's on a
  random walk; its directional accuracy shows whether h-bar momentum or reversal dominates).
- ridge: linear regression with an L2 penalty, closed form in numpy, on a small summary of each window: the last
  bar's (scaled) features and the window mean of each feature, 2f inputs. Inputs are standardised with training
  statistics and the intercept is not penalised. alpha is picked on the validation windows from a log grid, then
  the model is refit on the training windows with that alpha.

The series forecasters (`reformer.pipelines.lstf`) are set beside two baselines of their own, on the normalised scale:

- repeat (`repeat_forecast`): every future step equals the last observed value.
- linear (`LinearForecaster`): a ridge least-squares linear map from the window, centred on its last value, to every
  horizon step, shared by all channels (NLinear's model class, fitted in closed form).

Shape legend (series baselines): w training windows, b batch, l input length, t horizon, c channels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from einops import rearrange

from ..errors import ConfigError, UserInputError

__all__ = ["LinearForecaster", "RidgeModel", "fit_ridge", "momentum_forecast", "repeat_forecast", "select_ridge",
           "solve_ridge", "window_summary", "zero_forecast"]

DEFAULT_ALPHAS: tuple[float, ...] = tuple(float(a) for a in np.logspace(-3, 5, 17))


def zero_forecast(n: int) -> np.ndarray:
    """`[n]` zeros: the no-move forecast."""
    return np.zeros(n, dtype=np.float64)


def momentum_forecast(close: np.ndarray, end_bars: np.ndarray, horizon: int) -> np.ndarray:
    """ln(C_t / C_{t-h}) for each window's last bar t (NaN-free: t < h falls back to the first close).

    Args:
        close: `[n_bars]` closes of the whole series.
        end_bars: `[w]` row of each window's last bar.
        horizon: h in bars.
    """
    ends = np.asarray(end_bars, dtype=np.int64)
    past = np.clip(ends - horizon, 0, None)
    return np.log(close[ends] / close[past])


def window_summary(features: np.ndarray) -> np.ndarray:
    """`[w, l, f]` windows -> `[w, 2f]`: the last bar's features, then each feature's mean over the window."""
    x = np.asarray(features, dtype=np.float64)
    return np.concatenate([x[:, -1, :], x.mean(axis=1)], axis=1)  # (w, 2f)


@dataclass(frozen=True)
class RidgeModel:
    """A fitted ridge regression: y = ((x - mean) / scale) @ weights + intercept."""

    weights: np.ndarray
    intercept: float
    mean: np.ndarray
    scale: np.ndarray
    alpha: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        """`[n, k]` -> `[n]`."""
        return ((np.asarray(x, dtype=np.float64) - self.mean) / self.scale) @ self.weights + self.intercept

    @property
    def coefficients(self) -> np.ndarray:
        """Weights in the original (unstandardised) input units."""
        return self.weights / self.scale


def solve_ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form ridge regression with an unpenalised intercept, the package's one solver: the (w, b) that
    minimise |y - x w - b|^2 + alpha |w|^2.

    With x_c = x - mean(x) and y_c = y - mean(y): w = (x_c' x_c + alpha I)^-1 x_c' y_c, b = mean(y) - mean(x) w
    (the same solution as the augmented system [x 1] with no penalty on the intercept's row). alpha > 0 makes the
    system positive definite (`np.linalg.solve`); alpha = 0 may leave it singular (collinear or constant inputs),
    where least squares gives the minimum-norm w.

    Args:
        x: `[n, k]` inputs. y: `[n]` or `[n, t]` targets (t outputs share x). alpha: the L2 penalty (>= 0).

    Returns:
        (w `[k]` or `[k, t]`, b `[]` or `[t]`), float64.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
    centred = x - x_mean  # (n, k)
    gram = centred.T @ centred + alpha * np.eye(x.shape[1])  # (k, k)
    moment = centred.T @ (y - y_mean)  # (k,) or (k, t)
    weights = np.linalg.solve(gram, moment) if alpha > 0 else np.linalg.lstsq(gram, moment, rcond=None)[0]
    return weights, np.asarray(y_mean - x_mean @ weights)


def fit_ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> RidgeModel:
    """Closed-form ridge: w = (Z'Z + alpha I)^-1 Z'(y - mean y), Z = standardised x; intercept unpenalised.

    Args:
        x: `[n, k]` inputs. y: `[n]` targets. alpha: L2 penalty (>= 0) in units of standardised inputs.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if x.ndim != 2 or x.shape[0] != y.size or y.size < 2:
        raise UserInputError(f"ridge needs x [n, k] and y [n] with n >= 2, got {x.shape} and {y.shape}")
    if alpha < 0:
        raise ConfigError(f"ridge alpha={alpha} must be >= 0")
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    weights, intercept = solve_ridge((x - mean) / scale, y, alpha)  # on standardised inputs z (n, k)
    return RidgeModel(weights, float(intercept), mean, scale, float(alpha))


def select_ridge(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                 alphas: Sequence[float] = DEFAULT_ALPHAS) -> RidgeModel:
    """Fit ridge on train for each alpha and return the one with the lowest validation MSE."""
    best: RidgeModel | None = None
    best_mse = np.inf
    for alpha in alphas:
        model = fit_ridge(x_train, y_train, alpha)
        val_mse = float(np.mean((model.predict(x_val) - np.asarray(y_val, dtype=np.float64)) ** 2))
        if val_mse < best_mse:
            best, best_mse = model, val_mse
    if best is None:
        raise ConfigError("select_ridge needs at least one alpha")
    return best


def repeat_forecast(x: torch.Tensor, horizon: int) -> torch.Tensor:
    """The Repeat baseline: every future step equals the last observed value; x (b, l, c) -> (b, t, c)."""
    return x[:, -1:, :].expand(-1, horizon, -1)


class LinearForecaster:
    """A ridge least-squares linear map from the input window to every horizon step, shared by all channels.

    Each channel's window is centred on its last value (NLinear, Zeng et al. AAAI 2023): y - x_l = W (x - x_l) + b,
    fitted in closed form on every training window and channel. This is the same model class as DLinear/NLinear
    (a linear map of the window; DLinear's moving-average split is itself linear), fitted exactly instead of by SGD.

    Shapes: fit x (w, l, c), y (w, t, c); predict x (b, l, c) -> (b, t, c).
    """

    def __init__(self, ridge: float = 1e-3) -> None:
        self.ridge = ridge
        self.weight: np.ndarray | None = None
        """(l + 1, t): the map plus the intercept row."""

    @staticmethod
    def _design(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        series = rearrange(x, "b l c -> (b c) l").astype(np.float64)  # (b*c, l)
        last = series[:, -1:]  # (b*c, 1)
        design = np.concatenate([series - last, np.ones_like(last)], axis=1)  # (b*c, l+1)
        return design, last

    def fit(self, x: np.ndarray, y: np.ndarray) -> LinearForecaster:
        """Ridge over all windows and channels (`solve_ridge`, penalty ridge * n, intercept unpenalised)."""
        design, last = self._design(x)
        target = rearrange(y, "b t c -> (b c) t").astype(np.float64) - last  # (b*c, t)
        weights, intercept = solve_ridge(design[:, :-1], target, self.ridge * len(design))  # (l, t), (t,)
        self.weight = np.vstack([weights, intercept])  # (l+1, t)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Forecast (b, t, c) for windows x (b, l, c)."""
        if self.weight is None:
            raise ConfigError("LinearForecaster.predict called before fit: call fit(x_train, y_train) first")
        design, last = self._design(x)
        out = design @ self.weight + last  # (b*c, t)
        return rearrange(out, "(b c) t -> b t c", c=x.shape[2]).astype(np.float32)

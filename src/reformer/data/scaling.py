"""Normalisation: a per-column standard scaler fitted on the training split only, and per-window z-scoring.

Fitting statistics on the whole series leaks the future into the past (freqtrade#5494); `StandardScaler.fit` is
therefore only ever given training rows, and the scaler travels
in checkpoints via `to_dict` / `from_dict` so prediction reuses the training statistics.

Shapes: `n` rows (bars), `f` columns (features), `w` windows, `l` window length.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from reformer.errors import DataFormatError, UserInputError

__all__ = ["StandardScaler", "normalize_windows"]

_MIN_STD = 1e-8  # a constant column gets std 1 (it becomes 0 after centring) instead of dividing by ~0


class StandardScaler:
    """Per-column z-score: (x - mean) / std, population std (ddof=0), like scikit-learn's StandardScaler.

    Columns whose std is below 1e-8 get std 1 so they map to 0 instead of blowing up.
    """

    def __init__(self) -> None:
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None

    @property
    def fitted(self) -> bool:
        """True once `fit` or `from_dict` has set the statistics."""
        return self.mean is not None

    def fit(self, values: np.ndarray) -> StandardScaler:
        """Estimate per-column mean and std.

        Args:
            values: `[n, f]` training rows only (NaN not allowed).

        Returns:
            self, fitted.

        Raises:
            UserInputError: `values` is not 2-D, is empty, or holds NaN/inf.
        """
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2 or values.shape[0] == 0:
            raise UserInputError(f"StandardScaler.fit: values must be a non-empty [n, f] array, got shape "
                                 f"{values.shape}; pass the training rows as a 2-D array")
        if not np.isfinite(values).all():
            raise UserInputError("StandardScaler.fit: values contain NaN or inf; drop the warm-up rows first")
        self.mean = values.mean(axis=0)
        std = values.std(axis=0)
        self.std = np.where(std < _MIN_STD, 1.0, std)
        return self

    def _stats(self, n_columns: int) -> tuple[np.ndarray, np.ndarray]:
        if self.mean is None or self.std is None:
            raise UserInputError("StandardScaler is not fitted: call fit(train_values) or from_dict(...) first")
        if n_columns != self.mean.shape[0]:
            raise UserInputError(f"StandardScaler was fitted on {self.mean.shape[0]} columns, got {n_columns}; "
                                 "use the scaler fitted on the same feature spec")
        return self.mean, self.std

    def transform(self, values: np.ndarray) -> np.ndarray:
        """(values - mean) / std over the last axis; `[..., f]` -> `[..., f]` float64."""
        values = np.asarray(values, dtype=np.float64)
        mean, std = self._stats(values.shape[-1])
        return (values - mean) / std

    def inverse_transform(self, values: np.ndarray) -> np.ndarray:
        """values * std + mean over the last axis; `[..., f]` -> `[..., f]` float64."""
        values = np.asarray(values, dtype=np.float64)
        mean, std = self._stats(values.shape[-1])
        return values * std + mean

    def fit_transform(self, values: np.ndarray) -> np.ndarray:
        """`fit(values)` then `transform(values)`."""
        return self.fit(values).transform(values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible {"mean": [...], "std": [...]} for checkpoints."""
        mean, std = self._stats(0 if self.mean is None else self.mean.shape[0])
        return {"mean": mean.tolist(), "std": std.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StandardScaler:
        """Rebuild a fitted scaler from `to_dict` output.

        Raises:
            DataFormatError: keys missing, lengths differ, or a std is not positive.
        """
        try:
            mean = np.asarray(data["mean"], dtype=np.float64)
            std = np.asarray(data["std"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise DataFormatError(f"StandardScaler.from_dict: expected {{'mean': [...], 'std': [...]}} ({exc}); "
                                  "pass the dict written by to_dict()") from exc
        if mean.ndim != 1 or mean.shape != std.shape or not (std > 0).all():
            raise DataFormatError("StandardScaler.from_dict: 'mean' and 'std' must be equal-length lists with std > 0")
        scaler = cls()
        scaler.mean, scaler.std = mean, std
        return scaler

    def __repr__(self) -> str:
        return f"StandardScaler(n_features={None if self.mean is None else self.mean.shape[0]})"


def normalize_windows(windows: np.ndarray, eps: float = 1e-8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Z-score each window with its own per-feature mean and std (RevIN-style, no learned affine).

    Uses only the bars inside each window, so it is causal and needs no fitted statistics; the price-level drift
    of crypto series (BTC's test-period prices z-score at 2-6 with training statistics) cannot push inputs out of
    the training range.

    Args:
        windows: `[w, l, f]`.
        eps: added to the std (a constant feature inside a window maps to 0).

    Returns:
        (normalised `[w, l, f]` float32, mean `[w, 1, f]`, std `[w, 1, f]`).
    """
    windows = np.asarray(windows, dtype=np.float64)
    mean = windows.mean(axis=1, keepdims=True)  # (w, 1, f)
    std = windows.std(axis=1, keepdims=True) + eps  # (w, 1, f)
    return ((windows - mean) / std).astype(np.float32), mean, std

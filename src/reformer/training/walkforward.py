"""Walk-forward prediction: every bar's prediction comes from a model trained only on what was known before it.

A `WalkForwardPredictor` is a `reformer.strategy.PredictionSource`: `run_backtest(predictor, klines, config)`
calls `predictor.predict_series(bars)`. The candles are cut into consecutive prediction blocks of
`retrain_every` bars; before each block a fresh model is trained on windows whose *targets* had closed before the
block's first bar (window end + horizon < first predicted bar), on a rolling or expanding window of history, with
its own scaler fitted on those training bars only. The last `val_fraction` of the training windows (after an
embargo of `horizon` windows) drives early stopping.

Shape legend: w windows, l seq_len, f features.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from ..data.dataset import DataLoader, klines_to_frame
from ..data.features import FeatureSpec
from ..data.scaling import StandardScaler
from ..data.windows import bar_runs
from ..errors import ConfigError, UserInputError
from ..model import ReformerConfig, ReformerModel
from .loop import TrainConfig, fit, predict_dataset

__all__ = ["FoldRecord", "WalkForwardConfig", "WalkForwardPredictor"]


@dataclass(frozen=True)
class WalkForwardConfig:
    """How often and on what history the walk-forward retrains."""

    horizon: int = 24
    """Bars ahead the target looks (the forward log return ln(C[t+h] / C[t]))."""
    train_windows: int = 24 * 180
    """Training windows per fold (rolling), or the first fold's (expanding)."""
    retrain_every: int = 24 * 30
    """Bars predicted by one model before retraining."""
    mode: Literal["rolling", "expanding"] = "rolling"
    """Rolling: the last `train_windows` windows; expanding: every window since the first."""
    val_fraction: float = 0.15
    """Share of each fold's training windows held out (last, after an embargo) for early stopping."""

    def __post_init__(self) -> None:
        for name in ("horizon", "train_windows", "retrain_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"WalkForwardConfig.{name}={value!r} is invalid: use a positive integer")
        if self.mode not in ("rolling", "expanding"):
            raise ConfigError(f"WalkForwardConfig.mode={self.mode!r} is invalid: use 'rolling' or 'expanding'")
        if not 0.0 < self.val_fraction < 0.5:
            raise ConfigError(f"WalkForwardConfig.val_fraction={self.val_fraction!r} is invalid: use (0, 0.5)")


@dataclass(frozen=True)
class FoldRecord:
    """What one fold trained on and predicted (bar rows of the input candles, and their open times in ms)."""

    train_first_bar: int
    train_last_bar: int
    """Last bar of the last training window (the scaler is fitted on bars train_first_bar..train_last_bar)."""
    val_last_bar: int
    """Last bar of the last early-stopping window (after an embargo of `horizon` windows)."""
    target_known_bar: int
    """Bar at whose close the last target the fold used (a validation one) was known (val_last_bar + horizon)."""
    predict_first_bar: int
    predict_last_bar: int
    best_val_loss: float


class _Windows(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Windows `features[idx]` standardised with one fold's scaler; targets alongside."""

    def __init__(self, features: torch.Tensor, targets: torch.Tensor, idx: np.ndarray, mean: torch.Tensor,
                 std: torch.Tensor) -> None:
        self.features, self.targets, self.idx, self.mean, self.std = features, targets, idx, mean, std

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = int(self.idx[item])
        return (self.features[i] - self.mean) / self.std, self.targets[i]  # (l, f), ()


@dataclass
class WalkForwardPredictor:
    """A `PredictionSource` that retrains a Reformer as it walks forward (see the module docstring).

    Args:
        model_config: the model; `seq_len` sets the window, `n_features` is set from the feature spec.
        train_config: how each fold trains (`fit`).
        walk: horizon, history and retraining cadence.
        spec: features (default `FeatureSpec()`).
    """

    model_config: ReformerConfig
    train_config: TrainConfig
    walk: WalkForwardConfig = field(default_factory=WalkForwardConfig)
    spec: FeatureSpec | None = None
    folds: list[FoldRecord] = field(default_factory=list)
    progress: bool = False

    def predict_series(self, klines: Any) -> pd.Series:
        """Predicted log return over `walk.horizon` for every bar from the first fold on, indexed by bar time.

        Raises:
            UserInputError: too few candles for one training set plus one prediction block.
        """
        frame = klines_to_frame(klines)
        seq_len, horizon = self.model_config.seq_len, self.walk.horizon
        inputs = DataLoader(self.spec).prepare_inputs(frame, seq_len, normalization="none")
        features, ends = inputs.features, inputs.end_bars  # (w, l, f), (w,)
        close = frame["close"].to_numpy(dtype=np.float64)
        known = ends + horizon < len(close)
        forward = np.zeros(len(ends))
        forward[known] = np.log(close[ends[known] + horizon] / close[ends[known]])
        targets = torch.from_numpy(forward.astype(np.float32))
        # a target over missing candles is not an h-bar return: such windows never train (`windows.bar_runs`)
        runs = bar_runs(frame["timestamp"].to_numpy())
        trainable = known & (runs[ends] == runs[np.minimum(ends + horizon, len(close) - 1)])
        config = self.model_config.replace(n_features=features.shape[-1])
        first = self.walk.train_windows + horizon + 1  # first window index whose training set is complete
        if first >= len(ends):
            raise UserInputError(f"{len(frame)} candles leave no bar to predict after {self.walk.train_windows} "
                                 f"training windows (+ horizon {horizon}, seq_len {seq_len}, warm-up): fetch more "
                                 "history or lower WalkForwardConfig.train_windows")
        self.folds = []
        predictions = np.full(len(ends), np.nan)
        for start in range(first, len(ends), self.walk.retrain_every):
            stop = min(start + self.walk.retrain_every, len(ends))
            # targets known before bar ends[start]: window i with ends[i] + horizon < ends[start], so no fold uses
            # data at or after the first bar it predicts (validation included)
            last_train = int(np.searchsorted(ends + horizon, ends[start], side="left")) - 1
            first_train = 0 if self.walk.mode == "expanding" else max(0, last_train - self.walk.train_windows + 1)
            predictions[start:stop], record = self._fold(features, targets, trainable, ends, config, first_train,
                                                         last_train, start, stop)
            self.folds.append(record)
        times = pd.to_datetime(inputs.timestamps[first:], unit="ms", utc=True)
        return pd.Series(predictions[first:], index=times, name="prediction")

    def _fold(self, features: torch.Tensor, targets: torch.Tensor, trainable: np.ndarray, ends: np.ndarray,
              config: ReformerConfig, first_train: int, last_train: int, start: int, stop: int
              ) -> tuple[np.ndarray, FoldRecord]:
        horizon = self.walk.horizon
        n_val = max(1, round((last_train - first_train + 1) * self.walk.val_fraction))
        val_idx = np.arange(last_train - n_val + 1, last_train + 1)
        train_idx = np.arange(first_train, val_idx[0] - horizon)  # embargo: train targets end before val starts
        train_idx, val_idx = train_idx[trainable[train_idx]], val_idx[trainable[val_idx]]
        if len(train_idx) < 1 or len(val_idx) < 1:
            raise UserInputError("a walk-forward fold has no training or no validation windows (too few, or all "
                                 "over gaps): raise train_windows or fill the gaps")
        scaler = StandardScaler().fit(_window_bars(features, ends, train_idx).double().numpy())
        mean, std = torch.from_numpy(scaler.mean).float(), torch.from_numpy(scaler.std).float()
        model = ReformerModel(config)
        result = fit(model, _Windows(features, targets, train_idx, mean, std),
                     _Windows(features, targets, val_idx, mean, std), self.train_config, progress=self.progress)
        preds, _ = predict_dataset(model, _Windows(features, targets, np.arange(start, stop), mean, std))
        record = FoldRecord(train_first_bar=int(ends[train_idx[0]]) - config.seq_len + 1,
                            train_last_bar=int(ends[train_idx[-1]]), val_last_bar=int(ends[val_idx[-1]]),
                            target_known_bar=int(ends[val_idx[-1]]) + horizon,
                            predict_first_bar=int(ends[start]), predict_last_bar=int(ends[stop - 1]),
                            best_val_loss=float(result.best_val_loss))
        return preds[:, 0].double().numpy(), record


def _window_bars(features: torch.Tensor, ends: np.ndarray, idx: np.ndarray) -> torch.Tensor:
    """Every bar that the windows `idx` hold, once: (n, l, f) windows -> (bars, f) rows, for the fold's scaler
    (the training windows only: not the embargo, not the early-stopping windows)."""
    seq_len = features.shape[1]
    bars = (ends[idx][:, None] - seq_len + 1 + np.arange(seq_len)).reshape(-1)  # (n * l,) bar of each row
    _, first = np.unique(bars, return_index=True)
    rows = torch.from_numpy(first)
    return features[torch.from_numpy(idx)].reshape(-1, features.shape[-1])[rows]  # (bars, f)

"""Walk-forward prediction: every bar's prediction comes from a model trained only on what was known before it.

A `WalkForwardPredictor` is a `reformer.strategy.PredictionSource`: `run_backtest(predictor, klines, config)`
calls `predictor.predict_series(bars)`. The folds are the data layer's (`DataLoader.iter_walk_forward` with
`n_folds=None`, laid out by `data.windows.walk_forward_folds`): consecutive prediction blocks of `retrain_every`
bars up to the last candle; before each block a fresh model is trained on windows whose *targets* had closed
before the block's first bar (an embargo of horizon + 1 bars), on a rolling or expanding history, with its own
scaler fitted on those training bars only. Validation windows (the last share of the history, after the same
embargo) drive early stopping. Each fold trains as the crypto pipeline trains a split (`crypto_eval.crypto_data`,
`loop.fit`): the targets are divided by the training windows' return std, and the forecasts multiplied back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from ..data.dataset import DataLoader, PreparedDataset
from ..data.features import FeatureSpec
from ..errors import ConfigError
from ..model import ReformerConfig, ReformerModel
from ..training.loop import TrainConfig, fit, predict_dataset
from .crypto import crypto_configs, validation_metrics
from .crypto_eval import crypto_data, outputs_to_scores

__all__ = ["FoldRecord", "WalkForwardConfig", "WalkForwardPredictor"]


@dataclass(frozen=True)
class WalkForwardConfig:
    """How often and on what history the walk-forward retrains."""

    horizon: int = 24
    """Bars ahead the target looks (the forward log return ln(C[t+h] / C[t]))."""
    train_windows: int = 24 * 180
    """History per fold in windows (rolling), or the first fold's (expanding): training windows, the embargo and
    the validation windows together."""
    retrain_every: int = 24 * 30
    """Bars predicted by one model before retraining."""
    mode: Literal["rolling", "expanding"] = "rolling"
    """Rolling: the last `train_windows` windows; expanding: every window since the first."""
    val_fraction: float = 0.15
    """Share of `train_windows` held out (last, after an embargo) for early stopping."""

    def __post_init__(self) -> None:
        for name in ("horizon", "train_windows", "retrain_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"WalkForwardConfig.{name}={value!r} is invalid: use a positive integer")
        if self.mode not in ("rolling", "expanding"):
            raise ConfigError(f"WalkForwardConfig.mode={self.mode!r} is invalid: use 'rolling' or 'expanding'")
        if not 0.0 < self.val_fraction < 0.5:
            raise ConfigError(f"WalkForwardConfig.val_fraction={self.val_fraction!r} is invalid: use (0, 0.5)")
        fit_windows, val_windows = self.fold_windows
        if fit_windows < 1:
            raise ConfigError(f"WalkForwardConfig.train_windows={self.train_windows} leaves no training window "
                              f"beside {val_windows} validation windows and an embargo of {self.embargo} bars: "
                              "raise it")

    @property
    def embargo(self) -> int:
        """The least gap in bars between a fold's training and validation end bars, and between its validation
        end bars and its first predicted bar: horizon + 1, so every target a fold uses closed at a bar before the
        one whose close its first prediction is made at."""
        return self.horizon + 1

    @property
    def fold_windows(self) -> tuple[int, int]:
        """(training, validation) windows per fold (at least, when expanding): `train_windows` less the
        validation share and the embargo between them."""
        val = max(1, round(self.train_windows * self.val_fraction))
        return self.train_windows - val - self.horizon, val


@dataclass(frozen=True)
class FoldRecord:
    """What one fold trained on and predicted (bar rows of the input candles, and their open times in ms)."""

    train_first_bar: int
    train_last_bar: int
    """Last bar of the last training window (the scaler is fitted on bars train_first_bar..train_last_bar)."""
    val_last_bar: int
    """Last bar of the last early-stopping window (the first ends `WalkForwardConfig.embargo` bars or more after
    the last training window)."""
    target_known_bar: int
    """Bar at whose close the last target the fold used (a validation one) was known (val_last_bar + horizon)."""
    predict_first_bar: int
    predict_last_bar: int
    best_val_loss: float
    """In units of the scaled targets (returns / `target_scale`)."""
    target_scale: float = 1.0
    """The training windows' forward-return std: the fold's targets were divided by it, its forecasts multiplied."""


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
            ConfigError: a classifier's config, or a classification loss.
            UserInputError: too few candles for one training set plus one prediction block.
        """
        if self.model_config.task != "regression":
            raise ConfigError(f"a walk-forward predictor forecasts returns, and this model's task is "
                              f"{self.model_config.task!r}: walk a regression model (task='regression') forward")
        model_config, config = crypto_configs(self.model_config.seq_len, "regression", self.model_config.to_dict(),
                                              self.train_config)
        walk = self.walk
        fit_windows, val_windows = walk.fold_windows
        folds = DataLoader(self.spec).iter_walk_forward(
            klines, model_config.seq_len, walk.horizon, n_folds=None, test_windows=walk.retrain_every,
            train_windows=fit_windows, val_windows=val_windows, mode=walk.mode, embargo=walk.embargo)
        self.folds = []
        times, forecasts = [], []
        for prepared in folds:  # one fold's windows at a time
            forecast, record = self._fold(prepared, model_config.replace(n_features=len(prepared.feature_names)),
                                          config)
            times.append(prepared.timestamps[prepared.split.test])
            forecasts.append(forecast)
            self.folds.append(record)
        index = pd.to_datetime(np.concatenate(times), unit="ms", utc=True)
        return pd.Series(np.concatenate(forecasts), index=index, name="prediction")

    def _fold(self, prepared: PreparedDataset, model_config: ReformerConfig, config: TrainConfig
              ) -> tuple[np.ndarray, FoldRecord]:
        data = crypto_data(prepared, "regression")
        model = ReformerModel(model_config)
        result = fit(model, data.train, data.val, config, progress=self.progress,
                     on_epoch=validation_metrics(data, "regression"))
        outputs, _ = predict_dataset(model, data.test, config.eval_batch_size, next(model.parameters()).device)
        forecast, _ = outputs_to_scores(outputs, "regression", data.target_scale)
        ends, split = prepared.end_bars, prepared.split
        record = FoldRecord(train_first_bar=int(ends[split.train[0]]) - model_config.seq_len + 1,
                            train_last_bar=int(ends[split.train[-1]]), val_last_bar=int(ends[split.val[-1]]),
                            target_known_bar=int(ends[split.val[-1]]) + self.walk.horizon,
                            predict_first_bar=int(ends[split.test[0]]), predict_last_bar=int(ends[split.test[-1]]),
                            best_val_loss=float(result.best_val_loss), target_scale=data.target_scale)
        return forecast, record

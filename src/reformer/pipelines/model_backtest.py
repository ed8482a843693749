"""`run_backtest` for models: the strategy layer backtests predictions; this walks a model forward first.

`reformer.strategy` never imports torch or the training code, so `run_backtest(model, klines, config)` of the
original design lives here: a `ReformerModel` becomes a `reformer.training.WalkForwardPredictor` (every bar's
prediction from a model trained only on data before that bar), whose predictions the strategy layer backtests.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..errors import UserInputError
from ..strategy import BacktestConfig, BacktestResult, Instrument, PredictionSource, Predictor
from ..strategy import run_backtest as backtest_predictions

if TYPE_CHECKING:
    from ..data.features import FeatureSpec
    from ..model import ReformerModel
    from ..training.config import TrainConfig
    from .walkforward import WalkForwardConfig, WalkForwardPredictor

__all__ = ["run_backtest", "walk_forward_for"]


def walk_forward_for(model: object, train_config: TrainConfig | None = None, walk: WalkForwardConfig | None = None,
                     spec: FeatureSpec | None = None) -> WalkForwardPredictor | None:
    """The walk-forward predictor that `run_backtest` uses for a `ReformerModel`; None for anything else.

    The model's configuration (`model.config`) is retrained fold by fold; its own weights are not used (trained
    on the whole history, they would predict bars they were trained on).

    Args:
        model: a `ReformerModel` (anything else: None).
        train_config: how each fold trains; default `TrainConfig()`.
        walk: horizon, history and retraining cadence; default `WalkForwardConfig()`.
        spec: features; default `FeatureSpec()`.
    """
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(model, torch.nn.Module):
        return None  # without torch loaded nothing is a model (and importing it to find out costs seconds)
    from ..model import ReformerModel
    from ..training.config import TrainConfig
    from .walkforward import WalkForwardConfig, WalkForwardPredictor

    if not isinstance(model, ReformerModel):
        return None
    return WalkForwardPredictor(model.config, train_config or TrainConfig(), walk or WalkForwardConfig(), spec)


def run_backtest(predictions: pd.Series | pd.DataFrame | Predictor | ReformerModel, klines: Any,
                 config: BacktestConfig | None = None, *, funding_rates: pd.Series | None = None,
                 mark: Any = None, instrument: Instrument | None = None, train_config: TrainConfig | None = None,
                 walk: WalkForwardConfig | None = None, spec: FeatureSpec | None = None) -> BacktestResult:
    """Backtest predictions, a predictor, or a `ReformerModel` walked forward with its own configuration.

    Args:
        predictions: a `ReformerModel` (walked forward: `walk_forward_for`), or what
            `reformer.strategy.run_backtest` takes: predicted returns as a Series indexed by bar time, class
            probabilities as a DataFrame with p_up/p_down, or a `Predictor` (e.g. a `WalkForwardPredictor`,
            which carries its own training settings).
        klines: DataFrame (timestamp in epoch ms or DatetimeIndex; open/high/low/close) or a list of `Kline`.
        config: the backtest configuration; defaults to `BacktestConfig()`.
        funding_rates: perpetual funding rates indexed by funding time, applied when `config.funding` is True.
        mark: mark-price candles (same forms as `klines`): liquidation and funding use them; None: the last price.
        instrument: the symbol's tick, quantity step, minimum order and maintenance margin (None: no rounding).
        train_config: with a model: how each walk-forward fold trains; default `TrainConfig()`.
        walk: with a model: horizon, history and retraining cadence; default `WalkForwardConfig()`.
        spec: with a model: the features; default `FeatureSpec()`.

    Returns:
        A `BacktestResult`.

    Raises:
        UserInputError: `train_config`, `walk` or `spec` without a model; a torch module that is not a
            `ReformerModel`; too few candles to walk the model forward; anything
            `reformer.strategy.run_backtest` rejects.
    """
    walker = walk_forward_for(predictions, train_config, walk, spec)
    if walker is not None:
        return backtest_predictions(walker, klines, config, funding_rates=funding_rates, mark=mark,
                                    instrument=instrument)
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(predictions, torch.nn.Module) and not isinstance(predictions,
                                                                                         PredictionSource):
        raise UserInputError(f"run_backtest walks a ReformerModel forward, and {type(predictions).__name__} is "
                             "not one: pass its predictions (a Series by bar time) or a predictor instead")
    given = [name for name, value in (("train_config", train_config), ("walk", walk), ("spec", spec))
             if value is not None]
    if given:
        raise UserInputError(f"{', '.join(given)} apply to a ReformerModel walked forward, not to "
                             f"{type(predictions).__name__}: a WalkForwardPredictor carries its own settings")
    return backtest_predictions(predictions, klines, config, funding_rates=funding_rates, mark=mark,
                                instrument=instrument)

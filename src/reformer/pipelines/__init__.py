"""Pipelines: workflows that join the layers below them (strategy, training, data, model), so that those
layers never import each other upwards.

    from reformer.pipelines import run_backtest          # also `reformer.run_backtest`
    result = run_backtest(model, klines, BacktestConfig(), train_config=TrainConfig(epochs=8))

`run_backtest` walks a `ReformerModel` forward (a `WalkForwardPredictor` with the model's configuration and
the given `TrainConfig`) and hands everything else to `reformer.strategy.run_backtest`. Importing this package
does not load torch: model and training are imported only when a model is passed.

The commands of `reformer` are thin: each builds one options object from its flags and calls one function here,
which decides and runs, and returns what the command prints:

- `train_model(TrainOptions(...))`: a candle model (one split, or walk-forward folds) or, with a target column,
  a series forecaster (`reformer train`);
- `run_forecast(ForecastRun)`: a series forecaster on any time-series CSV, kept in a run directory or trained in
  memory only: `reformer train --target` builds its run with `forecast_run_from_tables`, `reformer evaluate` with
  `EvaluateOptions.forecast_run`;
- `predict_run(PredictOptions(...))`: a kept model's predictions (`reformer predict`);
- `backtest_run(BacktestOptions(...))`: positions, predictions or a checkpoint's predictions through the engine
  (`reformer backtest`);
- `load_candles`: candles from a CSV or the store (fetched when the store lacks them).

The layers below only look down (`lint-imports`, configured in pyproject.toml, checks it in `make test`, lazy
imports included): `reformer.model` imports neither pandas nor data, api, training or strategy;
`reformer.strategy` imports neither torch nor model or training; `reformer.api` does not import `reformer.data`;
nothing but the CLI itself imports `reformer.cli`. Code that needs two of them together belongs here.
"""

from .backtest import BacktestOptions, BacktestRun, backtest_run, run_backtest, walk_forward_for
from .predict import Predicted, PredictOptions, predict_run
from .series import EvaluateOptions, ForecastRun, forecast_run_from_tables, run_forecast
from .train import TrainOptions, TrainOutcome, load_candles, train_model

__all__ = ["BacktestOptions", "BacktestRun", "EvaluateOptions", "ForecastRun", "PredictOptions", "Predicted",
           "TrainOptions", "TrainOutcome", "backtest_run", "forecast_run_from_tables", "load_candles", "predict_run",
           "run_backtest", "run_forecast", "train_model", "walk_forward_for"]

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

The workflows those functions run are importable on their own (loaded on first use, so that importing this package
still does not load torch):

    train_crypto / evaluate_crypto / predict_latest / predict_all   reformer.pipelines.crypto
    evaluate_walk_forward (folds pooled, beside baselines)          reformer.pipelines.crypto_folds
    WalkForwardPredictor (for run_backtest)                         reformer.pipelines.walkforward
    run_lstf (any CSV series; out_dir= keeps the model)             reformer.pipelines.lstf
    forecast_latest / forecast_all (series checkpoints)             reformer.pipelines.series_models
    plot_attention (a candle model's attention map)                 reformer.pipelines.attention_plot

The layers below only look down (`lint-imports`, configured in pyproject.toml, checks it in `make test`, lazy
imports included): `reformer.model` imports neither pandas nor data, api, training or strategy;
`reformer.strategy` imports neither torch nor model or training; `reformer.api` does not import `reformer.data`;
nothing but the CLI itself imports `reformer.cli`. Code that needs two of them together belongs here.
"""

import importlib
from typing import TYPE_CHECKING, Any

_LAZY = {
    **dict.fromkeys(["BacktestOptions", "BacktestRun", "backtest_run"], "backtest"),
    **dict.fromkeys(["run_backtest", "walk_forward_for"], "model_backtest"),
    **dict.fromkeys(["Predicted", "PredictOptions", "predict_run"], "predict"),
    **dict.fromkeys(["EvaluateOptions", "ForecastRun", "forecast_run_from_tables", "run_forecast"], "series"),
    **dict.fromkeys(["TrainOptions", "TrainOutcome", "load_candles", "train_model"], "train"),
    **dict.fromkeys(["CryptoData", "LatestPrediction", "TrainReport", "evaluate_crypto", "predict_all",
                     "predict_latest", "prepare_crypto_data", "train_crypto"], "crypto"),
    **dict.fromkeys(["FoldSettings", "evaluate_walk_forward"], "crypto_folds"),
    **dict.fromkeys(["FoldRecord", "WalkForwardConfig", "WalkForwardPredictor"], "walkforward"),
    **dict.fromkeys(["MultiSymbolReport", "train_symbols"], "multi_symbol"),
    "run_lstf": "lstf",
    **dict.fromkeys(["SeriesForecast", "forecast_all", "forecast_latest", "load_series_checkpoint"], "series_models"),
    "plot_attention": "attention_plot",
}

__all__ = ["BacktestOptions", "BacktestRun", "CryptoData", "EvaluateOptions", "FoldRecord", "FoldSettings",
           "ForecastRun", "LatestPrediction", "MultiSymbolReport", "PredictOptions", "Predicted", "SeriesForecast",
           "TrainOptions", "TrainOutcome", "TrainReport", "WalkForwardConfig", "WalkForwardPredictor", "backtest_run",
           "evaluate_crypto", "evaluate_walk_forward", "forecast_all", "forecast_latest", "forecast_run_from_tables",
           "load_candles", "load_series_checkpoint", "plot_attention", "predict_all", "predict_latest",
           "predict_run", "prepare_crypto_data", "run_backtest", "run_forecast", "run_lstf", "train_crypto",
           "train_model", "train_symbols", "walk_forward_for"]

if TYPE_CHECKING:
    from .attention_plot import plot_attention
    from .backtest import BacktestOptions, BacktestRun, backtest_run
    from .crypto import (
        CryptoData,
        LatestPrediction,
        TrainReport,
        evaluate_crypto,
        predict_all,
        predict_latest,
        prepare_crypto_data,
        train_crypto,
    )
    from .crypto_folds import FoldSettings, evaluate_walk_forward
    from .lstf import run_lstf
    from .model_backtest import run_backtest, walk_forward_for
    from .multi_symbol import MultiSymbolReport, train_symbols
    from .predict import Predicted, PredictOptions, predict_run
    from .series import EvaluateOptions, ForecastRun, forecast_run_from_tables, run_forecast
    from .series_models import SeriesForecast, forecast_all, forecast_latest, load_series_checkpoint
    from .train import TrainOptions, TrainOutcome, load_candles, train_model
    from .walkforward import FoldRecord, WalkForwardConfig, WalkForwardPredictor


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'reformer.pipelines' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value

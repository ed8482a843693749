"""Training: the fit loop, checkpoints, metrics, baselines and the crypto train / evaluate / predict pipeline.

    fit(model, train, val, TrainConfig(...), out_dir=...)      reformer.training.loop
    save_checkpoint / load_checkpoint                          reformer.training.checkpoint (safetensors + JSON)
    regression_metrics / classification_metrics                reformer.training.metrics
    zero / momentum / ridge, repeat / linear (series) baselines reformer.training.baselines
    train_crypto / evaluate_crypto / predict_latest / ...      reformer.training.crypto
    evaluate_walk_forward (folds pooled, beside baselines)     reformer.training.crypto_folds
    WalkForwardPredictor (for run_backtest)                    reformer.training.walkforward
    run_lstf (any CSV series; out_dir= keeps the model)        reformer.training.lstf
    forecast_latest / forecast_all (series checkpoints)        reformer.training.series
"""

from .attention_plot import plot_attention
from .baselines import RidgeModel, fit_ridge, momentum_forecast, select_ridge, window_summary, zero_forecast
from .checkpoint import (
    load_checkpoint,
    load_optimizer_state,
    read_meta,
    resolve_checkpoint_dir,
    save_checkpoint,
    update_meta,
)
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
from .loop import EpochEnd, FitResult, TrainConfig, fit, lr_at_step, predict_dataset
from .lstf import run_lstf
from .metrics import classification_metrics, regression_metrics
from .series import SeriesForecast, forecast_all, forecast_latest, load_series_checkpoint
from .walkforward import FoldRecord, WalkForwardConfig, WalkForwardPredictor

__all__ = [
    "CryptoData",
    "EpochEnd",
    "FitResult",
    "FoldRecord",
    "FoldSettings",
    "LatestPrediction",
    "RidgeModel",
    "SeriesForecast",
    "TrainConfig",
    "TrainReport",
    "WalkForwardConfig",
    "WalkForwardPredictor",
    "classification_metrics",
    "evaluate_crypto",
    "evaluate_walk_forward",
    "fit",
    "fit_ridge",
    "forecast_all",
    "forecast_latest",
    "load_checkpoint",
    "load_optimizer_state",
    "load_series_checkpoint",
    "lr_at_step",
    "momentum_forecast",
    "plot_attention",
    "predict_all",
    "predict_dataset",
    "predict_latest",
    "prepare_crypto_data",
    "read_meta",
    "regression_metrics",
    "resolve_checkpoint_dir",
    "run_lstf",
    "save_checkpoint",
    "select_ridge",
    "train_crypto",
    "update_meta",
    "window_summary",
    "zero_forecast",
]

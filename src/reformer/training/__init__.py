"""Training: the fit loop, checkpoints, metrics and baselines, for any model and any data.

    fit(model, train, val, TrainConfig(...), out_dir=...)      reformer.training.loop
    save_checkpoint / load_checkpoint, CandleMeta / SeriesMeta  reformer.training.checkpoint (safetensors + JSON)
    regression_metrics / classification_metrics                reformer.training.metrics
    zero / momentum / ridge, repeat / linear (series) baselines reformer.training.baselines

The workflows built on these (train a candle model, walk forward, forecast a CSV series) are in
`reformer.pipelines`, one layer up: nothing here imports them.
"""

from .baselines import RidgeModel, fit_ridge, momentum_forecast, select_ridge, window_summary, zero_forecast
from .checkpoint import (
    load_checkpoint,
    load_optimizer_state,
    read_meta,
    resolve_checkpoint_dir,
    save_checkpoint,
    update_meta,
)
from .config import TrainConfig
from .loop import EpochEnd, FitResult, fit, lr_at_step, predict_dataset
from .metrics import classification_metrics, regression_metrics

__all__ = [
    "EpochEnd",
    "FitResult",
    "RidgeModel",
    "TrainConfig",
    "classification_metrics",
    "fit",
    "fit_ridge",
    "load_checkpoint",
    "load_optimizer_state",
    "lr_at_step",
    "momentum_forecast",
    "predict_dataset",
    "read_meta",
    "regression_metrics",
    "resolve_checkpoint_dir",
    "save_checkpoint",
    "select_ridge",
    "update_meta",
    "window_summary",
    "zero_forecast",
]

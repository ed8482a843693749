"""The crypto pipeline the CLI calls: train on candles, evaluate beside baselines, predict, plot attention.

    report = train_crypto(frame, seq_len=168, horizon=24, out_dir="runs/btc_1h")   # run dir + evaluation.json
    latest = predict_latest("runs/btc_1h", frame)                                  # the newest bar's forecast
    table = predict_all("runs/btc_1h", frame)                                      # one row per window

Reading a kept model back (`predict_*`, `first_unseen_bar`) lives in `crypto_predict` and is re-exported here.

Targets are forward log returns ln(C_{t+h}/C_t) of the window's last bar t (or down/flat/up classes, or with
task="realized-vol" the log realised variance of bars t+1 .. t+h: `crypto_vol`). Splits are chronological
70/10/20 with an embargo of `horizon` bars, the feature scaler is fitted on training rows only, and regression
targets are divided by the training targets' std (`target_scale`, stored in the checkpoint; ln RV is first
centred, `target_offset`) so the loss is O(1); every prediction reported is back in target units. The test
metrics are computed on the same test windows for the model and the three baselines of
`reformer.training.baselines` (for realized-vol: ridge and the volatility baselines of `crypto_vol`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from reformer.data import DataLoader, FeatureSpec
from reformer.data.dataset import WindowDataset, klines_to_frame
from reformer.data.windows import TASKS, Task, bar_step
from reformer.errors import ConfigError, UserInputError
from reformer.files import atomic_write_text
from reformer.model import ReformerConfig, ReformerModel
from reformer.pipelines.crypto_eval import (
    CryptoData,
    crypto_data,
    held_out_forecasts,
    outputs_to_scores,
    realised_targets,
    score_forecasts,
    split_ranges,
)
from reformer.pipelines.crypto_predict import (
    LatestPrediction,
    checkpoint_inputs,
    checkpoint_residual_var,
    first_unseen_bar,
    latest_from_inputs,
    predict_all,
    predict_all_predictions,
    predict_latest,
    window_inputs,
)
from reformer.pipelines.crypto_vol import VOL, residual_variance, score_vol_forecasts, vol_forecasts
from reformer.training import distributed
from reformer.training.checkpoint import update_meta
from reformer.training.ddp import on_main
from reformer.training.loop import EpochEnd, FitResult, TrainConfig, fit, predict_dataset
from reformer.training.meta import CandleData, CandleMeta
from reformer.training.metrics import directional_accuracy, information_coefficient, json_safe
from reformer.training.run_dir import check_run_dir, clear_run_dir

__all__ = ["CryptoData", "LatestPrediction", "TrainReport", "checkpoint_inputs", "evaluate_crypto",
           "first_unseen_bar", "latest_from_inputs", "predict_all", "predict_all_predictions", "predict_latest",
           "prepare_crypto_data", "train_crypto", "window_inputs"]


@dataclass(frozen=True)
class TrainReport:
    """What `train_crypto` did: where the run is, the fit outcome and the test evaluation (model + baselines)."""

    run_dir: Path
    fit: FitResult
    evaluation: dict[str, Any]
    data: CryptoData


def prepare_crypto_data(frame: pd.DataFrame, seq_len: int, horizon: int, *, task: Task = "regression",
                        class_threshold: float = 0.0, normalization: Literal["train", "window", "none"] = "train",
                        spec: FeatureSpec | None = None) -> CryptoData:
    """Windows, the 70/10/20 chronological split (embargo = horizon) and the datasets `train_crypto` trains on."""
    prepared = DataLoader(spec).prepare_dataset(frame, seq_len, horizon, task=task, class_threshold=class_threshold,
                                                normalization=normalization, fractions=(0.7, 0.1, 0.2),
                                                embargo=horizon)
    return crypto_data(prepared, task)


def _evaluate(model: ReformerModel, data: CryptoData, frame: pd.DataFrame, task: str, device: str | torch.device,
              batch_size: int = 256, residual_var: float = 0.0) -> dict[str, Any]:
    """The test evaluation; `residual_var`: realized-vol's s2 (the model's variance forecast)."""
    prepared = data.prepared
    horizon = prepared.config.horizon
    if task == VOL:
        scored = score_vol_forecasts(vol_forecasts(model, data, frame, device, residual_var, batch_size), horizon)
    else:
        scored = score_forecasts(held_out_forecasts(model, data, frame, task, device, batch_size), horizon)
    return {"task": task, "horizon": horizon, "seq_len": prepared.config.seq_len, **scored,
            "splits": split_ranges(prepared)}


def checkpoint_meta(data: CryptoData, frame: pd.DataFrame, task: str, class_threshold: float,
                    source: dict[str, Any] | None) -> CandleMeta:
    """What a candle checkpoint stores beside its weights: task, horizon, target scale, features, dataset
    settings, the training scaler and the data range (`frame`: the candles the windows came from)."""
    prepared = data.prepared
    stamps = frame["timestamp"].to_numpy()
    candles = CandleData(int(stamps[0]), int(stamps[-1]), len(frame), bar_step(stamps), dict(source or {}))
    return CandleMeta(task=task, horizon=prepared.config.horizon, feature_spec=prepared.spec,
                      feature_names=tuple(prepared.feature_names), dataset=prepared.config, scaler=prepared.scaler,
                      data=candles, target_scale=data.target_scale, class_threshold=class_threshold,
                      target_offset=data.target_offset)


def train_crypto(frame: pd.DataFrame, *, seq_len: int = 168, horizon: int = 24,
                 model_overrides: dict[str, Any] | None = None, train_config: TrainConfig | None = None,
                 out_dir: str | os.PathLike[str], task: Task = "regression", class_threshold: float = 0.0,
                 normalization: Literal["train", "window", "none"] = "train", spec: FeatureSpec | None = None,
                 source: dict[str, Any] | None = None, progress: bool = True, resume: bool = False,
                 force: bool = False) -> TrainReport:
    """Train a Reformer on candles and write the run directory (checkpoints, metrics.csv, evaluation.json).

    Args:
        frame: candles (timestamp, open, high, low, close, volume[, turnover]) in time order.
        seq_len, horizon: window length and target horizon in bars.
        model_overrides: `ReformerConfig` fields (seq_len, n_features, task are set from the data).
        train_config: `TrainConfig` (classification always uses cross-entropy).
        out_dir: the run directory.
        task, class_threshold, normalization, spec: see `DataLoader.prepare_dataset` ("realized-vol": the log
            realised variance, scored beside volatility baselines, `crypto_vol`).
        source: where the candles came from (symbol, interval, category, csv), stored in the checkpoint.
        progress: show the progress bar.
        resume: continue the interrupted run in `out_dir` from its `last/` checkpoint (same model and data
            settings; `train_config.epochs` may be raised).
        force: start over in an `out_dir` that holds a run: its files are replaced (without it, or `resume`, such
            an `out_dir` is refused).

    Returns:
        `TrainReport` with the evaluation dict also written to `out_dir/evaluation.json`.

    Raises:
        ConfigError: inconsistent options. UserInputError / DataFormatError: too few or bad candles, or `out_dir`
            holds a run and neither `resume` nor `force` was given.
    """
    run_dir = Path(out_dir)
    check_run_dir(run_dir, resume=resume, force=force)
    frame = klines_to_frame(frame)  # a `start_time` column, datetimes or a DatetimeIndex: as DataLoader takes them
    # the model's fields are checked before the data are read: a typo in a config file is named first
    model_config, config = crypto_configs(seq_len, task, model_overrides, train_config)
    data = prepare_crypto_data(frame, seq_len, horizon, task=task, class_threshold=class_threshold,
                               normalization=normalization, spec=spec)
    model_config = model_config.replace(n_features=len(data.prepared.feature_names))
    model = ReformerModel(model_config)
    meta = checkpoint_meta(data, frame, task, class_threshold, source)
    if resume and not (run_dir / "last" / "checkpoint.json").is_file():
        raise UserInputError(f"{run_dir}: nothing to resume (no last/ checkpoint); drop --resume to start a new run "
                             "there, or pass the interrupted run's directory")
    if force and distributed.is_main():  # the old run goes only now, once the new one's settings and data passed
        clear_run_dir(run_dir)
    distributed.barrier()
    result = fit(model, data.train, data.val, config, out_dir=run_dir, checkpoint_meta=meta.to_dict(),
                 progress=progress,
                 on_epoch=validation_metrics(data, task), resume=run_dir if resume else None)
    # under torchrun rank 0 evaluates and writes, the others wait for its evaluation
    evaluation = on_main(lambda: _evaluate_run(model, data, frame, task, config, run_dir, result, meta))
    model.to("cpu")
    return TrainReport(run_dir, result, evaluation, data)


def _evaluate_run(model: ReformerModel, data: CryptoData, frame: pd.DataFrame, task: str, config: TrainConfig,
                  run_dir: Path, result: FitResult, meta: CandleMeta) -> dict[str, Any]:
    device = next(model.parameters()).device
    val_rmse = validation_rmse(model, data, task, device, config.eval_batch_size)
    residual_var = val_rmse ** 2 if task == VOL else None  # the mean squared validation residual of ln RV
    evaluation = _evaluate(model, data, frame, task, device, config.eval_batch_size, residual_var or 0.0)
    evaluation.update(best_epoch=result.best_epoch, best_val_loss=result.best_val_loss,
                      stopped_early=result.stopped_early, epochs_run=len(result.history), val_rmse=val_rmse,
                      device=str(device), data=meta.data.to_dict())
    evaluation = json_safe(evaluation)
    atomic_write_text(run_dir / "evaluation.json", json.dumps(evaluation, indent=2) + "\n")
    annotate_run(run_dir, result, val_rmse, evaluation, residual_var)
    return evaluation


def crypto_configs(seq_len: int, task: str, model_overrides: dict[str, Any] | None,
                   train_config: TrainConfig | None) -> tuple[ReformerConfig, TrainConfig]:
    """The model's config (its fields checked; n_features still to set from the data; a realized-vol model is a
    regression model of ln RV) and the training config (cross-entropy for a classifier)."""
    if task not in TASKS:  # named here, before the model's config reads it as a model task
        raise ConfigError(f"task={task!r} is invalid: use one of {', '.join(TASKS)}")
    overrides = dict(model_overrides or {})
    if overrides.get("seq_len", seq_len) != seq_len:
        raise ConfigError(f"model seq_len={overrides['seq_len']} differs from seq_len={seq_len}: set one of them")
    config = train_config or TrainConfig()
    if task == "classification":
        config = config.replace(loss="cross_entropy")
    elif config.loss == "cross_entropy":
        raise ConfigError(f"TrainConfig.loss='cross_entropy' needs task='classification', not {task!r}; use 'mse' "
                          "or 'huber'")
    model_task = "regression" if task == VOL else task
    return ReformerConfig.from_dict({**overrides, "seq_len": seq_len, "task": model_task}), config


def validation_metrics(data: CryptoData, task: str) -> Callable[[EpochEnd], dict[str, float]]:
    """`fit`'s per-epoch extras: the validation IC and directional accuracy (`metrics.csv`, the progress bar); for
    realized-vol the IC against ln RV only (a variance has no direction)."""
    realised = realised_targets(data.prepared, task)[data.prepared.split.val]

    def metrics(end: EpochEnd) -> dict[str, float]:
        score, _ = outputs_to_scores(end.val_predictions, task, 1.0)  # a positive scale and offset change no rank
        if task == VOL:
            return {"val_ic": information_coefficient(score, realised)}
        return {"val_ic": information_coefficient(score, realised),
                "val_dir_acc": directional_accuracy(score, realised)}

    return metrics


def validation_rmse(model: ReformerModel, data: CryptoData, task: str, device: str | torch.device,
                    batch_size: int = 256) -> float:
    """RMSE of the model's validation forecasts in target units: returns (predict's confidence scale), or ln RV
    (its square is realized-vol's s2, `crypto_vol`)."""
    outputs, _ = predict_dataset(model, data.val, batch_size, device)
    score, _ = outputs_to_scores(outputs, task, data.target_scale, data.target_offset)
    realised = realised_targets(data.prepared, task)[data.prepared.split.val]
    return float(np.sqrt(residual_variance(score, realised)))


def annotate_run(run_dir: Path | None, result: FitResult, val_rmse: float, evaluation: dict[str, Any],
                 residual_var: float | None = None) -> None:
    """Store the validation RMSE (and realized-vol's s2) and the evaluation in best/, and the RMSE (and s2) in
    last/ (predict's confidence and variance from either; `first_unseen_bar` reads the evaluation's split)."""
    extra = {} if residual_var is None else {"residual_var": residual_var}
    if result.best_checkpoint is not None:
        update_meta(result.best_checkpoint, val_rmse=val_rmse, evaluation=evaluation, **extra)
    if run_dir is not None and (run_dir / "last" / "checkpoint.json").is_file():
        update_meta(run_dir / "last", val_rmse=val_rmse, **extra)


def evaluate_crypto(checkpoint: str | os.PathLike[str], frame: pd.DataFrame) -> dict[str, Any]:
    """Test metrics of a checkpoint beside the baselines, on the 70/10/20 split of `frame` (the checkpoint's
    scaler, seq_len, horizon and task; the test split is the last 20% of the windows of this frame)."""
    model, meta, inputs = checkpoint_inputs(checkpoint, frame)
    s2 = checkpoint_residual_var(meta, checkpoint) if meta.task == VOL else 0.0
    dataset = meta.dataset
    data = prepare_crypto_data(frame, dataset.seq_len, dataset.horizon, task=dataset.task,
                               class_threshold=dataset.class_threshold, normalization=dataset.normalization,
                               spec=meta.feature_spec)
    # the windows of this split, but scaled with the checkpoint's scaler (not one refitted on this frame)
    rows = np.searchsorted(inputs.end_bars, data.prepared.end_bars)
    features = inputs.features[torch.as_tensor(rows)]
    prepared = data.prepared
    scale, offset = meta.target_scale, meta.target_offset
    realised = realised_targets(prepared, meta.task)
    targets = (prepared.targets if meta.task == "classification"
               else torch.from_numpy(((realised - offset) / scale).astype(np.float32)))
    split = prepared.split
    rebuilt = CryptoData(prepared, WindowDataset(features, targets, split.train),
                         WindowDataset(features, targets, split.val), WindowDataset(features, targets, split.test),
                         scale, offset)
    return json_safe(_evaluate(model, rebuilt, frame, meta.task, "cpu", residual_var=s2))

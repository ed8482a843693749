"""The crypto pipeline the CLI calls: train on candles, evaluate beside baselines, predict, plot attention.

    report = train_crypto(frame, seq_len=168, horizon=24, out_dir="runs/btc_1h")   # run dir + evaluation.json
    latest = predict_latest("runs/btc_1h", frame)                                  # the newest bar's forecast
    table = predict_all("runs/btc_1h", frame)                                      # one row per window

Targets are forward log returns ln(C_{t+h}/C_t) of the window's last bar t (or down/flat/up classes). Splits are
chronological 70/10/20 with an embargo of `horizon` bars, the feature scaler is fitted on training rows only, and
regression targets are divided by the training targets' std (`target_scale`, stored in the checkpoint) so the
loss is O(1); every prediction reported is back in log-return units. The test metrics are computed on the same
test windows for the model and the three baselines of `reformer.training.baselines`.

Regression confidence = Phi(|prediction| / validation RMSE): the probability, under Gaussian errors of the
validation size, that the realised return has the predicted sign (0.5 .. 1). Classification confidence = the
largest class probability.
"""

from __future__ import annotations

import dataclasses
import json
import math
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
from reformer.data.windows import bar_step
from reformer.errors import ConfigError, DataFormatError, UserInputError
from reformer.files import atomic_write_text
from reformer.model import ReformerConfig, ReformerModel
from reformer.pipelines.crypto_eval import (
    CryptoData,
    crypto_data,
    held_out_forecasts,
    outputs_to_scores,
    score_forecasts,
    split_ranges,
)
from reformer.predictions import Predictions, data_interval
from reformer.training import distributed
from reformer.training.checkpoint import load_checkpoint, resolve_checkpoint_dir, update_meta
from reformer.training.ddp import on_main
from reformer.training.loop import EpochEnd, FitResult, TrainConfig, fit, predict_dataset
from reformer.training.meta import CandleData, CandleMeta
from reformer.training.metrics import directional_accuracy, information_coefficient, json_safe
from reformer.training.run_dir import check_run_dir, clear_run_dir

__all__ = ["CryptoData", "LatestPrediction", "TrainReport", "evaluate_crypto", "first_unseen_bar",
           "latest_from_inputs", "predict_all", "predict_all_predictions", "predict_latest", "prepare_crypto_data",
           "train_crypto", "window_inputs"]

Task = Literal["regression", "classification"]
_DIRECTIONS = ("down", "flat", "up")


@dataclass(frozen=True)
class TrainReport:
    """What `train_crypto` did: where the run is, the fit outcome and the test evaluation (model + baselines)."""

    run_dir: Path
    fit: FitResult
    evaluation: dict[str, Any]
    data: CryptoData


@dataclass(frozen=True)
class LatestPrediction:
    """The forecast for the newest window."""

    timestamp: int
    """Open time (epoch ms UTC) of the window's last bar."""
    predicted_return: float
    """Predicted ln(C_{t+h} / C_t) (regression), or p_up - p_down (classification)."""
    direction: str
    """"up", "down" or "flat"."""
    confidence: float
    """See the module docstring (0.5 .. 1 for regression)."""
    horizon: int
    task: str = "regression"
    """The checkpoint's task: "regression" or "classification" (then `predicted_return` is p_up - p_down)."""

    def to_dict(self) -> dict[str, Any]:
        return {"timestamp": self.timestamp, "predicted_return": self.predicted_return,
                "direction": self.direction, "confidence": self.confidence, "horizon": self.horizon,
                "task": self.task}


def prepare_crypto_data(frame: pd.DataFrame, seq_len: int, horizon: int, *, task: Task = "regression",
                        class_threshold: float = 0.0, normalization: Literal["train", "window", "none"] = "train",
                        spec: FeatureSpec | None = None) -> CryptoData:
    """Windows, the 70/10/20 chronological split (embargo = horizon) and the datasets `train_crypto` trains on."""
    prepared = DataLoader(spec).prepare_dataset(frame, seq_len, horizon, task=task, class_threshold=class_threshold,
                                                normalization=normalization, fractions=(0.7, 0.1, 0.2),
                                                embargo=horizon)
    return crypto_data(prepared, task)


def _evaluate(model: ReformerModel, data: CryptoData, frame: pd.DataFrame, task: str, device: str | torch.device,
              batch_size: int = 256) -> dict[str, Any]:
    prepared = data.prepared
    horizon = prepared.config.horizon
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
                      data=candles, target_scale=data.target_scale, class_threshold=class_threshold)


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
        task, class_threshold, normalization, spec: see `DataLoader.prepare_dataset`.
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
    evaluation = _evaluate(model, data, frame, task, device, config.eval_batch_size)
    evaluation.update(best_epoch=result.best_epoch, best_val_loss=result.best_val_loss,
                      stopped_early=result.stopped_early, epochs_run=len(result.history), val_rmse=val_rmse,
                      device=str(device), data=meta.data.to_dict())
    evaluation = json_safe(evaluation)
    atomic_write_text(run_dir / "evaluation.json", json.dumps(evaluation, indent=2) + "\n")
    annotate_run(run_dir, result, val_rmse, evaluation)
    return evaluation


def crypto_configs(seq_len: int, task: str, model_overrides: dict[str, Any] | None,
                   train_config: TrainConfig | None) -> tuple[ReformerConfig, TrainConfig]:
    """The model's config (its fields checked; n_features still to set from the data) and the training config
    (cross-entropy for a classifier)."""
    overrides = dict(model_overrides or {})
    if overrides.get("seq_len", seq_len) != seq_len:
        raise ConfigError(f"model seq_len={overrides['seq_len']} differs from seq_len={seq_len}: set one of them")
    config = train_config or TrainConfig()
    if task == "classification":
        config = config.replace(loss="cross_entropy")
    elif config.loss == "cross_entropy":
        raise ConfigError("TrainConfig.loss='cross_entropy' needs task='classification'; use 'mse' or 'huber'")
    return ReformerConfig.from_dict({**overrides, "seq_len": seq_len, "task": task}), config


def validation_metrics(data: CryptoData, task: str) -> Callable[[EpochEnd], dict[str, float]]:
    """`fit`'s per-epoch extras: the validation IC and directional accuracy (`metrics.csv`, the progress bar)."""
    returns = data.prepared.forward_returns[data.prepared.split.val]

    def metrics(end: EpochEnd) -> dict[str, float]:
        score, _ = outputs_to_scores(end.val_predictions, task, 1.0)
        return {"val_ic": information_coefficient(score, returns), "val_dir_acc": directional_accuracy(score, returns)}

    return metrics


def validation_rmse(model: ReformerModel, data: CryptoData, task: str, device: str | torch.device,
                    batch_size: int = 256) -> float:
    """RMSE of the model's validation forecasts in return units: predict's confidence scale."""
    outputs, _ = predict_dataset(model, data.val, batch_size, device)
    score, _ = outputs_to_scores(outputs, task, data.target_scale)
    return float(np.sqrt(np.mean((score - data.prepared.forward_returns[data.prepared.split.val]) ** 2)))


def annotate_run(run_dir: Path | None, result: FitResult, val_rmse: float, evaluation: dict[str, Any]) -> None:
    """Store the validation RMSE and the evaluation in best/, and the RMSE in last/ (predict's confidence from
    either; `first_unseen_bar` reads the evaluation's split)."""
    if result.best_checkpoint is not None:
        update_meta(result.best_checkpoint, val_rmse=val_rmse, evaluation=evaluation)
    if run_dir is not None and (run_dir / "last" / "checkpoint.json").is_file():
        update_meta(run_dir / "last", val_rmse=val_rmse)


def _duration(ms: int) -> str:
    """Bar step in words: 15-minute, 1-hour, 1-day."""
    for unit, size in (("day", 86_400_000), ("hour", 3_600_000), ("minute", 60_000)):
        if ms % size == 0:
            return f"{ms // size}-{unit}"
    return f"{ms / 1000:g}-second"


def _check_bar_step(checkpoint: str | os.PathLike[str], trained_ms: int, frame: pd.DataFrame) -> None:
    """Candles of another interval than the training data's (4-hour bars into a 1-hour model) are refused: the
    model's horizon, features and windows are counted in bars. A checkpoint without a stored `bar_ms` passes.
    A tolerance of 1.5x keeps calendar months (28-31 days) one interval."""
    step = bar_step(frame["timestamp"].to_numpy()) if len(frame) > 1 else 0
    if trained_ms and step and not trained_ms / 1.5 < step < trained_ms * 1.5:
        raise UserInputError(f"the candles are {_duration(step)} bars, but {checkpoint} was trained on "
                             f"{_duration(trained_ms)} bars; give candles of the training interval")


def checkpoint_inputs(checkpoint: str | os.PathLike[str], frame: pd.DataFrame, stride: int = 1,
                      symbol: str | None = None) -> tuple[ReformerModel, CandleMeta, Any]:
    """The checkpoint's model and description, and `frame`'s windows built and scaled as its training data's were.

    Raises:
        DataFormatError: not a candle model's checkpoint, or candles it cannot read (turnover, features).
        UserInputError: candles of another interval than the training data's.
    """
    meta = CandleMeta.read(checkpoint, symbol)  # checked before any weight is read; `symbol`: of a multi-symbol model
    model, _ = load_checkpoint(checkpoint)
    return model, meta, window_inputs(checkpoint, model, meta, frame, stride)


def window_inputs(checkpoint: str | os.PathLike[str], model: ReformerModel, meta: CandleMeta, frame: pd.DataFrame,
                  stride: int = 1) -> Any:
    """`frame`'s windows as the loaded checkpoint's training data were built and scaled (`checkpoint_inputs`
    without reading the checkpoint again)."""
    frame = klines_to_frame(frame)
    _check_bar_step(checkpoint, meta.data.bar_ms or 0, frame)
    spec = dataclasses.replace(meta.feature_spec, allow_missing_turnover=False)
    if "turnover_z" in spec.groups and ("turnover" not in frame.columns or frame["turnover"].isna().all()):
        raise DataFormatError(f"{checkpoint} was trained with turnover (feature turnover_z) and these candles have "
                              "none: give candles with a turnover column (the export format has one)")
    inputs = DataLoader(spec).prepare_inputs(frame, model.config.seq_len, scaler=meta.scaler,
                                             normalization=meta.dataset.normalization, stride=stride)
    if tuple(inputs.feature_names) != meta.feature_names:
        raise DataFormatError(f"{checkpoint}: features {list(inputs.feature_names)} differ from the trained "
                              f"{list(meta.feature_names)}; use candles like the training data")
    return inputs


def first_unseen_bar(checkpoint: str | os.PathLike[str], symbol: str | None = None) -> tuple[int, str]:
    """The open time (epoch ms) of the first bar no weight of the checkpoint was fitted on, and how it was found:
    its held-out test split's first window end (the embargo put the last validation target before it), or the
    bar after all of its data when the checkpoint does not record the split (e.g. `last/`).

    Every reader of that bar (`predict_all_predictions`, `reformer backtest`, the demo) asks here."""
    meta = CandleMeta.read(checkpoint, symbol)
    if meta.test_start is not None:
        return meta.test_start, "from its held-out test split on"
    return meta.data.last_timestamp + (meta.data.bar_ms or 1), "after its training data"


def predict_all_predictions(checkpoint: str | os.PathLike[str], frame: pd.DataFrame, batch_size: int = 256,
                            bfloat16: bool = False, symbol: str | None = None) -> Predictions:
    """`predict_all` as `Predictions` (float64, indexed by bar open time) with the checkpoint's interval, horizon
    and first out-of-sample bar (`first_unseen_bar`), and its directory as the source."""
    table = predict_all(checkpoint, frame, batch_size, bfloat16, symbol)
    directory = resolve_checkpoint_dir(checkpoint)
    meta = CandleMeta.read(directory, symbol)
    index = pd.DatetimeIndex(pd.to_datetime(table["timestamp"].to_numpy(np.int64), unit="ms", utc=True))
    columns = table.drop(columns="timestamp").astype("float64").set_axis(index)
    values = columns if len(columns.columns) > 1 else columns["prediction"]
    first, _ = first_unseen_bar(directory, symbol)
    interval = data_interval(meta.data.interval, meta.data.bar_ms, table["timestamp"].to_numpy())
    return Predictions(values, interval=interval, horizon=meta.horizon, first_out_of_sample=first,
                       source=str(directory))


def predict_all(checkpoint: str | os.PathLike[str], frame: pd.DataFrame, batch_size: int = 256,
                bfloat16: bool = False, symbol: str | None = None) -> pd.DataFrame:
    """Predictions for every window whose last bar is in `frame` (after the feature warm-up); `bfloat16` runs the
    matrix products in bfloat16 (CPU autocast: faster at long windows, outputs within ~1e-2 relative).

    Returns:
        DataFrame with `timestamp` (open time, epoch ms, of each window's last bar) and `prediction` (forward log
        return over the horizon; for classification p_up - p_down, plus columns p_down, p_flat, p_up).

    Raises:
        DataFormatError: the checkpoint used turnover and the candles have none, or other feature mismatches.
    """
    model, meta, inputs = checkpoint_inputs(checkpoint, frame, symbol=symbol)
    outputs, _ = predict_dataset(model, WindowDataset(inputs.features, torch.zeros(len(inputs.timestamps))),
                                 batch_size, bfloat16=bfloat16)
    score, probs = outputs_to_scores(outputs, meta.task, meta.target_scale)
    table = pd.DataFrame({"timestamp": inputs.timestamps.astype(np.int64), "prediction": score})
    if probs is not None:
        for i, name in enumerate(("p_down", "p_flat", "p_up")[: probs.shape[1]]):
            table[name] = probs[:, i]
    return table


def predict_latest(checkpoint: str | os.PathLike[str], frame: pd.DataFrame,
                   bfloat16: bool = False, symbol: str | None = None) -> LatestPrediction:
    """The forecast for the window ending at the last candle of `frame` (pass closed candles only); `bfloat16` as
    in `predict_all`; `symbol`: which of a multi-symbol model's symbols `frame` is."""
    model, meta, inputs = checkpoint_inputs(checkpoint, frame, symbol=symbol)
    return latest_from_inputs(model, meta, inputs, len(frame), bfloat16)


def latest_from_inputs(model: ReformerModel, meta: CandleMeta, inputs: Any, n_candles: int,
                       bfloat16: bool = False, outputs: torch.Tensor | None = None) -> LatestPrediction:
    """`predict_latest` on windows already built (`window_inputs`) from `n_candles` candles; `outputs`: the
    model's output `[1, o]` for the last window when the caller has already run it."""
    if int(inputs.end_bars[-1]) != n_candles - 1:  # windows over a gap are left out (`windows.gap_free_ends`)
        raise UserInputError(f"the latest {model.config.seq_len} candles (and their feature warm-up) hold a gap: "
                             "fetch the missing candles before predicting")
    if outputs is None:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
            outputs = model(inputs.features[-1:]).float()
    score, probs = outputs_to_scores(outputs, meta.task, meta.target_scale)
    if probs is not None:
        label = int(probs[0].argmax())
        direction, confidence = _DIRECTIONS[label] if probs.shape[1] == 3 else str(label), float(probs[0].max())
    else:
        value = float(score[0])
        direction = "up" if value > 0 else "down" if value < 0 else "flat"
        rmse = meta.val_rmse or meta.target_scale or 1.0
        confidence = 0.5 * (1.0 + math.erf(abs(value) / rmse / math.sqrt(2.0)))
    return LatestPrediction(int(inputs.timestamps[-1]), float(score[0]), direction, confidence, meta.horizon,
                            meta.task)


def evaluate_crypto(checkpoint: str | os.PathLike[str], frame: pd.DataFrame) -> dict[str, Any]:
    """Test metrics of a checkpoint beside the baselines, on the 70/10/20 split of `frame` (the checkpoint's
    scaler, seq_len, horizon and task; the test split is the last 20% of the windows of this frame)."""
    model, meta, inputs = checkpoint_inputs(checkpoint, frame)
    dataset = meta.dataset
    data = prepare_crypto_data(frame, dataset.seq_len, dataset.horizon, task=dataset.task,
                               class_threshold=dataset.class_threshold, normalization=dataset.normalization,
                               spec=meta.feature_spec)
    # the windows of this split, but scaled with the checkpoint's scaler (not one refitted on this frame)
    rows = np.searchsorted(inputs.end_bars, data.prepared.end_bars)
    features = inputs.features[torch.as_tensor(rows)]
    prepared = data.prepared
    scale = meta.target_scale
    targets = (prepared.targets if meta.task == "classification"
               else torch.from_numpy((prepared.forward_returns / scale).astype(np.float32)))
    split = prepared.split
    rebuilt = CryptoData(prepared, WindowDataset(features, targets, split.train),
                         WindowDataset(features, targets, split.val), WindowDataset(features, targets, split.test),
                         scale)
    return json_safe(_evaluate(model, rebuilt, frame, meta.task, "cpu"))

"""Many symbols, one model: train a Reformer on every symbol's windows, evaluate it per symbol and pooled.

    report = train_symbols({"BTCUSDT": btc, "ETHUSDT": eth}, seq_len=168, horizon=24, out_dir="runs/majors")
    report.evaluation["per_symbol"]["ETHUSDT"]["model"]["ic"]    # each beside its own baselines
    report.evaluation["pooled"]["model"]["ic"]                   # all symbols' test windows as one

Shared: the model, the feature spec, the dataset settings and the calendar split (`reformer.data.multi`: borders
are times, so no symbol's test period reaches into another's training). Per symbol: the feature scaler (fitted on
that symbol's training rows) and the regression target scale (the std of its training targets), so a quiet and a
wild symbol both reach the model at unit scale; predictions go back to each symbol's log-return units. The
training windows of all symbols are shuffled together; validation (early stopping) pools every symbol's.

The baselines (zero, momentum, ridge) are fitted per symbol on that symbol's own split, as `train_crypto`'s are;
the pooled block concatenates the per-symbol forecasts and scores them as one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from reformer.data import FeatureSpec
from reformer.data.dataset import WindowDataset, klines_to_frame
from reformer.data.multi import CalendarSplit, prepare_symbols
from reformer.data.windows import Task
from reformer.errors import ConfigError, UserInputError
from reformer.files import atomic_write_text
from reformer.model import ReformerModel
from reformer.pipelines.crypto import crypto_configs, validation_rmse
from reformer.pipelines.crypto_eval import (
    CryptoData,
    concat_forecasts,
    crypto_data,
    held_out_forecasts,
    outputs_to_scores,
    score_forecasts,
    split_ranges,
)
from reformer.training.checkpoint import update_meta
from reformer.training.loop import EpochEnd, FitResult, TrainConfig, fit
from reformer.training.meta import CandleData, MultiSymbolMeta, SymbolEntry
from reformer.training.metrics import directional_accuracy, information_coefficient, json_safe
from reformer.training.run_dir import check_run_dir, clear_run_dir

__all__ = ["MultiSymbolReport", "pooled_dataset", "train_symbols"]



@dataclass(frozen=True)
class MultiSymbolReport:
    """What `train_symbols` did: the run directory, the fit, the evaluation and each symbol's datasets."""

    run_dir: Path
    fit: FitResult
    evaluation: dict[str, Any]
    data: dict[str, CryptoData]
    """symbol -> its windows and datasets (its own scaler and target scale)."""
    split: CalendarSplit


def pooled_dataset(data: Mapping[str, CryptoData], name: Literal["train", "val", "test"]) -> WindowDataset:
    """One split's windows of every symbol as one dataset, symbols in the order given (their targets already
    divided by each symbol's own target scale)."""
    parts = [getattr(symbol_data, name) for symbol_data in data.values()]
    features = torch.cat([part.features[torch.as_tensor(part.indices)] for part in parts])  # (w, l, f)
    targets = torch.cat([part.targets[torch.as_tensor(part.indices)] for part in parts])  # (w,)
    return WindowDataset(features, targets)


def _scaled_val_returns(data: Mapping[str, CryptoData]) -> np.ndarray:
    """The pooled validation windows' forward returns, each in its symbol's target units (as the model sees them)."""
    return np.concatenate([d.prepared.forward_returns[d.prepared.split.val] / d.target_scale for d in data.values()])


def _validation_metrics(data: Mapping[str, CryptoData], task: str) -> Callable[[EpochEnd], dict[str, float]]:
    returns = _scaled_val_returns(data)

    def metrics(end: EpochEnd) -> dict[str, float]:
        score, _ = outputs_to_scores(end.val_predictions, task, 1.0)
        return {"val_ic": information_coefficient(score, returns), "val_dir_acc": directional_accuracy(score, returns)}

    return metrics


def _meta(data: Mapping[str, CryptoData], frames: Mapping[str, pd.DataFrame], split: CalendarSplit, bar_ms: int,
          task: str, class_threshold: float, source: Mapping[str, Any] | None,
          val_rmse: Mapping[str, float] | None = None) -> MultiSymbolMeta:
    first = next(iter(data.values())).prepared
    entries = {}
    for symbol, symbol_data in data.items():
        stamps = frames[symbol]["timestamp"].to_numpy()
        candles = CandleData(int(stamps[0]), int(stamps[-1]), len(stamps), bar_ms, {**(source or {}), "symbol": symbol})
        entries[symbol] = SymbolEntry(symbol_data.prepared.scaler, symbol_data.target_scale, candles,
                                      None if val_rmse is None else val_rmse[symbol])
    return MultiSymbolMeta(task, first.config.horizon, first.spec, tuple(first.feature_names), first.config, split,
                           entries, class_threshold)


def train_symbols(frames: Mapping[str, pd.DataFrame], *, seq_len: int = 168, horizon: int = 24,
                  model_overrides: dict[str, Any] | None = None, train_config: TrainConfig | None = None,
                  out_dir: str | os.PathLike[str], task: Task = "regression", class_threshold: float = 0.0,
                  normalization: Literal["train", "window", "none"] = "train", spec: FeatureSpec | None = None,
                  source: Mapping[str, Any] | None = None, progress: bool = True, resume: bool = False,
                  force: bool = False) -> MultiSymbolReport:
    """Train one Reformer on several symbols' candles and write the run directory (checkpoints, metrics.csv,
    evaluation.json with per-symbol and pooled scores).

    Args:
        frames: symbol -> candles (timestamp, open, high, low, close, volume[, turnover]) in time order, one
            interval for all; the symbols' order is kept in the checkpoint and the evaluation.
        seq_len, horizon, model_overrides, train_config: as `train_crypto`.
        task, class_threshold, normalization, spec: as `train_crypto`.
        progress, resume, force: as `train_crypto`.
        out_dir: the run directory.
        source: where the candles came from (interval, category), stored with each symbol's `symbol`.

    Returns:
        `MultiSymbolReport`; its evaluation is also written to `out_dir/evaluation.json`.

    Raises:
        ConfigError: inconsistent options, or task "realized-vol". UserInputError / DataFormatError: no symbol, too
            few or bad candles, intervals that differ, a symbol without windows in a split, or `out_dir` holds a run
            and neither `resume` nor `force` was given.
    """
    if task not in ("regression", "classification"):  # realized-vol's variance and baselines are one symbol's
        raise ConfigError(f"task={task!r}: a model of several symbols forecasts returns ('regression' or "
                          "'classification'); train a realized-vol model one symbol at a time (train_crypto)")
    run_dir = Path(out_dir)
    check_run_dir(run_dir, resume=resume, force=force)
    frames = {symbol: klines_to_frame(frame) for symbol, frame in frames.items()}
    model_config, config = crypto_configs(seq_len, task, model_overrides, train_config)
    prepared = prepare_symbols(frames, seq_len, horizon, task=task, class_threshold=class_threshold,
                               normalization=normalization, embargo=horizon, spec=spec)
    data = {symbol: crypto_data(symbol_prepared, task) for symbol, symbol_prepared in prepared.symbols.items()}
    model_config = model_config.replace(n_features=len(next(iter(data.values())).prepared.feature_names))
    model = ReformerModel(model_config)
    meta = _meta(data, frames, prepared.split, prepared.bar_ms, task, class_threshold, source)
    if resume and not (run_dir / "last" / "checkpoint.json").is_file():
        raise UserInputError(f"{run_dir}: nothing to resume (no last/ checkpoint); drop --resume to start a new run "
                             "there, or pass the interrupted run's directory")
    if force:  # the old run goes only once the new one's settings and data have passed their checks
        clear_run_dir(run_dir)
    result = fit(model, pooled_dataset(data, "train"), pooled_dataset(data, "val"), config, out_dir=run_dir,
                 checkpoint_meta=meta.to_dict(), progress=progress, on_epoch=_validation_metrics(data, task),
                 resume=run_dir if resume else None)
    device = next(model.parameters()).device
    val_rmse = {symbol: validation_rmse(model, d, task, device, config.eval_batch_size) for symbol, d in data.items()}
    evaluation = _evaluate(model, data, frames, task, device, config.eval_batch_size)
    evaluation.update(split=prepared.split.to_dict(), best_epoch=result.best_epoch,
                      best_val_loss=result.best_val_loss, stopped_early=result.stopped_early,
                      epochs_run=len(result.history), device=str(device))
    for symbol, rmse in val_rmse.items():
        evaluation["per_symbol"][symbol]["val_rmse"] = rmse
    evaluation = json_safe(evaluation)
    atomic_write_text(run_dir / "evaluation.json", json.dumps(evaluation, indent=2) + "\n")
    symbols = _meta(data, frames, prepared.split, prepared.bar_ms, task, class_threshold, source, val_rmse)
    stored = {"symbols": {symbol: entry.to_dict() for symbol, entry in symbols.symbols.items()}}
    if result.best_checkpoint is not None:
        update_meta(result.best_checkpoint, **stored, evaluation=evaluation)
    if (run_dir / "last" / "checkpoint.json").is_file():
        update_meta(run_dir / "last", **stored)
    model.to("cpu")
    return MultiSymbolReport(run_dir, result, evaluation, data, prepared.split)


def _evaluate(model: ReformerModel, data: Mapping[str, CryptoData], frames: Mapping[str, pd.DataFrame], task: str,
              device: str | torch.device, batch_size: int) -> dict[str, Any]:
    """Test scores per symbol (each beside baselines fitted on that symbol's split) and pooled over all symbols."""
    first = next(iter(data.values())).prepared.config
    forecasts = {symbol: held_out_forecasts(model, d, frames[symbol], task, device, batch_size)
                 for symbol, d in data.items()}
    per_symbol = {symbol: {**score_forecasts(forecasts[symbol], first.horizon), "splits": split_ranges(d.prepared)}
                  for symbol, d in data.items()}
    pooled = score_forecasts(concat_forecasts(list(forecasts.values())), first.horizon)
    return {"task": task, "horizon": first.horizon, "seq_len": first.seq_len, "symbols": list(data),
            "per_symbol": per_symbol, "pooled": pooled}

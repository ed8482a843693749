"""A kept candle model read back: its windows built as its training data's were, and its forecasts.

    table = predict_all("runs/btc_1h", frame)                  # one row per window (`predict_all_predictions`:
                                                               # as `reformer.predictions.Predictions`)
    latest = predict_latest("runs/btc_1h", frame)              # the newest bar's forecast
    first, why = first_unseen_bar("runs/btc_1h")               # where its out-of-sample period starts

Regression confidence = Phi(|prediction| / validation RMSE): the probability, under Gaussian errors of the
validation size, that the realised return has the predicted sign (0.5 .. 1). Classification confidence = the
largest class probability. A realized-vol model forecasts ln RV (`prediction`) and the variance
exp(prediction + s2 / 2) beside it (`crypto_vol`), and has no direction or confidence.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from reformer.data import DataLoader
from reformer.data.dataset import WindowDataset, klines_to_frame
from reformer.data.windows import bar_step
from reformer.errors import DataFormatError, UserInputError
from reformer.model import ReformerModel
from reformer.pipelines.crypto_eval import outputs_to_scores
from reformer.pipelines.crypto_vol import VOL, variance_forecast
from reformer.predictions import LOG_VARIANCE, RETURN, Predictions, data_interval
from reformer.training.checkpoint import load_checkpoint, resolve_checkpoint_dir
from reformer.training.loop import predict_dataset
from reformer.training.meta import CandleMeta

__all__ = ["LatestPrediction", "checkpoint_inputs", "checkpoint_residual_var", "first_unseen_bar", "latest_from_inputs",
           "predict_all", "predict_all_predictions", "predict_latest", "window_inputs"]

_DIRECTIONS = ("down", "flat", "up")


@dataclass(frozen=True)
class LatestPrediction:
    """The forecast for the newest window."""

    timestamp: int
    """Open time (epoch ms UTC) of the window's last bar."""
    predicted_return: float
    """Predicted ln(C_{t+h} / C_t) (regression), p_up - p_down (classification), or ln RV (realized-vol)."""
    direction: str
    """"up", "down" or "flat" ("none" for realized-vol)."""
    confidence: float
    """See the module docstring (0.5 .. 1 for regression; NaN for realized-vol)."""
    horizon: int
    task: str = "regression"
    """The checkpoint's task: "regression", "classification" (then `predicted_return` is p_up - p_down) or
    "realized-vol" (then it is the forecast of ln RV)."""
    variance: float | None = None
    """realized-vol: the variance forecast exp(ln RV forecast + s2 / 2) (`crypto_vol`)."""

    def to_dict(self) -> dict[str, Any]:
        """A return model's forecast, direction and confidence; for realized-vol the log forecast as `prediction`
        (as `predict_all` names it) and the variance."""
        if self.task == VOL:
            return {"timestamp": self.timestamp, "prediction": self.predicted_return, "variance": self.variance,
                    "horizon": self.horizon, "task": self.task}
        return {"timestamp": self.timestamp, "predicted_return": self.predicted_return,
                "direction": self.direction, "confidence": self.confidence, "horizon": self.horizon,
                "task": self.task}




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
    """`predict_all` as `Predictions` (float64, indexed by bar open time) with the checkpoint's interval, horizon,
    first out-of-sample bar (`first_unseen_bar`) and target (a return or the log variance), and its directory as
    the source."""
    table = predict_all(checkpoint, frame, batch_size, bfloat16, symbol)
    directory = resolve_checkpoint_dir(checkpoint)
    meta = CandleMeta.read(directory, symbol)
    index = pd.DatetimeIndex(pd.to_datetime(table["timestamp"].to_numpy(np.int64), unit="ms", utc=True))
    columns = table.drop(columns="timestamp").astype("float64").set_axis(index)
    values = columns if len(columns.columns) > 1 else columns["prediction"]
    first, _ = first_unseen_bar(directory, symbol)
    interval = data_interval(meta.data.interval, meta.data.bar_ms, table["timestamp"].to_numpy())
    return Predictions(values, interval=interval, horizon=meta.horizon, first_out_of_sample=first,
                       source=str(directory), target=LOG_VARIANCE if meta.task == VOL else RETURN)


def predict_all(checkpoint: str | os.PathLike[str], frame: pd.DataFrame, batch_size: int = 256,
                bfloat16: bool = False, symbol: str | None = None) -> pd.DataFrame:
    """Predictions for every window whose last bar is in `frame` (after the feature warm-up); `bfloat16` runs the
    matrix products in bfloat16 (CPU autocast: faster at long windows, outputs within ~1e-2 relative).

    Returns:
        DataFrame with `timestamp` (open time, epoch ms, of each window's last bar) and `prediction` (forward log
        return over the horizon; for classification p_up - p_down, plus columns p_down, p_flat, p_up; for
        realized-vol the forecast of ln RV, plus `variance` = exp(prediction + s2 / 2)).

    Raises:
        DataFormatError: the checkpoint used turnover and the candles have none, or other feature mismatches.
        UserInputError: a realized-vol checkpoint without its s2 (`checkpoint_residual_var`).
    """
    model, meta, inputs = checkpoint_inputs(checkpoint, frame, symbol=symbol)
    s2 = checkpoint_residual_var(meta, checkpoint) if meta.task == VOL else None  # named before the model runs
    outputs, _ = predict_dataset(model, WindowDataset(inputs.features, torch.zeros(len(inputs.timestamps))),
                                 batch_size, bfloat16=bfloat16)
    score, probs = outputs_to_scores(outputs, meta.task, meta.target_scale, meta.target_offset)
    table = pd.DataFrame({"timestamp": inputs.timestamps.astype(np.int64), "prediction": score})
    if s2 is not None:
        table["variance"] = variance_forecast(score, s2)
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
    s2 = checkpoint_residual_var(meta, "the checkpoint") if meta.task == VOL else None
    if outputs is None:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
            outputs = model(inputs.features[-1:]).float()
    score, probs = outputs_to_scores(outputs, meta.task, meta.target_scale, meta.target_offset)
    if s2 is not None:
        return LatestPrediction(int(inputs.timestamps[-1]), float(score[0]), "none", math.nan, meta.horizon,
                                meta.task, float(variance_forecast(score[0], s2)))
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


def checkpoint_residual_var(meta: CandleMeta, checkpoint: object) -> float:
    """A realized-vol checkpoint's s2 (`CandleMeta.residual_var`), its variance forecast's correction.

    Raises:
        UserInputError: the checkpoint has none (its training stopped before the validation pass that sets it).
    """
    if meta.residual_var is None:
        raise UserInputError(f"{checkpoint} holds no residual variance of its log forecast (its training did not "
                             "finish): predict with the run's best/ checkpoint, or finish the run with --resume")
    return float(meta.residual_var)

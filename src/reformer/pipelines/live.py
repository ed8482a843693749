"""A candle checkpoint kept loaded for live use: the forecast and the attention of the newest window, per candle.

`predict_latest` reads the checkpoint on every call; a paper trader predicts once per closed candle and cannot
spend that time, so `CandlePredictor` reads it once, checks the stream against it, and then predicts from the
newest candles the way `predict_latest` does (the same inputs, scaler and confidence).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..errors import UserInputError
from ..predictions import data_interval
from ..training.checkpoint import load_checkpoint
from ..training.meta import CandleMeta
from .crypto import LatestPrediction, latest_from_inputs, window_inputs

__all__ = ["CandlePredictor", "LiveForecast"]


@dataclass(frozen=True)
class LiveForecast:
    """The newest window's forecast and what the model attended to for it."""

    latest: LatestPrediction
    attention: list[float]
    """The last layer's attention from the window's last bar to each of its bars (mean over heads), oldest
    first."""


class CandlePredictor:
    """A checkpoint loaded once (CPU, eval mode)."""

    def __init__(self, checkpoint: str | os.PathLike[str], symbol: str | None = None) -> None:
        self.checkpoint = checkpoint
        self.meta = CandleMeta.read(checkpoint, symbol)
        if self.meta.task == "realized-vol":  # its forecast is a log variance, which a trader would read as a return
            raise UserInputError(f"{checkpoint} forecasts the log realised variance (trained with --task "
                                 "realized-vol), not a return: trade with a return model's checkpoint")
        self.model, _ = load_checkpoint(checkpoint)
        self.seq_len = self.model.config.seq_len
        self.history = self.seq_len + 2 * self.meta.feature_spec.warmup + 2
        """Candles needed before a window's last bar: the window and its features' warm-up, with a margin."""

    def check_stream(self, interval: str) -> None:
        """Refuse a stream of another interval than the training candles'.

        Raises:
            UserInputError: the intervals differ (both named).
        """
        trained = data_interval(self.meta.data.interval, self.meta.data.bar_ms)
        if trained is not None and trained != interval:
            raise UserInputError(f"{self.checkpoint} was trained on interval {trained} candles and the stream is "
                                 f"{interval}: trade --interval {trained}, or a checkpoint trained on {interval}")

    def forecast(self, frame: pd.DataFrame) -> LiveForecast:
        """The forecast for the window ending at `frame`'s last candle (closed candles, oldest first; only the
        last `history` are read).

        Raises:
            DataFormatError, UserInputError: as `predict_latest` (features the candles lack, a gap in the window).
        """
        recent = frame.iloc[-self.history:].reset_index(drop=True)
        inputs = window_inputs(self.checkpoint, self.model, self.meta, recent)
        with torch.no_grad():  # one forward gives the forecast and the attention
            outputs, layers = self.model.predict_with_attention(inputs.features[-1:])
        latest = latest_from_inputs(self.model, self.meta, inputs, len(recent), outputs=outputs.float())
        weights = layers[-1].to_dense()[0, :, -1, :].mean(dim=0).numpy()  # (l,)
        return LiveForecast(latest, np.asarray(weights, dtype=float).tolist())

"""What a candle checkpoint attended to: the latest window's closes above the last layer's attention weights."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from reformer.pipelines.crypto import checkpoint_inputs

__all__ = ["plot_attention"]


def plot_attention(checkpoint: str | os.PathLike[str], frame: pd.DataFrame, path: str | os.PathLike[str],
                   symbol: str | None = None) -> Path:
    """PNG of which past bars the model attended to for the latest window.

    Top: the window's closes. Bottom: the last layer's attention from the last position to every bar of the
    window, averaged over heads (`LayerAttention.to_dense()[0, :, -1, :]`), against bars ago.
    """
    from reformer.figures import pyplot, write_png

    plt = pyplot()
    model, _, inputs = checkpoint_inputs(checkpoint, frame, symbol=symbol)
    _, layers = model.predict_with_attention(inputs.features[-1:])
    weights = layers[-1].to_dense()[0, :, -1, :].mean(dim=0).numpy()  # (l,)
    seq_len = len(weights)
    closes = frame["close"].to_numpy()[int(inputs.end_bars[-1]) - seq_len + 1: int(inputs.end_bars[-1]) + 1]
    bars_ago = np.arange(seq_len - 1, -1, -1)
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    top.plot(bars_ago, closes, color="black", linewidth=1)
    top.set_ylabel("close")
    when = pd.to_datetime(int(inputs.timestamps[-1]), unit="ms", utc=True)
    top.set_title(f"attention of the last position, last layer, mean over heads (window ending {when:%Y-%m-%d %H:%M})")
    bottom.bar(bars_ago, weights, width=1.0, color="tab:blue")
    bottom.set_ylabel("attention weight")
    bottom.set_xlabel("bars ago")
    bottom.invert_xaxis()
    return write_png(figure, path)

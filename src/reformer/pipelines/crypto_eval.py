"""Scoring a candle model beside its baselines on held-out windows: the forecasts, then the metrics.

`held_out_forecasts` computes, on one split's test windows, the model's forecast and the three baselines' (zero,
momentum, ridge refitted on that split's training windows with its alpha picked on that split's validation windows);
`score_forecasts` turns them into the evaluation block every report carries (metrics per forecast, block-bootstrap
IC intervals, the model's IC minus ridge's). Forecasts of several splits concatenate (`concat_forecasts`), so a
walk-forward evaluation scores its pooled out-of-sample period exactly as a single split is scored.

Shape legend: w windows, l seq_len, f features, k classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import torch

from reformer.data import PreparedDataset
from reformer.data.dataset import WindowDataset
from reformer.model import ReformerModel
from reformer.training import baselines
from reformer.training.loop import predict_dataset
from reformer.training.metrics import (
    classification_metrics,
    ic_difference_interval,
    ic_interval,
    regression_metrics,
)

__all__ = [
    "BaselineForecasts",
    "CryptoData",
    "HeldOutForecasts",
    "baseline_forecasts",
    "concat_forecasts",
    "crypto_data",
    "held_out_forecasts",
    "mean_forecasts",
    "outputs_to_scores",
    "realised_targets",
    "score_forecasts",
    "split_ranges",
    "summaries",
]


@dataclass(frozen=True, eq=False)
class CryptoData:
    """The prepared windows and the exact torch datasets training and evaluation use."""

    prepared: PreparedDataset
    train: WindowDataset
    val: WindowDataset
    test: WindowDataset
    target_scale: float
    """Regression targets in the datasets are (target - target_offset) / target_scale (1.0 for classification)."""
    target_offset: float = 0.0
    """The training windows' mean ln RV for realized-vol (whose targets are not centred near 0), else 0."""


def realised_targets(prepared: PreparedDataset, task: str) -> np.ndarray:
    """`[w]` float64 what a forecast of `task` is scored against: ln RV for realized-vol, else the forward log
    returns (a classifier's score p_up - p_down too)."""
    return np.log(prepared.realized_var) if task == "realized-vol" else prepared.forward_returns


def crypto_data(prepared: PreparedDataset, task: str) -> CryptoData:
    """The datasets of a prepared split; regression targets divided by the training targets' std (loss O(1)), and
    ln RV first centred on its training mean (ln RV sits near -7 for hourly crypto, not near 0)."""
    scale, offset = 1.0, 0.0
    targets = prepared.targets
    if task != "classification":
        train = realised_targets(prepared, task)[prepared.split.train]
        offset = float(np.mean(train)) if task == "realized-vol" else 0.0
        scale = float(np.std(train)) or 1.0
        targets = (targets - offset) / scale
    split = prepared.split
    return CryptoData(prepared, WindowDataset(prepared.features, targets, split.train),
                      WindowDataset(prepared.features, targets, split.val),
                      WindowDataset(prepared.features, targets, split.test), scale, offset)


def summaries(features: torch.Tensor, positions: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Ridge's inputs (`baselines.window_summary`) of the windows at `positions`: (w, l, f) -> (len(positions), 2f)."""
    parts = [baselines.window_summary(features[torch.as_tensor(positions[i: i + chunk])].numpy())
             for i in range(0, len(positions), chunk)]
    return np.concatenate(parts) if parts else np.zeros((0, 2 * features.shape[-1]))


def outputs_to_scores(outputs: torch.Tensor, task: str, scale: float, offset: float = 0.0
                      ) -> tuple[np.ndarray, np.ndarray | None]:
    """Model outputs -> (prediction in target units: a log return, ln RV (offset + scale * output), or
    p_up - p_down; class probabilities (w, k) or None)."""
    if task == "classification":
        probs = torch.softmax(outputs.float(), dim=-1).numpy().astype(np.float64)
        return probs[:, -1] - probs[:, 0], probs
    return offset + outputs.float().reshape(-1).numpy().astype(np.float64) * scale, None


@dataclass(frozen=True)
class HeldOutForecasts:
    """The model's and the baselines' forecasts on some test windows, with what they are scored against."""

    timestamps: np.ndarray
    """(w,) open time (epoch ms) of each window's last bar."""
    returns: np.ndarray
    """(w,) realised targets: forward log returns, or ln RV (realized-vol)."""
    model: np.ndarray
    """(w,) the model's score: predicted log return, p_up - p_down, or predicted ln RV."""
    baselines: dict[str, np.ndarray]
    """name -> (w,) forecast: zero, momentum, ridge; for realized-vol variance forecasts (and logs under names
    ending in `_log`, `crypto_vol`)."""
    probs: np.ndarray | None = None
    """(w, k) class probabilities of a classifier."""
    classes: np.ndarray | None = None
    """(w,) true classes of a classifier's windows."""
    ridge_alphas: list[float] = field(default_factory=list)
    """Ridge's penalty per split the windows came from."""
    residual_var: np.ndarray | None = None
    """(w,) realized-vol: s2 of the model that made each forecast (`crypto_vol`)."""

    @property
    def variance(self) -> np.ndarray | None:
        """(w,) realized-vol: the model's variance forecast exp(model + s2 / 2); None for other tasks."""
        return None if self.residual_var is None else np.exp(self.model + self.residual_var / 2.0)


@dataclass(frozen=True)
class BaselineForecasts:
    """The baselines' forecasts on a split's test windows; they depend on the split, not on any model."""

    forecasts: dict[str, np.ndarray]
    """name -> (w,) forecast: zero, momentum, ridge."""
    ridge_alpha: float


def baseline_forecasts(data: CryptoData, frame: pd.DataFrame) -> BaselineForecasts:
    """Zero, momentum and ridge (fitted on `data`'s training windows, alpha picked on its validation windows) on
    its test windows."""
    prepared, split = data.prepared, data.prepared.split
    close = frame["close"].to_numpy(dtype=np.float64)
    ridge = baselines.select_ridge(summaries(prepared.features, split.train), prepared.forward_returns[split.train],
                                   summaries(prepared.features, split.val), prepared.forward_returns[split.val])
    forecasts = {"zero": baselines.zero_forecast(len(split.test)),
                 "momentum": baselines.momentum_forecast(close, prepared.end_bars[split.test],
                                                         prepared.config.horizon),
                 "ridge": ridge.predict(summaries(prepared.features, split.test))}
    return BaselineForecasts(forecasts, ridge.alpha)


def held_out_forecasts(model: ReformerModel, data: CryptoData, frame: pd.DataFrame, task: str,
                       device: str | torch.device, batch_size: int = 256,
                       shared: BaselineForecasts | None = None) -> HeldOutForecasts:
    """Forecasts of `model` and the baselines on `data`'s test windows; `shared`: the split's
    `baseline_forecasts`, computed here when not given (models of one split share them)."""
    prepared, split = data.prepared, data.prepared.split
    outputs, _ = predict_dataset(model, data.test, batch_size, device)
    score, probs = outputs_to_scores(outputs, task, data.target_scale)
    given = shared or baseline_forecasts(data, frame)
    classes = prepared.targets[split.test].numpy() if probs is not None else None
    return HeldOutForecasts(prepared.timestamps[split.test], prepared.forward_returns[split.test], score,
                            given.forecasts, probs, classes, [given.ridge_alpha])


def split_ranges(prepared: PreparedDataset) -> dict[str, dict[str, int]]:
    """Each non-empty split's window count and the first and last window's end time (epoch ms)."""
    split, stamps = prepared.split, prepared.timestamps
    return {name: {"windows": len(idx), "first_timestamp": int(stamps[idx[0]]), "last_timestamp": int(stamps[idx[-1]])}
            for name, idx in (("train", split.train), ("val", split.val), ("test", split.test)) if len(idx)}


def concat_forecasts(parts: list[HeldOutForecasts]) -> HeldOutForecasts:
    """The forecasts of several disjoint test blocks as one (in the order given); a baseline missing from a block
    (a volatility baseline its short history could not fit) is NaN there."""
    probs = [p.probs for p in parts]
    names = list(dict.fromkeys(name for p in parts for name in p.baselines))
    classes = [p.classes for p in parts]
    residuals = [p.residual_var for p in parts]
    return HeldOutForecasts(
        np.concatenate([p.timestamps for p in parts]), np.concatenate([p.returns for p in parts]),
        np.concatenate([p.model for p in parts]),
        {name: np.concatenate([p.baselines.get(name, np.full(len(p.returns), np.nan)) for p in parts])
         for name in names},
        None if any(p is None for p in probs) else np.concatenate(probs),  # type: ignore[arg-type]
        None if any(c is None for c in classes) else np.concatenate(classes),  # type: ignore[arg-type]
        [a for p in parts for a in p.ridge_alphas],
        None if any(r is None for r in residuals) else np.concatenate(residuals))  # type: ignore[arg-type]


def mean_forecasts(members: list[HeldOutForecasts]) -> HeldOutForecasts:
    """A seed ensemble's forecasts: the members' mean score (and mean class probabilities, or mean s2: the
    variance forecast of a mean of log forecasts is then corrected by the members' typical residual variance, an
    upper bound for the mean's), on the same windows with the same baselines (members differ only in the model)."""
    first = members[0]
    if any(not np.array_equal(m.timestamps, first.timestamps) for m in members):
        # the members come from one run over one split: a mismatch is a bug, not bad input, so it keeps a traceback
        raise ValueError("ensemble members were scored on different windows")
    if len(members) == 1:
        return first
    probs = None if first.probs is None else np.mean([m.probs for m in members if m.probs is not None], axis=0)
    score = probs[:, -1] - probs[:, 0] if probs is not None else np.mean([m.model for m in members], axis=0)
    residuals = [m.residual_var for m in members if m.residual_var is not None]
    residual = np.mean(residuals, axis=0) if residuals else None
    return replace(first, model=score, probs=probs, residual_var=residual)


def score_forecasts(forecasts: HeldOutForecasts, horizon: int) -> dict[str, Any]:
    """`model`, `baselines` and `ic_minus_ridge` of an evaluation: each forecast's metrics, 95% moving-block
    bootstrap IC intervals (blocks of 2 x horizon windows: the targets overlap; `metrics.py`) and the paired
    interval of the model's IC minus ridge's."""
    f = forecasts
    model: dict[str, Any] = dict(classification_metrics(f.probs, f.classes, f.returns)
                                 if f.probs is not None and f.classes is not None
                                 else regression_metrics(f.model, f.returns))
    table: dict[str, dict[str, Any]] = {name: dict(regression_metrics(forecast, f.returns))
                                        for name, forecast in f.baselines.items()}
    alphas = f.ridge_alphas
    table["ridge"]["alpha"] = alphas[0] if len(alphas) == 1 else alphas
    block = 2 * horizon
    model["ic_ci95"] = list(ic_interval(f.model, f.returns, block))
    for name in ("momentum", "ridge"):
        table[name]["ic_ci95"] = list(ic_interval(f.baselines[name], f.returns, block))
    diff, low, high = ic_difference_interval(f.model, f.baselines["ridge"], f.returns, block)
    return {"model": model, "baselines": table,
            "ic_minus_ridge": {"difference": diff, "ci95": [low, high], "block": block}}

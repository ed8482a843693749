"""The realized-vol task of the candle pipeline: the model's variance forecast, the volatility baselines, and the
scores of both on held-out windows.

Target. A window ending at bar t is trained on ln RV_t, RV_t = sum_{i=t+1}^{t+h} ln(C_i / C_{i-1})^2
(`reformer.data.windows.forward_realized_variance`), centred and scaled by the training windows' mean m and std s
(`crypto_eval.crypto_data`), so the loss is O(1) whatever the volatility level; the model's log forecast is
f = m + s * output (`target_offset`, `target_scale` in the checkpoint).

Variance forecast. f estimates E[ln RV]; the variance itself is forecast as the mean of a log-normal RV whose log
is f plus an N(0, s2) error:

    v = exp(f + s2 / 2),    s2 = mean over the validation windows of (ln RV - f)^2

(exp(f) alone is the median of RV, below its mean by the factor exp(s2 / 2)). s2 is measured on the validation
windows, which no weight was fitted on, and kept in the checkpoint as `residual_var`.

Baselines, all fitted on the split's training windows only: ridge on the window summaries (the return
baselines' ridge, fitted to ln RV, its alpha and its own s2 from the validation windows), and HAR-RV, EWMA,
GARCH(1,1)-t and the naive last-h-bars variance of `reformer.training.volatility` on the candles' log returns.
Each is a variance forecast; the log-linear ones (ridge, HAR) also keep their log forecast as `<name>_log`.

Scores: the model's and each baseline's MSE of ln RV and IC against ln RV (on the log forecast: f, or `<name>_log`,
or ln v), block-bootstrap IC intervals and the model's IC minus ridge's, as the return task reports them; and
`reformer.training.vol_scores.volatility_scores` of every variance forecast against RV (QLIKE with its interval,
MSE of the log, Mincer-Zarnowitz, Diebold-Mariano against HAR) with a Newey-West lag of the larger of 2k - 1 and
the usual rule floor(4 (n/100)^(2/9)), where k = ceil(h / stride) windows share target bars: with lag k - 1 a 5%
test of overlapping 24-bar losses rejected a true null 10.6% of the time in simulation, with 2k - 1 7.9%, and
volatility losses stay autocorrelated past the overlap (clustering), which the rule's floor covers.
Rows where a forecast is not finite (HAR's first month of history) are left out of that
forecast's scores, and of every forecast's `volatility_scores` alike.

Shape legend: w windows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from reformer.errors import UserInputError
from reformer.model import ReformerModel
from reformer.pipelines.crypto_eval import (
    BaselineForecasts,
    CryptoData,
    HeldOutForecasts,
    outputs_to_scores,
    realised_targets,
    summaries,
)
from reformer.training import baselines
from reformer.training.loop import predict_dataset
from reformer.training.metrics import ic_difference_interval, ic_interval, information_coefficient

__all__ = ["VOL", "log_returns", "residual_variance", "score_vol_forecasts", "variance_forecast",
           "vol_baseline_forecasts", "vol_forecasts"]

VOL = "realized-vol"
"""The task's name, as `DatasetConfig.task` and `--task` spell it."""
_LOG = "_log"


def log_returns(close: np.ndarray) -> np.ndarray:
    """`[n]` closes -> `[n]` r[i] = ln(C_i / C_{i-1}), r[0] NaN (the convention of `training.volatility`)."""
    return np.concatenate([[np.nan], np.diff(np.log(np.asarray(close, dtype=np.float64)))])


def residual_variance(log_forecast: np.ndarray, log_realised: np.ndarray) -> float:
    """s2 = mean of (ln RV - f)^2 over windows: `[w]`, `[w]` -> float (the variance of a residual assumed to have
    mean 0)."""
    return float(np.mean((np.asarray(log_realised) - np.asarray(log_forecast)) ** 2))


def variance_forecast(log_forecast: np.ndarray | float, residual_var: float | np.ndarray) -> np.ndarray:
    """v = exp(f + s2 / 2): `[w]` log forecasts (and one s2, or one per window) -> `[w]` variance forecasts."""
    return np.exp(np.asarray(log_forecast, dtype=np.float64) + np.asarray(residual_var, dtype=np.float64) / 2.0)


def vol_baseline_forecasts(data: CryptoData, frame: pd.DataFrame) -> BaselineForecasts:
    """Ridge and the classical volatility forecasts (module docstring) on `data`'s test windows: name -> `[w]`
    variance forecasts, plus `ridge_log` and `har_log`. A classical one is left out when the training data are too
    short for it (`_classical`), and scored where it is finite."""
    prepared, split = data.prepared, data.prepared.split
    realised = realised_targets(prepared, VOL)
    ridge = baselines.select_ridge(summaries(prepared.features, split.train), realised[split.train],
                                   summaries(prepared.features, split.val), realised[split.val])
    ridge_s2 = residual_variance(ridge.predict(summaries(prepared.features, split.val)), realised[split.val])
    ridge_log = ridge.predict(summaries(prepared.features, split.test))
    forecasts = {"ridge": variance_forecast(ridge_log, ridge_s2), "ridge_log": ridge_log}
    forecasts.update(_classical(frame, prepared.config.horizon, prepared.end_bars[split.train],
                                prepared.end_bars[split.test]))
    return BaselineForecasts(forecasts, ridge.alpha)


def _classical(frame: pd.DataFrame, horizon: int, train_rows: np.ndarray, test_rows: np.ndarray
               ) -> dict[str, np.ndarray]:
    """`training.volatility.volatility_baselines` at the test windows' end bars, fitted on the training windows'
    (whose targets all close before the first test bar: the embargo). When one of them cannot be fitted (HAR's
    monthly regressor needs 30 h bars of history, GARCH 100 training returns) the others are kept."""
    from reformer.training import volatility

    r = log_returns(frame["close"].to_numpy(dtype=np.float64))
    return volatility.volatility_baselines(r, horizon, train_rows, test_rows, skip_unfittable=True)


def vol_forecasts(model: ReformerModel, data: CryptoData, frame: pd.DataFrame, device: str | torch.device,
                  residual_var: float, batch_size: int = 256, shared: BaselineForecasts | None = None
                  ) -> HeldOutForecasts:
    """The model's log forecasts (and s2 = `residual_var`, for its variance forecasts) and the baselines'
    (`shared`, else `vol_baseline_forecasts`) on `data`'s test windows, against their ln RV."""
    prepared, split = data.prepared, data.prepared.split
    outputs, _ = predict_dataset(model, data.test, batch_size, device)
    score, _ = outputs_to_scores(outputs, VOL, data.target_scale, data.target_offset)
    given = shared or vol_baseline_forecasts(data, frame)
    return HeldOutForecasts(prepared.timestamps[split.test], realised_targets(prepared, VOL)[split.test], score,
                            given.forecasts, ridge_alphas=[given.ridge_alpha],
                            residual_var=np.full(len(score), float(residual_var)))


def _log_scores(log_forecast: np.ndarray, log_realised: np.ndarray, block: int) -> dict[str, Any]:
    """MSE of ln RV, IC and its block-bootstrap interval over the rows where the forecast is finite."""
    finite = np.isfinite(log_forecast)
    f, y = log_forecast[finite], log_realised[finite]
    if len(f) < 2:
        return {"n": len(f), "mse_log": None, "ic": None}
    return {"n": len(f), "mse_log": float(np.mean((f - y) ** 2)), "ic": information_coefficient(f, y),
            "ic_ci95": list(ic_interval(f, y, block))}


def _log_forecast(name: str, forecasts: dict[str, np.ndarray]) -> np.ndarray:
    """A baseline's log forecast: its own `<name>_log` when it has one, else ln of its variance forecast."""
    if name + _LOG in forecasts:
        return forecasts[name + _LOG]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(forecasts[name])


def score_vol_forecasts(forecasts: HeldOutForecasts, overlap: int) -> dict[str, Any]:
    """`model`, `baselines`, `ic_minus_ridge` and `volatility` of a realized-vol evaluation (module docstring)."""
    f = forecasts
    block = 2 * overlap
    variances = {name: values for name, values in f.baselines.items() if not name.endswith(_LOG)}
    model: dict[str, Any] = _log_scores(f.model, f.returns, block)
    model["mean_log_forecast"] = float(np.mean(f.model))
    if f.residual_var is not None:
        model["residual_var"] = float(np.mean(f.residual_var))
    table = {name: _log_scores(_log_forecast(name, f.baselines), f.returns, block) for name in variances}
    alphas = f.ridge_alphas
    table["ridge"]["alpha"] = alphas[0] if len(alphas) == 1 else alphas
    diff, low, high = ic_difference_interval(f.model, f.baselines["ridge_log"], f.returns, block)
    scores: dict[str, Any] = {"model": model, "baselines": table,
                              "ic_minus_ridge": {"difference": diff, "ci95": [low, high], "block": block}}
    scores["volatility"] = _volatility_scores(np.exp(f.returns), {"model": f.variance, **variances}, overlap)
    return scores


def hac_lag(overlap: int, n: int) -> int:
    """Newey-West lag for `n` losses of which `overlap` neighbouring windows share target bars (docstring above)."""
    return max(2 * overlap - 1, int(4 * (max(n, 1) / 100) ** (2 / 9)))


def _volatility_scores(realised_var: np.ndarray, forecasts: dict[str, Any], overlap: int) -> dict[str, Any]:
    """`vol_scores.volatility_scores` against HAR (against ridge when the history was too short for HAR), or
    {"unavailable": why} when fewer than 2 windows have every forecast."""
    from reformer.training.vol_scores import volatility_scores

    reference = "har" if "har" in forecasts else "ridge"
    try:
        return volatility_scores(realised_var, forecasts, lag=hac_lag(overlap, len(realised_var)), reference=reference)
    except UserInputError as exc:
        return {"unavailable": str(exc)}

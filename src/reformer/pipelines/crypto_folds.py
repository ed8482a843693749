"""Walk-forward evaluation of the candle model beside its baselines: many out-of-sample periods instead of one.

A single 70/10/20 split tests on its last 20%: on 2020-2025 hourly BTC, 14 months, whose overlapping 24-hour
targets are worth a few hundred independent observations, too few to tell an IC of 0.02 from 0.04. Here the
last `n_folds * test_windows` windows are cut into consecutive test blocks (`data.windows.walk_forward_folds`);
before each block a fresh model is trained, with its own scaler and target scale, on windows whose targets closed
before the block (an embargo of `horizon` bars at every border), its epochs chosen on a validation block just
before the test block. Ridge is refitted per fold the same way (alpha on that fold's validation block); zero and
momentum need no fitting. The test blocks are disjoint and contiguous, so pooled they form one long out-of-sample
period, scored exactly as a single split is (`crypto_eval.score_forecasts`: the same metrics, block-bootstrap
intervals and the model's IC minus ridge's), beside each fold's own scores. A realized-vol model is scored as
`crypto_vol` scores a split (beside ridge, HAR-RV, EWMA, GARCH and naive fitted per fold), its variance forecast
corrected by each fold's own validation s2.

    report = evaluate_walk_forward(frame, seq_len=168, horizon=24, folds=FoldSettings(n_folds=6),
                                   out_dir="runs/btc_wf")     # walkforward.json, predictions.csv, fold_k/ runs

Shape legend: w windows.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from reformer.data import DataLoader, FeatureSpec
from reformer.data.dataset import klines_to_frame
from reformer.data.windows import Task
from reformer.errors import ConfigError
from reformer.model import ReformerConfig, ReformerModel
from reformer.pipelines.crypto import (
    annotate_run,
    checkpoint_meta,
    crypto_configs,
    validation_metrics,
    validation_rmse,
)
from reformer.pipelines.crypto_eval import (
    BaselineForecasts,
    CryptoData,
    HeldOutForecasts,
    baseline_forecasts,
    concat_forecasts,
    crypto_data,
    held_out_forecasts,
    mean_forecasts,
    score_forecasts,
    split_ranges,
)
from reformer.pipelines.crypto_vol import (
    VOL,
    score_vol_forecasts,
    vol_baseline_forecasts,
    vol_forecasts,
)
from reformer.pipelines.fold_workers import run_fold_jobs
from reformer.predictions import LOG_VARIANCE, RETURN, data_interval, write_predictions_csv
from reformer.training import distributed
from reformer.training.loop import FitResult, TrainConfig, TrainingInterrupted, fit
from reformer.training.metrics import information_coefficient, json_safe
from reformer.training.run_dir import check_run_dir, clear_run_dir

__all__ = ["FoldSettings", "evaluate_walk_forward"]


@dataclass(frozen=True)
class FoldSettings:
    """The fold layout of a walk-forward evaluation (window counts; one window per bar)."""

    n_folds: int = 6
    """Test blocks, each preceded by its own training and validation windows."""
    test_windows: int | None = None
    """Windows per test block; None: the last half of the windows, shared by the folds."""
    val_windows: int | None = None
    """Validation windows per fold (early stopping, ridge's alpha); None: a tenth of the windows."""
    train_windows: int | None = None
    """Rolling: training windows per fold (required); expanding: the least a fold may train on (None: as many
    as it validates on). At least 2 (ridge needs them)."""
    mode: Literal["expanding", "rolling"] = "expanding"
    """Expanding: every fold trains on all windows before its validation block; rolling: on the last
    `train_windows` of them."""

    def __post_init__(self) -> None:
        for name in ("n_folds", "test_windows", "val_windows", "train_windows"):
            value = getattr(self, name)
            if value is None and name != "n_folds":
                continue
            least = 2 if name == "train_windows" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ConfigError(f"FoldSettings.{name}={value!r} is invalid: use {least} or more windows")
        if self.mode not in ("expanding", "rolling"):
            raise ConfigError(f"FoldSettings.mode={self.mode!r} is invalid: use 'expanding' or 'rolling'")
        if self.mode == "rolling" and self.train_windows is None:
            raise ConfigError("FoldSettings(mode='rolling') needs train_windows: how many windows each fold trains "
                              "on (e.g. 2 * 365 * 24 for two years of hourly bars)")

    def resolved(self, n_windows: int) -> tuple[int, int]:
        """(test_windows, val_windows) for a series of `n_windows` windows."""
        test = self.test_windows or max(1, n_windows // (2 * self.n_folds))
        return test, self.val_windows or max(1, n_windows // 10)


def evaluate_walk_forward(frame: pd.DataFrame, *, seq_len: int = 168, horizon: int = 24,
                          folds: FoldSettings | None = None, model_overrides: dict[str, Any] | None = None,
                          train_config: TrainConfig | None = None, task: Task = "regression",
                          class_threshold: float = 0.0,
                          normalization: Literal["train", "window", "none"] = "train", spec: FeatureSpec | None = None,
                          source: dict[str, Any] | None = None, out_dir: str | os.PathLike[str] | None = None,
                          ensemble: int = 1, progress: bool = False, log: Callable[[str], None] | None = None,
                          force: bool = False, stride: int = 1) -> dict[str, Any]:
    """Train one model per fold and score every fold's test block, and all of them pooled, beside the baselines.

    Args:
        frame: candles in time order. seq_len, horizon, task, class_threshold, normalization, spec: as
            `train_crypto`. folds: the layout (`FoldSettings()` if None).
        model_overrides: `ReformerConfig` fields; train_config: `TrainConfig` (the same seed for every fold).
        source: where the candles came from, stored in each fold's checkpoint.
        out_dir: also keep each fold's run (`fold_<k>/` with best/, last/, metrics.csv), and write
            `walkforward.json` (the returned report) and `predictions.csv` (per test window: timestamp, fold,
            realised return, the model's forecast `prediction` - `reformer backtest --predictions` reads the file
            as it is - and each baseline's; under the `reformer.predictions` metadata line, whose first
            out-of-sample bar is the first fold's first test bar). realized-vol: `realised` and `prediction` are
            ln RV, beside `realised_variance`, the model's `variance` forecast and the baselines' variances.
        ensemble: train this many models per fold, seeds seed .. seed + ensemble - 1 (in both the model's and the
            training config), and score their mean forecast (each member's IC per fold in `member_ic`; their runs in
            `fold_<k>/seed_<s>/`, their forecasts in `prediction_seed<s>` columns).
        log: one line per fold.
        stride: bars between window end bars (e.g. 24: one forecast a day); the fold sizes count these windows,
            and the scores' overlap (bootstrap blocks, HAC lags) is the ceil(horizon / stride) windows that share
            target bars.
        force: start over in an `out_dir` that holds a run (its files are replaced); without it such an `out_dir`
            is refused. A walk-forward run is not resumed.

    In a torchrun process group of several ranks (`training.distributed`), call it on every rank with the same
    arguments: the (fold, member) models are spread over the ranks (`fold_workers.run_fold_jobs`), each rank keeps
    only its own jobs' runs, and rank 0 scores and writes what one process would; every rank returns its report.

    Returns:
        `{"pooled": {task, horizon, seq_len, model, baselines, ic_minus_ridge, windows, first/last_timestamp},
        "folds": [per fold: its windows' range, best epoch, and the same scores], "summary": {...}, "settings"}`.

    Raises:
        ConfigError: bad settings. UserInputError: too few windows for the folds asked for, or `out_dir` holds a
            run and `force` is not set.
        TrainingInterrupted: Ctrl-C; its `run_dir` is `out_dir`.
    """
    folds = folds or FoldSettings()
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ConfigError(f"stride={stride!r}: use a whole number of bars >= 1 between forecasts (e.g. 24)")
    overlap = -(-horizon // stride)  # windows whose targets share bars with one window's
    if isinstance(ensemble, bool) or not isinstance(ensemble, int) or ensemble < 1:
        raise ConfigError(f"ensemble={ensemble!r}: use a whole number of models per fold >= 1")
    frame = klines_to_frame(frame)
    model_config, config = crypto_configs(seq_len, task, model_overrides, train_config)
    loader = DataLoader(spec)
    run_dir = None if out_dir is None else Path(out_dir)
    if run_dir is not None:
        check_run_dir(run_dir, force=force, resumable=False)
    test_windows, val_windows = folds.test_windows, folds.val_windows
    if test_windows is None or val_windows is None:  # the defaults are shares of the series' windows
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a gap is reported once, by the folds' preparation below
            n_windows = loader.count_windows(frame, seq_len, horizon, stride)
        test_windows, val_windows = folds.resolved(n_windows)
    least_train = folds.train_windows or max(2, val_windows)  # a fold trains on at least as much as it validates on
    prepared_folds = loader.prepare_walk_forward(
        frame, seq_len, horizon, n_folds=folds.n_folds, test_windows=test_windows, val_windows=val_windows,
        train_windows=least_train, mode=folds.mode, task=task, class_threshold=class_threshold,
        normalization=normalization, stride=stride)
    model_config = model_config.replace(n_features=len(prepared_folds[0].feature_names))  # the same in every fold
    if force and run_dir is not None and distributed.is_main():  # only now: the new run's settings and data passed
        clear_run_dir(run_dir)
    distributed.barrier()  # no rank writes its folds before every rank has checked out_dir and it is cleared
    fold_inputs: dict[int, tuple[CryptoData, BaselineForecasts]] = {}

    def train_job(k: int, j: int) -> tuple[HeldOutForecasts, FitResult]:
        if k not in fold_inputs:  # a rank prepares only the folds it trains a member of
            data = crypto_data(prepared_folds[k], task)
            # the same for every member of the fold
            fold_inputs[k] = data, (vol_baseline_forecasts if task == VOL else baseline_forecasts)(data, frame)
        data, shared = fold_inputs[k]
        return _fit_member(data, frame, model_config.replace(seed=model_config.seed + j),
                           config.replace(seed=config.seed + j), task, class_threshold, source,
                           progress and distributed.is_main(), _member_dir(run_dir, k, config.seed + j, ensemble),
                           shared)

    parts: list[HeldOutForecasts] = []
    records: list[dict[str, Any]] = []
    members: list[list[HeldOutForecasts]] = []  # per fold, per seed

    def on_fold(k: int, fitted: list[tuple[HeldOutForecasts, FitResult]]) -> None:
        ranges = split_ranges(prepared_folds[k])
        members.append([forecasts for forecasts, _ in fitted])
        forecasts = mean_forecasts(members[-1])
        parts.append(forecasts)
        record = {"fold": k, **{f"{name}_windows": part["windows"] for name, part in ranges.items()},
                  "train_first_timestamp": ranges["train"]["first_timestamp"],
                  "test_first_timestamp": ranges["test"]["first_timestamp"],
                  "test_last_timestamp": ranges["test"]["last_timestamp"],
                  "best_epoch": _one_or_all([result.best_epoch for _, result in fitted]),
                  "epochs_run": _one_or_all([len(result.history) for _, result in fitted]),
                  **_score(forecasts, overlap, task)}
        if ensemble > 1:  # each member's own IC on this block
            record["member_ic"] = [information_coefficient(m.model, m.returns) for m in members[-1]]
        records.append(record)
        if log:
            log(f"fold {k + 1}/{len(prepared_folds)}: test {_day(record['test_first_timestamp'])} .. "
                f"{_day(record['test_last_timestamp'])}, IC model {record['model']['ic']:+.3f}, ridge "
                f"{record['baselines']['ridge']['ic']:+.3f}")

    try:
        reports = run_fold_jobs(len(prepared_folds), ensemble, train_job, on_fold)
    except TrainingInterrupted as exc:  # a fold's run is not the walk-forward run the user started
        raise TrainingInterrupted(run_dir, exc.epoch, "a walk-forward run") from None
    if not reports:  # rank 0 scores and writes; the broadcast holds this rank until its files are written
        return distributed.broadcast_object({})
    pooled = concat_forecasts(parts)
    fold_of = np.concatenate([np.full(len(p.returns), k) for k, p in enumerate(parts)])
    report = json_safe({
        "pooled": {"task": task, "horizon": horizon, "seq_len": seq_len, "stride": stride,
                   **_score(pooled, overlap, task),
                   "ic_within_folds": _within_fold_ic(pooled, fold_of),
                   "windows": len(pooled.returns), "first_timestamp": int(pooled.timestamps[0]),
                   "last_timestamp": int(pooled.timestamps[-1])},
        "folds": records, "summary": _summary(records),
        "settings": {**asdict(folds), "test_windows": test_windows, "val_windows": val_windows, "ensemble": ensemble,
                     "train": config.to_dict(), "model": model_config.to_dict()}})
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "walkforward.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        seeds = {} if ensemble == 1 else {
            f"prediction_seed{config.seed + j}": np.concatenate([fold[j].model for fold in members])
            for j in range(ensemble)}
        probs = {} if pooled.probs is None else {
            name: pooled.probs[:, i] for i, name in enumerate(("p_down", "p_flat", "p_up")[: pooled.probs.shape[1]])}
        classes = {} if pooled.classes is None else {"class": pooled.classes}
        realised = {} if pooled.variance is None else {"realised_variance": np.exp(pooled.returns)}
        variance = {} if pooled.variance is None else {"variance": pooled.variance}
        table = pd.DataFrame({"timestamp": pooled.timestamps.astype(np.int64), "fold": fold_of,
                              "realised": pooled.returns, **realised, **classes, "prediction": pooled.model,
                              **variance, **probs, **pooled.baselines, **seeds})
        # every row is out of sample (each fold's model was fitted before its test block): from the first on
        write_predictions_csv(run_dir / "predictions.csv", table, horizon=horizon, source=str(run_dir),
                              interval=data_interval((source or {}).get("interval"),
                                                     timestamps=frame["timestamp"].to_numpy()),
                              first_out_of_sample=int(pooled.timestamps[0]),
                              target=LOG_VARIANCE if task == VOL else RETURN)
    return distributed.broadcast_object(report)  # every rank of a process group returns rank 0's report


def _member_dir(run_dir: Path | None, fold: int, seed: int, ensemble: int) -> Path | None:
    """Where a fold's model is kept: `fold_<k>/`, or `fold_<k>/seed_<s>/` for each member of an ensemble."""
    if run_dir is None:
        return None
    fold_dir = run_dir / f"fold_{fold}"
    return fold_dir / f"seed_{seed}" if ensemble > 1 else fold_dir


def _fit_member(data: CryptoData, frame: pd.DataFrame, model_config: ReformerConfig, config: TrainConfig, task: str,
                class_threshold: float, source: dict[str, Any] | None, progress: bool, run_dir: Path | None,
                shared: BaselineForecasts) -> tuple[HeldOutForecasts, FitResult]:
    """Train one model on a fold (the seeds in its configs) and forecast its test block; a kept run's best/ gets
    the split and the validation RMSE (and realized-vol's s2), as `train_crypto`'s does (predict's confidence
    scale and variance, backtest's start)."""
    model = ReformerModel(model_config)
    result = fit(model, data.train, data.val, config, out_dir=run_dir, progress=progress,
                 on_epoch=validation_metrics(data, task),
                 checkpoint_meta=checkpoint_meta(data, frame, task, class_threshold, source).to_dict(),
                 data_parallel=False)  # under torchrun a fold job is this rank's alone (`fold_workers`)
    device = next(model.parameters()).device
    val_rmse = validation_rmse(model, data, task, device, config.eval_batch_size) if run_dir or task == VOL else 0.0
    residual_var = val_rmse ** 2 if task == VOL else None  # the fold's own s2 (`crypto_vol`)
    forecasts = (vol_forecasts(model, data, frame, device, val_rmse ** 2, config.eval_batch_size, shared)
                 if task == VOL else held_out_forecasts(model, data, frame, task, device, config.eval_batch_size,
                                                        shared))
    if run_dir is not None:
        dataset = data.prepared.config
        overlap = -(-dataset.horizon // dataset.stride)
        evaluation = {**_score(forecasts, overlap, task), "splits": split_ranges(data.prepared)}
        annotate_run(run_dir, result, val_rmse, json_safe(evaluation), residual_var)
    model.to("cpu")
    return forecasts, result


def _score(forecasts: HeldOutForecasts, overlap: int, task: str) -> dict[str, Any]:
    """The evaluation block of `task`'s forecasts: `crypto_vol`'s for realized-vol, else `score_forecasts`;
    `overlap`: neighbouring windows whose targets share bars (the horizon, over the stride)."""
    return score_vol_forecasts(forecasts, overlap) if task == VOL else score_forecasts(forecasts, overlap)


def _within_fold_ic(pooled: HeldOutForecasts, fold_of: np.ndarray) -> dict[str, float]:
    """The pooled IC of each forecast once every fold's forecast is centred on its own mean: each fold's model
    (and ridge) has its own intercept, and pooled ranks would otherwise also score those levels against the folds'
    mean returns, not only the ordering within each fold. Rows where a forecast is not finite (HAR's first month)
    are left out of its IC."""
    def centred_ic(values: np.ndarray) -> float:
        out = np.asarray(values, dtype=np.float64).copy()
        finite = np.isfinite(out)
        for k in np.unique(fold_of[finite]):
            out[(fold_of == k) & finite] -= out[(fold_of == k) & finite].mean()
        return information_coefficient(out[finite], pooled.returns[finite]) if finite.sum() > 1 else float("nan")

    names = ("momentum", "ridge") if pooled.variance is None else ("ridge_log", "har_log")  # log forecasts of ln RV
    named = {"model": pooled.model, **{name.removesuffix("_log"): pooled.baselines[name] for name in names
                                       if name in pooled.baselines}}
    return {name: centred_ic(values) for name, values in named.items()}


def _one_or_all(values: list[int]) -> int | list[int]:
    """A fold's figure for one model, or the list of its ensemble members'."""
    return values[0] if len(values) == 1 else values


def _summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-fold ICs side by side: their means and in how many folds the model's IC is above ridge's."""
    model = [r["model"]["ic"] for r in records]
    ridge = [r["baselines"]["ridge"]["ic"] for r in records]
    return {"model_ic_by_fold": model, "ridge_ic_by_fold": ridge, "mean_fold_ic_model": float(np.mean(model)),
            "mean_fold_ic_ridge": float(np.mean(ridge)),
            "folds_model_above_ridge": int(sum(m > r for m, r in zip(model, ridge, strict=True)))}


def _day(ms: int) -> str:
    return f"{pd.to_datetime(ms, unit='ms', utc=True):%Y-%m-%d}"

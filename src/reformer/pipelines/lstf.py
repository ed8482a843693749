"""The long-sequence forecasting (LSTF) evaluation protocol: windows, metrics, training, and the protocol runner.

Protocol: the standard split of `reformer.data.timeseries.lstf_splits` (scaler fitted on the training rows only),
stride-1 windows, MSE and MAE over every (window, step, channel) of **every** test window (no drop_last;
test_len - horizon + 1 windows), on the normalised scale. `features="MS"` feeds all channels and
scores the target (last) channel only, as TSLib does (f_dim = -1). The windows and the scoring functions live in
`lstf_scoring` (re-exported here); with `drop_last_batch` the same forecasts are also scored on the leading windows
that published rows built with a `drop_last=True` test loader scored (PatchTST's ETT rows, for one).

Shape legend: w windows, b batch, l input length, t horizon, c channels.
"""

from __future__ import annotations

import copy
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import torch

from reformer.data.dataset import WindowDataset, series_windows
from reformer.data.spacing import Spacing
from reformer.data.timeseries import LSTFSplits, TimeSeries, load_timeseries_csv, lstf_splits
from reformer.errors import ConfigError
from reformer.files import atomic_write_text
from reformer.model import ForecastConfig, PatchReformerForecaster, ReformerModel

from ..training.baselines import LinearForecaster, repeat_forecast
from ..training.checkpoint import save_checkpoint, update_meta
from ..training.loop import EpochEnd, FitResult, TrainConfig, TrainingInterrupted, fit
from ..training.meta import SeriesData, SeriesMeta
from ..training.run_dir import check_run_dir, clear_run_dir
from .lstf_scoring import Metrics, blend_weight, drop_last_windows, evaluate_forecaster, evaluate_forecasters

__all__ = ["LSTFResult", "Metrics", "blend_weight", "check_spacing", "drop_last_windows", "evaluate_forecaster",
           "evaluate_forecasters", "init_linear_skip", "run_lstf", "series_meta", "train_forecaster"]

PROTOCOLS = {"ett-hourly": "ett_hour", "ett-15min": "ett_minute", "ratio": "ratio"}
"""CLI protocol names -> `lstf_borders` names."""
_PROTOCOL_STEP_MS = {"ett-hourly": 3_600_000, "ett-15min": 900_000}
"""The row spacing the ETT protocols' borders count in (12/4/4 months of 30 days of such rows)."""
MEMBERS_DIR = "members"
"""Where a kept ensemble's other members live in its run directory (`members/seed_<s>/`)."""


def check_spacing(series: TimeSeries, protocol: str, window: int) -> Spacing | None:
    """The rows' spacing (None without dates); refuses (`ConfigError`) a dated file an ETT protocol would miscount
    (its borders count hourly or 15-minute rows), and warns of gaps: windows of `window` rows that span one are
    used as they are."""
    stamps = series.timestamps
    spacing = None if stamps is None else Spacing.infer(stamps)
    if stamps is None or spacing is None:
        return spacing
    expected = _PROTOCOL_STEP_MS.get(protocol)
    if expected is not None and (spacing.calendar is not None or spacing.step_ms != expected):
        fit = next((name for name, step in _PROTOCOL_STEP_MS.items() if step == spacing.step_ms and
                    spacing.calendar is None), "ratio")
        raise ConfigError(f"{series.path}: rows are {spacing.describe()}, but protocol {protocol!r} counts its "
                          f"12/4/4 months in rows {expected / 1000:g} s apart: use --protocol {fit}")
    gaps = spacing.describe_gaps(stamps, window)
    if gaps is not None:
        warnings.warn(f"{series.path}: {gaps}, and are used as they are: fill the gaps for evenly spaced windows",
                      stacklevel=3)
    return spacing


def init_linear_skip(model: PatchReformerForecaster, x: np.ndarray, y: np.ndarray, ridge: float = 1e-3,
                     max_windows: int = 20000) -> None:
    """Set the forecaster's linear skip (W, b) to the ridge least-squares fit in its RevIN frame on training windows.

    The map is `LinearForecaster`'s, fitted on the windows x' = (x - mean) / std and targets y' = (y - mean) / std
    normalised by each window's own per-channel mean and std (as `PatchReformerForecaster.forward` does).
    Args: x (w, l, c), y (w, t, c) training windows (evenly subsampled to at most `max_windows`).
    Raises: ConfigError without `ForecastConfig(linear_skip=True)`.
    """
    if model.skip is None:
        raise ConfigError("init_linear_skip needs ForecastConfig(linear_skip=True)")
    if len(x) > max_windows:
        keep = np.linspace(0, len(x) - 1, max_windows).round().astype(np.int64)
        x, y = x[keep], y[keep]
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    mean, std = np.zeros((len(x), 1, x.shape[2])), np.ones((len(x), 1, x.shape[2]))  # (w, 1, c)
    if model.revin is not None:
        mean, std = x.mean(axis=1, keepdims=True), np.sqrt(x.var(axis=1, keepdims=True) + model.revin.eps)
    weight = LinearForecaster(ridge).fit((x - mean) / std, (y - mean) / std).weight  # (l+1, t)
    assert weight is not None
    model.set_linear_skip(torch.from_numpy(weight[:-1].T), torch.from_numpy(weight[-1]))


def train_forecaster(model: PatchReformerForecaster, train: WindowDataset, val: WindowDataset, config: TrainConfig, *,
                     target_only: bool = False, progress: bool = False, log: Callable[[str], None] | None = None,
                     out_dir: str | Path | None = None, checkpoint_meta: dict[str, Any] | None = None,
                     resume: str | Path | None = None) -> FitResult:
    """Fit `model` with the shared loop (`reformer.training.loop.fit`): training loss `config.loss` ("mse", "l1" or
    "huber" with delta `config.huber_delta`) on the normalised scale, early stopping and best-epoch selection on
    validation MSE whatever the training loss, best weights restored. `target_only` scores the last channel only
    ("MS"); `log` gets one line per epoch; `out_dir`, `checkpoint_meta` and `resume` are `fit`'s (a run directory
    with `best/`, `last/` and `metrics.csv`)."""
    if config.loss not in ("mse", "l1", "huber"):
        raise ConfigError(f"TrainConfig.loss={config.loss!r}: a forecaster trains with 'mse', 'l1' or 'huber'")

    def error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        err = pred.float() - target.float()  # (b, t, c)
        return err[..., -1:] if target_only else err

    def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return error(pred, target).square().mean()

    def loss_fn(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        err = error(pred, target)
        if config.loss == "l1":
            return err.abs().mean()
        if config.loss == "huber":
            return torch.nn.functional.huber_loss(err, torch.zeros_like(err), delta=config.huber_delta)
        return err.square().mean()

    # fit is typed for ReformerModel; it needs only nn.Module + reseed(), which the forecaster provides
    def on_epoch(end: EpochEnd) -> None:
        if log:
            log("epoch {epoch:.0f}: train {train_loss:.4f}, val {val_loss:.4f}, {seconds:.0f} s".format(**end.record))

    return fit(cast(ReformerModel, model), train, val, config, loss_fn=loss_fn, val_metric=mse, progress=progress,
               on_epoch=on_epoch, out_dir=out_dir, checkpoint_meta=checkpoint_meta, resume=resume)


@dataclass
class LSTFResult:
    """One protocol run: the model's and the baselines' test metrics, and how they were obtained."""

    model_name: str
    model: Metrics
    repeat: Metrics
    linear: Metrics
    blend: Metrics
    """The model averaged with the linear baseline, the model's weight fitted on validation (`blend_weight`)."""
    blend_weight: float
    protocol: str
    seq_len: int
    horizon: int
    seed: int
    features: str
    n_channels: int
    config: dict[str, Any]
    train: dict[str, Any]
    seconds: float
    drop_last: dict[str, Any] | None = None
    """The same forecasts scored on the leading windows a `drop_last=True` test loader keeps (published rows'
    window subset; `drop_last_windows`), or None when not asked for."""

    def to_json(self) -> dict[str, Any]:
        """The `reformer evaluate --json` object (plus provenance fields after the required ones)."""
        return {
            "model": {"name": self.model_name, "mse": self.model.mse, "mae": self.model.mae},
            "baselines": {"repeat": {"mse": self.repeat.mse, "mae": self.repeat.mae},
                          "linear": {"mse": self.linear.mse, "mae": self.linear.mae}},
            "blend": {"name": "model x w + linear x (1 - w), w fitted on validation", "weight": self.blend_weight,
                      "mse": self.blend.mse, "mae": self.blend.mae},
            "n_windows": self.model.n_windows, "protocol": self.protocol, "seq_len": self.seq_len,
            "horizon": self.horizon, "seed": self.seed, "features": self.features, "n_channels": self.n_channels,
            "config": self.config, "train": self.train, "seconds": round(self.seconds, 1),
            **({"drop_last": self.drop_last} if self.drop_last is not None else {}),
        }


def run_lstf(csv: str | Path, *, protocol: str = "ett-hourly", seq_len: int = 336, horizon: int = 96,
             features: Literal["M", "S", "MS"] = "M", target: str = "OT", model: ForecastConfig | None = None,
             train_config: TrainConfig | None = None, progress: bool = False,
             log: Callable[[str], None] | None = None, out_dir: str | Path | None = None,
             resume: bool = False, ensemble: int = 1, drop_last_batch: int | None = None,
             force: bool = False) -> LSTFResult:
    """Train the patched Reformer on the standard split and score it and the baselines on every test window.

    Args:
        csv: the series (ETT: date column, numeric columns, target `OT`).
        protocol: "ett-hourly", "ett-15min" or "ratio" (`reformer.data.timeseries.lstf_splits`).
        seq_len: input length; horizon: forecast length.
        features: "M" (all channels in and out), "S" (target only), "MS" (all in, target scored).
        target: target column.
        model: forecaster settings; seq_len, horizon, n_channels and seed are overwritten from the run.
        train_config: the shared loop's settings (`TrainConfig`); its seed is the run's seed.
        progress: show the loop's progress bar.
        log: one-line progress messages (baselines, then one line per epoch).
        out_dir: also keep the model: a run directory with `best/` (the selected weights, their scaler, columns
            and data range, and the test evaluation: `reformer predict` reads it), `last/`, `metrics.csv` and
            `evaluation.json`. None trains in memory only.
        resume: continue the interrupted run in `out_dir` from its `last/` checkpoint.
        ensemble: train this many models, seeds seed .. seed + ensemble - 1, each with the whole recipe, and score
            their mean forecast (the blend with the linear baseline uses it too); each member's own test errors are
            in `train["members"]`. With `out_dir` the first member is the run's own (`best/`, `last/`), the others
            are kept in `members/seed_<s>/`, and `best/` lists them (`ensemble_members`): `reformer predict`
            forecasts with their mean. Not with `resume`.
        drop_last_batch: also score the model and the baselines on the first n - n mod `drop_last_batch` test
            windows, the ones a test loader with `drop_last=True` and this batch size keeps (PatchTST's published
            ETT rows: 128), in `LSTFResult.drop_last`. For comparison with such rows only: the protocol's score is
            every window.
        force: start over in an `out_dir` that holds a run (its files are replaced); without it, or `resume`, such
            an `out_dir` is refused.
    Raises:
        ConfigError: unknown protocol, a split too short for seq_len + horizon, ensemble < 1, or an ensemble
            with `resume`.
        DataFormatError / UserInputError: unreadable file or missing target column; `out_dir` holds a run and
            neither `resume` nor `force` was given.
        TrainingInterrupted: Ctrl-C; its `run_dir` is `out_dir`.
    """
    began = time.perf_counter()
    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol={protocol!r} is unknown: use one of {sorted(PROTOCOLS)}")
    if seq_len < 1 or horizon < 1:
        raise ConfigError(f"seq_len={seq_len} and horizon={horizon} must be >= 1")
    if isinstance(ensemble, bool) or not isinstance(ensemble, int) or ensemble < 1:
        raise ConfigError(f"ensemble={ensemble!r}: use a whole number of models >= 1")
    if drop_last_batch is not None and (isinstance(drop_last_batch, bool) or not isinstance(drop_last_batch, int)
                                        or drop_last_batch < 1):
        raise ConfigError(f"drop_last_batch={drop_last_batch!r}: use a batch size >= 1, or None to score every "
                          "window only")
    if ensemble > 1 and resume:
        raise ConfigError(f"ensemble={ensemble} with resume: an interrupted ensemble is not resumed; train it again "
                          "(a new out_dir), or resume a single model (ensemble=1)")
    if out_dir is not None:
        check_run_dir(Path(out_dir), resume=resume, force=force, resumable=ensemble == 1)
    train_config = train_config or TrainConfig(epochs=3, batch_size=128, patience=2)
    series = load_timeseries_csv(csv, target=target, features=features)
    spacing = check_spacing(series, protocol, seq_len + horizon)
    try:
        splits = lstf_splits(series, seq_len, horizon, protocol=PROTOCOLS[protocol])  # type: ignore[arg-type]
    except ConfigError as exc:  # the splitter names its own protocol codes: name the caller's choice instead
        message = str(exc).replace(repr(PROTOCOLS[protocol]), repr(protocol))
        raise ConfigError(f"{message} (protocols: {', '.join(PROTOCOLS)})") from None
    for name, count in zip(("train", "validation", "test"), splits.n_windows(), strict=True):
        if count < 1:
            raise ConfigError(f"the {name} split holds no window of seq_len={seq_len} + horizon={horizon} steps "
                              f"under protocol {protocol!r}: use a shorter seq_len or horizon")
    train, val, test = (series_windows(part, seq_len, horizon) for part in (splits.train, splits.val, splits.test))
    target_only = features == "MS"
    n_channels = splits.train.shape[1]

    leading = None if drop_last_batch is None else drop_last_windows(len(test), drop_last_batch)
    base = evaluate_forecasters(lambda x: {"repeat": repeat_forecast(x, horizon)}, test, target_only=target_only,
                                leading=leading)
    repeat = base["repeat"]
    linear_model = LinearForecaster().fit(*train.arrays())

    def linear_predict(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(linear_model.predict(x.numpy())).to(x.dtype)

    base.update(evaluate_forecasters(lambda x: {"linear": linear_predict(x)}, test, target_only=target_only,
                                     leading=leading))
    linear = base["linear"]
    if log:
        log(f"{len(train)}/{len(val)}/{len(test)} windows; repeat {repeat.mse:.4f}, linear {linear.mse:.4f}")

    config = ForecastConfig(**{**asdict(model or ForecastConfig()), "seq_len": seq_len, "horizon": horizon,
                               "n_channels": n_channels, "seed": train_config.seed})
    meta = series_meta(series, splits, spacing, protocol=protocol, features=features, horizon=horizon) \
        if out_dir else None
    # member 0 is the run's own model; the others are kept beside it, in members/seed_<s>/
    member_dirs: list[Path | None] = [None] * ensemble
    if out_dir is not None:
        member_dirs = [Path(out_dir), *(Path(out_dir) / MEMBERS_DIR / f"seed_{train_config.seed + k}"
                                        for k in range(1, ensemble))]
    if force and out_dir is not None:  # the old run goes only now, once the new one's settings and data passed
        clear_run_dir(Path(out_dir))
    try:
        members = [_fit_member(replace(config, seed=config.seed + k), train_config.replace(seed=train_config.seed + k),
                               train, val, target_only=target_only, progress=progress, log=log,
                               out_dir=member_dirs[k], meta=meta, resume=resume)
                   for k in range(ensemble)]
    except TrainingInterrupted as exc:
        if ensemble == 1:
            raise
        raise TrainingInterrupted(Path(out_dir) if out_dir is not None else None, exc.epoch, "an ensemble") from None

    def mean_forecast(forecasts: list[torch.Tensor]) -> torch.Tensor:  # one member's is used as it is (exact)
        return forecasts[0] if len(forecasts) == 1 else torch.stack(forecasts).mean(dim=0)

    def model_predict(x: torch.Tensor) -> torch.Tensor:  # the members' mean forecast, (b, t, c)
        return mean_forecast([member.predict(x) for member in members])

    # model averaging with the linear baseline: one weight, fitted on validation only, scored on test
    weight = blend_weight(model_predict, linear_predict, val, target_only=target_only)

    def all_forecasts(x: torch.Tensor) -> dict[str, torch.Tensor]:
        each = [member.predict(x) for member in members]  # computed once for all the scores
        forecast = mean_forecast(each)
        scored = {"model": forecast, "blend": weight * forecast + (1 - weight) * linear_predict(x)}
        return scored if ensemble == 1 else {**scored, **{f"member{k}": f for k, f in enumerate(each)}}

    scores = evaluate_forecasters(all_forecasts, test, target_only=target_only, leading=leading)
    scored, blend = scores["model"], scores["blend"]
    if log:
        log(f"blend with linear: model weight {weight:.3f} (fitted on validation)")
    attention = config.attention_type
    if attention == "lsh" and config.chunk_size >= config.n_patches:
        attention = "lsh (one chunk: exact shared-QK attention)"
    first = members[0]
    for member, member_dir in zip(members, member_dirs, strict=True):
        if member_dir is not None and member.selected != "trained":  # best/ must hold the weights that were scored
            save_checkpoint(member_dir / "best", member.model, {**(meta or {}), "selected": member.selected})
    train_info = {**train_config.to_dict(), **first.info(), "device_used": str(first.device)}  # one model's
    if ensemble > 1:  # each member's scores, and the mean forecast's validation MSE beside their best val_mse
        infos = [{**member.info(), "test_mse": scores[f"member{k}"].mse, "test_mae": scores[f"member{k}"].mae}
                 for k, member in enumerate(members)]
        val_mse = evaluate_forecaster(model_predict, val, target_only=target_only).mse
        train_info = {**train_config.to_dict(), "ensemble": ensemble, "ensemble_val_mse": val_mse,
                      "members": infos, "device_used": str(first.device)}
    name = (f"patch-reformer ({attention}, {config.n_patches} patches of {config.patch_len}"
            + (", linear skip" if config.linear_skip else "")
            + (f", mean of {ensemble} seeds {config.seed}-{config.seed + ensemble - 1})" if ensemble > 1 else ")"))
    result = LSTFResult(
        model_name=name, model=scored, repeat=repeat, linear=linear, blend=blend, blend_weight=weight,
        protocol=protocol, seq_len=seq_len, horizon=horizon, seed=train_config.seed, features=features,
        n_channels=n_channels, config=asdict(config), train=train_info, seconds=time.perf_counter() - began,
        drop_last=None if leading is None else _drop_last_scores({**base, **scores}, drop_last_batch, leading))
    if out_dir is not None:
        payload = result.to_json()
        others = [str(Path("..") / d.relative_to(out_dir) / "best") for d in member_dirs[1:] if d is not None]
        update_meta(Path(out_dir) / "best", evaluation=payload, **({"ensemble_members": others} if others else {}))
        atomic_write_text(Path(out_dir) / "evaluation.json", json.dumps(payload, indent=2) + "\n")
    return result


def _drop_last_scores(scores: dict[str, Metrics], batch: int | None, leading: int) -> dict[str, Any]:
    """`LSTFResult.drop_last`: the model's, blend's and baselines' scores on the leading windows."""
    block: dict[str, Any] = {"batch_size": batch, "n_windows": leading,
                             "n_dropped": scores["model"].n_windows - leading}
    for name in ("model", "repeat", "linear", "blend"):
        part = scores.get(f"{name}@leading")
        block[name] = None if part is None else {"mse": part.mse, "mae": part.mae}
    return block


@dataclass
class _Member:
    """One trained forecaster of a run (an ensemble has several, seeds seed, seed + 1, ...)."""

    model: PatchReformerForecaster
    fitted: FitResult
    selected: str
    start_val_mse: float | None
    device: torch.device

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Float32 forecast on the training device, returned on the CPU: (b, l, c) -> (b, t, c)."""
        return self.model(x.to(self.device)).float().cpu()

    def info(self) -> dict[str, Any]:
        history = self.fitted.history
        return {"seed": self.model.config.seed, "best_epoch": self.fitted.best_epoch, "epochs_run": len(history),
                "val_mse": [r["val_loss"] for r in history], "train_loss": [r["train_loss"] for r in history],
                "epoch_seconds": [round(r["seconds"], 1) for r in history], "start_val_mse": self.start_val_mse,
                "selected": self.selected}


def _fit_member(config: ForecastConfig, train_config: TrainConfig, train: WindowDataset, val: WindowDataset, *,
                target_only: bool, progress: bool, log: Callable[[str], None] | None, out_dir: str | Path | None,
                meta: dict[str, Any] | None, resume: bool) -> _Member:
    """Build and train one forecaster (`run_lstf`'s recipe: optional linear-skip start, kept if training never
    beats it on validation), evaluation mode on return."""
    forecaster = PatchReformerForecaster(config)
    initial: dict[str, Any] = {}
    if config.linear_skip:
        # start from the closed-form linear forecast (RevIN frame); keep it if training never beats it on validation
        init_linear_skip(forecaster, *train.arrays())
        start = evaluate_forecaster(forecaster.eval(), val, target_only=target_only)
        initial = {"val_mse": start.mse, "weights": copy.deepcopy(forecaster.state_dict())}
        if log:
            log(f"linear-skip start: validation MSE {start.mse:.4f}")
    fitted = train_forecaster(forecaster, train, val, train_config, target_only=target_only, progress=progress,
                              log=log, out_dir=out_dir, checkpoint_meta=meta,
                              resume=out_dir if resume and out_dir else None)
    forecaster.eval()
    member = _Member(forecaster, fitted, "trained", initial.get("val_mse"),
                     next(forecaster.parameters()).device)  # fit leaves the model on its training device
    if initial:
        trained_val = evaluate_forecaster(member.predict, val, target_only=target_only).mse
        if trained_val > initial["val_mse"]:
            forecaster.load_state_dict(initial["weights"])
            member.selected = "start (training never beat the linear start on validation)"
        if log:
            log(f"validation MSE trained {trained_val:.4f} vs start {initial['val_mse']:.4f}: kept {member.selected}")
    return member


def series_meta(series: TimeSeries, splits: LSTFSplits, spacing: Spacing | None, *, protocol: str,
                features: Literal["M", "S", "MS"], horizon: int) -> dict[str, Any]:
    """What a series checkpoint needs beside its weights to forecast from a CSV (`SeriesMeta`): the columns in
    model order, the target, the scaler (fitted on the training rows), the split and the data range with its
    `spacing` (`check_spacing`'s)."""
    stamps = series.timestamps
    data = SeriesData(series.path, len(series.values), None if spacing is None else spacing.step_ms,
                      None if stamps is None else int(stamps[0]), None if stamps is None else int(stamps[-1]),
                      int(splits.border2s[0]), None if spacing is None else spacing.calendar)
    return SeriesMeta(tuple(series.columns), series.target, features, splits.scaler, horizon, protocol,
                      data).to_dict()

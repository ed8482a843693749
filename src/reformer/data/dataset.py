"""The data-preparation facade: candles -> causal features -> windows, targets, embargoed splits, scaling.

    DataLoader(spec).prepare_dataset(klines, seq_len=168, horizon=24)  -> PreparedDataset (train/val/test)
    DataLoader(spec).prepare_walk_forward(klines, ...)                  -> list[PreparedDataset], one per fold
    DataLoader(spec).prepare_inputs(klines, seq_len, scaler=...)        -> InferenceWindows (every bar, no target)

A window ending at bar t holds the features of bars t-seq_len+1 .. t (all after the features' warm-up) and its
target is ln(C_{t+h} / C_t), its down/flat/up class, or the log realised variance ln(RV_t) of bars t+1 .. t+h
(every task carries the returns and RV beside its targets). Splits are chronological with an embargo (see
`reformer.data.windows`, which defines the targets too); the scaler is fitted on the rows of training windows only.

Shapes: `w` windows, `l` = seq_len, `f` features.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, TypeAlias

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from reformer.api.types import Kline
from reformer.bars import candle_frame
from reformer.data.features import FeatureSpec, compute_features
from reformer.data.scaling import StandardScaler, normalize_windows
from reformer.data.windows import (
    TASKS,
    Split,
    Task,
    bar_runs,
    chronological_split,
    forward_log_return,
    forward_realized_variance,
    gap_free_ends,
    gather_windows,
    task_targets,
    walk_forward_folds,
    window_end_bars,
)
from reformer.errors import ConfigError, DataFormatError, UserInputError

__all__ = ["DataLoader", "DatasetConfig", "InferenceWindows", "PreparedDataset", "WindowDataset", "klines_to_frame",
           "series_windows"]

Klines: TypeAlias = Sequence[Kline] | pd.DataFrame


@dataclass(frozen=True)
class DatasetConfig:
    """How candles become training windows."""

    seq_len: int = 168
    """Bars per input window."""
    horizon: int = 24
    """Target horizon h in bars: target = ln(C_{t+h} / C_t), or ln(RV_t) over bars t+1 .. t+h."""
    task: Task = "regression"
    """Regression on the forward log return, down/flat/up classes (0/1/2), or "realized-vol": regression on the
    log realised variance (`reformer.data.windows.forward_realized_variance`)."""
    class_threshold: float = 0.0
    """Classification: |return| <= threshold (log-return units) is flat."""
    normalization: Literal["train", "window", "none"] = "train"
    """`train`: StandardScaler fitted on the training windows' rows; `window`: z-score each window on its own."""
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
    """Chronological (train, val, test) fractions of the windows."""
    embargo: int | None = None
    """Gap in bars between splits' window end bars; default (None) = horizon; must be >= horizon."""
    stride: int = 1
    """Bars between consecutive window end bars."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "fractions", tuple(float(x) for x in self.fractions))
        for name in ("seq_len", "horizon", "stride"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"DatasetConfig.{name}={value!r} must be an integer >= 1")
        if self.task not in TASKS:
            raise ConfigError(f"DatasetConfig.task={self.task!r} must be one of {', '.join(map(repr, TASKS))}")
        if self.normalization not in ("train", "window", "none"):
            raise ConfigError(f"DatasetConfig.normalization={self.normalization!r} must be 'train', 'window' or 'none'")
        if not self.class_threshold >= 0:
            raise ConfigError(f"DatasetConfig.class_threshold={self.class_threshold} must be >= 0, e.g. 0.002")
        if self.embargo is not None and self.embargo < self.horizon:
            raise ConfigError(f"DatasetConfig.embargo={self.embargo} must be >= horizon={self.horizon} (or None)")

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict."""
        out = asdict(self)
        out["fractions"] = list(self.fractions)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DatasetConfig:
        """Inverse of `to_dict`."""
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise DataFormatError(f"DatasetConfig: unknown keys {unknown}; expected {sorted(cls.__dataclass_fields__)}")
        return cls(**{**data, "fractions": tuple(data.get("fractions", (0.7, 0.1, 0.2)))})


class WindowDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """torch Dataset over a subset of windows: item i -> (features `[l, f]` float32, target scalar)."""

    def __init__(self, features: torch.Tensor, targets: torch.Tensor, indices: np.ndarray | None = None) -> None:
        self.features = features
        self.targets = targets
        self.indices = np.arange(len(targets)) if indices is None else np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = int(self.indices[item])
        return self.features[index], self.targets[index]

    def batch(self, items: slice | torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Several items at once: features (b, ...) and targets (b, ...) of the windows `indices[items]`."""
        chosen = self.indices[items.numpy() if isinstance(items, torch.Tensor) else items]
        rows = torch.as_tensor(np.atleast_1d(chosen))
        return self.features[rows], self.targets[rows]

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Every item as numpy arrays: features (w, ...), targets (w, ...)."""
        features, targets = self.batch(slice(None))
        return features.numpy(), targets.numpy()


def series_windows(data: np.ndarray, seq_len: int, horizon: int) -> WindowDataset:
    """Every stride-1 (input, target) window of a multivariate series, as views of one buffer (no copy per window).

    Args:
        data: (n, c) values, scaled (a validation or test slice starts `seq_len` rows before its border).
        seq_len: l, input rows per window.
        horizon: t, target rows after the input.
    Shapes: item i -> x (l, c), y (t, c); `batch` -> x (b, l, c), y (b, t, c).
    """
    values = torch.as_tensor(np.ascontiguousarray(data), dtype=torch.float32)  # (n, c)
    windows = values.unfold(0, seq_len + horizon, 1).transpose(1, 2)  # (w, l+t, c) view
    return WindowDataset(windows[:, :seq_len], windows[:, seq_len:])


@dataclass(frozen=True, eq=False)
class PreparedDataset:
    """All windows of a candle series, their targets, the chronological split and the fitted scaler.

    `features` may be a strided view of one `[n_bars, f]` buffer (no copy per window): read it, do not write it.
    """

    features: torch.Tensor
    """`[w, l, f]` float32 inputs (normalised per `config.normalization`)."""
    targets: torch.Tensor
    """`[w]` float32 forward log returns, int64 classes 0 down / 1 flat / 2 up, or float32 ln(realized_var)."""
    forward_returns: np.ndarray
    """`[w]` float64 ln(C_{t+h} / C_t) (for every task: the backtest trades returns)."""
    realized_var: np.ndarray
    """`[w]` float64 RV_t = sum of the squared log returns of bars t+1 .. t+h, floored at `windows.RV_FLOOR` (for
    every task); NaN where `forward_returns` is (a target not known yet, or over a gap)."""
    timestamps: np.ndarray
    """`[w]` int64 open time (epoch ms UTC) of each window's last bar."""
    end_bars: np.ndarray
    """`[w]` int64 row of each window's last bar in the input candles."""
    close: np.ndarray
    """`[w]` float64 close of each window's last bar."""
    feature_names: tuple[str, ...]
    spec: FeatureSpec
    """The resolved feature spec (turnover_z removed if the candles had no turnover)."""
    config: DatasetConfig
    split: Split
    """Window positions of train / val / test."""
    scaler: StandardScaler | None
    """Fitted on training rows (normalization='train'), else None."""

    def __len__(self) -> int:
        return len(self.targets)

    def subset(self, name: Literal["train", "val", "test"]) -> WindowDataset:
        """torch Dataset of one split."""
        if name not in ("train", "val", "test"):
            raise UserInputError(f"split name {name!r} must be 'train', 'val' or 'test'")
        return WindowDataset(self.features, self.targets, getattr(self.split, name))

    @property
    def train(self) -> WindowDataset:
        return self.subset("train")

    @property
    def val(self) -> WindowDataset:
        return self.subset("val")

    @property
    def test(self) -> WindowDataset:
        return self.subset("test")

    def metadata(self) -> dict[str, Any]:
        """What a checkpoint needs to rebuild inputs: feature spec, dataset config, scaler (JSON-compatible)."""
        return {"spec": self.spec.to_dict(), "config": self.config.to_dict(), "feature_names": list(self.feature_names),
                "scaler": None if self.scaler is None else self.scaler.to_dict()}


@dataclass(frozen=True, eq=False)
class InferenceWindows:
    """Windows ending at every bar after the warm-up (including the last bar), for prediction / backtests."""

    features: torch.Tensor
    """`[w, l, f]` float32."""
    timestamps: np.ndarray
    """`[w]` int64 open time of each window's last bar."""
    end_bars: np.ndarray
    """`[w]` int64."""
    close: np.ndarray
    """`[w]` float64 close of each window's last bar."""
    feature_names: tuple[str, ...]


def klines_to_frame(klines: Klines) -> pd.DataFrame:
    """Validated candles with a `timestamp` column in epoch ms: `reformer.bars.candle_frame`, the one conversion.

    Raises:
        DataFormatError: missing columns, non-numeric or NaN values, non-positive prices, unsorted timestamps.
    """
    return candle_frame(klines)


@dataclass(frozen=True, eq=False)
class _Base:
    frame: pd.DataFrame
    values: np.ndarray  # (n, f) float64, NaN in the warm-up rows
    spec: FeatureSpec
    ends: np.ndarray  # (w,)


class DataLoader:
    """Facade over features, windows, splits and scaling (not torch's DataLoader, despite the name)."""

    def __init__(self, spec: FeatureSpec | None = None) -> None:
        self.spec = spec or FeatureSpec()

    def _base(self, klines: Klines, seq_len: int, horizon: int, stride: int, require_target: bool) -> _Base:
        frame = klines_to_frame(klines)
        spec = self.spec.resolve("turnover" in frame.columns)
        features = compute_features(frame, spec).to_numpy(dtype=np.float64)
        warmup = spec.warmup
        if not np.isfinite(features[warmup:]).all():
            row = warmup + int(np.flatnonzero(~np.isfinite(features[warmup:]).all(axis=1))[0])
            raise DataFormatError(f"feature row {row} is not finite after the warm-up; check the candle there "
                                  "(zero range, zero volume run, or a price jump)")
        ends = window_end_bars(len(frame), seq_len, horizon, warmup, stride, require_target)
        runs = bar_runs(frame["timestamp"].to_numpy())
        gapped = bool(runs[-1] > 0)
        if gapped and len(ends):  # gaps: keep the windows whose warm-up, inputs and target skip none
            kept = gap_free_ends(ends, runs, warmup + seq_len - 1, horizon if require_target else 0)
            first = pd.to_datetime(int(frame["timestamp"].iloc[int(np.argmax(runs > 0)) - 1]), unit="ms", utc=True)
            warnings.warn(f"{int(runs[-1])} gap(s) in the candles (the first after the bar of {first:%Y-%m-%d %H:%M} "
                          f"UTC): {len(ends) - len(kept)} of {len(ends)} windows span one and are left out; fetch "
                          "the missing candles to use them", UserWarning, stacklevel=3)
            ends = kept
        if not len(ends):
            raise UserInputError(f"{len(frame)} candles give no window: need warm-up {warmup} + seq_len {seq_len} "
                                 f"+ horizon {horizon if require_target else 0} bars"
                                 f"{' without a gap' if gapped else ''}; fetch more history")
        return _Base(frame, features, spec, ends)

    def prepare_dataset(self, klines: Klines, seq_len: int = 168, horizon: int = 24, *,
                        task: Task = "regression", class_threshold: float = 0.0,
                        normalization: Literal["train", "window", "none"] = "train",
                        fractions: tuple[float, float, float] = (0.7, 0.1, 0.2), embargo: int | None = None,
                        stride: int = 1) -> PreparedDataset:
        """Windows, targets, a chronological train/val/test split with embargo, and train-only scaling.

        Args:
            klines: candles in time order (list of `Kline` or DataFrame, see `klines_to_frame`).
            seq_len, horizon, task, class_threshold, normalization, fractions, embargo, stride: see `DatasetConfig`.

        Returns:
            `PreparedDataset` with `features [w, l, f]`, `targets [w]`, `timestamps [w]`, names, spec, split, scaler.

        Raises:
            ConfigError: invalid options. DataFormatError: bad candles. UserInputError: too few candles.
        """
        config = DatasetConfig(seq_len, horizon, task, class_threshold, normalization, fractions, embargo, stride)
        base = self._base(klines, seq_len, horizon, stride, require_target=True)
        split = chronological_split(base.ends, horizon, config.fractions, config.embargo)
        return self._assemble(base, config, split)

    def count_windows(self, klines: Klines, seq_len: int, horizon: int, stride: int = 1) -> int:
        """How many windows with a target `prepare_dataset` makes of these candles (none: `UserInputError`)."""
        return len(self._base(klines, seq_len, horizon, stride, require_target=True).ends)

    def prepare_walk_forward(self, klines: Klines, seq_len: int = 168, horizon: int = 24, *, n_folds: int | None,
                             test_windows: int, train_windows: int | None = None, val_windows: int = 0,
                             mode: Literal["rolling", "expanding"] = "rolling",
                             task: Task = "regression", class_threshold: float = 0.0,
                             normalization: Literal["train", "window", "none"] = "train",
                             embargo: int | None = None, stride: int = 1) -> list[PreparedDataset]:
        """`iter_walk_forward`'s folds as a list (every fold's windows held at once)."""
        return list(self.iter_walk_forward(
            klines, seq_len, horizon, n_folds=n_folds, test_windows=test_windows, train_windows=train_windows,
            val_windows=val_windows, mode=mode, task=task, class_threshold=class_threshold,
            normalization=normalization, embargo=embargo, stride=stride))

    def iter_walk_forward(self, klines: Klines, seq_len: int = 168, horizon: int = 24, *, n_folds: int | None,
                          test_windows: int, train_windows: int | None = None, val_windows: int = 0,
                          mode: Literal["rolling", "expanding"] = "rolling",
                          task: Task = "regression", class_threshold: float = 0.0,
                          normalization: Literal["train", "window", "none"] = "train",
                          embargo: int | None = None, stride: int = 1) -> Iterator[PreparedDataset]:
        """One `PreparedDataset` per walk-forward fold, each with its own scaler fitted on that fold's training rows.

        See `reformer.data.windows.walk_forward_folds` for the fold layout; the other args as `prepare_dataset`.
        Every fold shares the features; `split` differs, and `features` are scaled with the fold's scaler. Folds are
        assembled one at a time: with a gap in the candles each holds a copy of every window.

        `n_folds=None` walks the whole series: test blocks of `test_windows` from the first window with a whole
        fold before it up to the window ending at the last candle, as a model retrained every `test_windows` bars
        would predict them. Windows whose target is not known yet (the last `horizon`) or spans a gap are then
        test windows only: their `forward_returns`, `realized_var` and regression targets are NaN (their classes
        meaningless).
        """
        config = DatasetConfig(seq_len, horizon, task, class_threshold, normalization, embargo=embargo, stride=stride)
        walk = n_folds is None
        base = self._base(klines, seq_len, horizon, stride, require_target=not walk)
        known = _target_known(base, horizon) if walk else None
        folds = walk_forward_folds(base.ends, horizon, n_folds, test_windows, train_windows, val_windows, mode,
                                   config.embargo, trainable=known)
        # without a training scaler the windows do not depend on the fold: one tensor serves every fold (window
        # normalisation copies them, (w, l, f) each)
        shared = None if config.normalization == "train" else self._windows(base, base.ends, seq_len,
                                                                            config.normalization, None)
        for fold in folds:
            yield self._assemble(base, config, fold, shared, known)

    def prepare_inputs(self, klines: Klines, seq_len: int, *, scaler: StandardScaler | None = None,
                       normalization: Literal["train", "window", "none"] = "train",
                       stride: int = 1) -> InferenceWindows:
        """Input windows ending at every bar after the warm-up, including the latest (no targets needed).

        Args:
            klines: candles (enough for the warm-up + seq_len).
            seq_len: bars per window (as in training).
            scaler: the training scaler (required for normalization='train', e.g. from a checkpoint).
            normalization: as in training.
            stride: bars between window ends, counted back so the last window ends at the last bar.
        """
        if normalization == "train" and scaler is None:
            raise ConfigError("normalization='train' needs the training scaler: pass scaler=StandardScaler.from_dict("
                              "checkpoint['scaler'])")
        base = self._base(klines, seq_len, 1, 1, require_target=False)
        ends = base.ends[::-1][::stride][::-1].copy()
        features = self._windows(base, ends, seq_len, normalization, scaler)
        return InferenceWindows(features, base.frame["timestamp"].to_numpy()[ends], ends,
                                base.frame["close"].to_numpy()[ends], base.spec.columns())

    @staticmethod
    def _windows(base: _Base, ends: np.ndarray, seq_len: int, normalization: str,
                 scaler: StandardScaler | None) -> torch.Tensor:
        if normalization == "window":
            normed, _, _ = normalize_windows(gather_windows(base.values, ends, seq_len))
            return torch.from_numpy(normed)  # (w, l, f)
        values = base.values if scaler is None else scaler.transform(base.values)
        start = int(ends[0]) - seq_len + 1
        buffer = torch.from_numpy(values[start:].astype(np.float32))  # (n - start, f)
        step = int(ends[1] - ends[0]) if len(ends) > 1 else 1
        if len(ends) > 1 and not (np.diff(ends) == step).all():
            return torch.from_numpy(gather_windows(values, ends, seq_len).astype(np.float32))
        windows = buffer.unfold(0, seq_len, step)[: len(ends)]  # (w, f, l), a view
        return windows.permute(0, 2, 1)  # (w, l, f)

    def _assemble(self, base: _Base, config: DatasetConfig, split: Split, features: torch.Tensor | None = None,
                  known: np.ndarray | None = None) -> PreparedDataset:
        ends, seq_len = base.ends, config.seq_len
        scaler = None
        if config.normalization == "train":
            first_row = int(ends[split.train[0]]) - seq_len + 1
            scaler = StandardScaler().fit(base.values[first_row: int(ends[split.train[-1]]) + 1])
        if features is None:
            features = self._windows(base, ends, seq_len, config.normalization, scaler)
        close = base.frame["close"].to_numpy(dtype=np.float64)
        forward = forward_log_return(close, config.horizon)[ends]
        variance = forward_realized_variance(close, config.horizon)[ends]
        if known is not None:  # a return (or variance) over a gap is not an h-bar one
            forward[~known] = variance[~known] = np.nan
        values = task_targets(config.task, forward, variance, config.class_threshold)
        targets = torch.from_numpy(values if values.dtype == np.int64 else values.astype(np.float32))
        return PreparedDataset(features, targets, forward, variance, base.frame["timestamp"].to_numpy()[ends], ends,
                               close[ends], base.spec.columns(), base.spec, config, split, scaler)


def _target_known(base: _Base, horizon: int) -> np.ndarray:
    """`[w]` bool: the window's target closed within the candles, in the run of bars of its last input."""
    runs = bar_runs(base.frame["timestamp"].to_numpy())
    known = base.ends + horizon < len(runs)
    known[known] = runs[base.ends[known]] == runs[base.ends[known] + horizon]
    return known

"""What a checkpoint's `checkpoint.json` says beside the model's config, as typed records read in one place.

Two pipelines write checkpoints that other commands read back:

    CandleMeta   a `ReformerModel` trained on candles (`reformer train`): task, horizon, features, the
                 dataset's settings, the training scaler, the target's scaling, the candles' range and source, and
                 after training the validation RMSE (and residual variance) and the test evaluation
    SeriesMeta   a series forecaster trained on any CSV (`reformer train --csv F --target C`): the columns in
                 model order, the target, the M/S/MS mode, the scaler and the file's range and step

Each is written with `to_dict()` (the `meta` that `save_checkpoint` stores beside `format_version`,
`model_kind` and `model_config`) and read with `from_dict(document, where)`, which checks every key it keeps.
A corrupt or hand-edited JSON is refused when the checkpoint is opened, with one line naming the file and the
key, never later inside a pipeline as a `KeyError`. The JSON layout is the one checkpoints have always had, so
older checkpoints read the same; keys a record does not know (per-epoch `metrics`, `train_config`,
`train_state`) are left to their readers.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, cast

from reformer.data.dataset import DatasetConfig
from reformer.data.features import FeatureSpec
from reformer.data.multi import CalendarSplit
from reformer.data.scaling import StandardScaler
from reformer.data.spacing import CALENDARS, Spacing
from reformer.data.windows import TASKS
from reformer.errors import DataFormatError, UserInputError

from ._fields import _bad, _get, _int, _names, _parsed
from .checkpoint import META_FILE, read_meta, resolve_checkpoint_dir

__all__ = ["CandleData", "CandleMeta", "MultiSymbolMeta", "SeriesData", "SeriesMeta", "SymbolEntry", "TrainState"]

@dataclass(frozen=True)
class CandleData:
    """The candles a candle model was trained on."""

    first_timestamp: int
    """Open time (epoch ms UTC) of the first candle."""
    last_timestamp: int
    """Open time of the last candle."""
    n_bars: int
    bar_ms: int | None = None
    """The bar step; None in checkpoints written before it was stored (then nothing checks the interval)."""
    source: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """Where they came from: symbol, interval, category, or csv."""

    _KEYS: ClassVar[tuple[str, ...]] = ("first_timestamp", "last_timestamp", "n_bars", "bar_ms")

    @property
    def interval(self) -> str | None:
        """The Bybit interval their source names, if it names one."""
        value = self.source.get("interval")
        return str(value) if value else None

    def to_dict(self) -> dict[str, Any]:
        return {"first_timestamp": self.first_timestamp, "last_timestamp": self.last_timestamp,
                "n_bars": self.n_bars, "bar_ms": self.bar_ms, **self.source}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], where: object) -> CandleData:
        return cls(_int(doc, "first_timestamp", where), _int(doc, "last_timestamp", where),
                   _int(doc, "n_bars", where), _int(doc, "bar_ms", where, optional=True, default=None) or None,
                   {k: v for k, v in doc.items() if k not in cls._KEYS})


@dataclass(frozen=True)
class CandleMeta:
    """A candle model's checkpoint description (`model_kind` "reformer", `kind` "crypto")."""

    task: str
    """"regression" (forward log return), "classification" (down/flat/up) or "realized-vol" (log realised
    variance, `reformer.data.windows.forward_realized_variance`)."""
    horizon: int
    """Bars ahead the target looks."""
    feature_spec: FeatureSpec
    feature_names: tuple[str, ...]
    """The model's input columns, in order."""
    dataset: DatasetConfig
    """How candles became windows (seq_len, normalization, class threshold, ...)."""
    scaler: StandardScaler | None
    """Fitted on the training rows (None: per-window or no normalization)."""
    data: CandleData
    target_scale: float = 1.0
    """Regression targets were divided by this in training (after `target_offset` was subtracted); outputs are
    multiplied back."""
    class_threshold: float = 0.0
    val_rmse: float | None = None
    """RMSE of the validation forecasts in target units: returns (predict's confidence scale), or ln RV; set after
    training."""
    evaluation: Mapping[str, Any] | None = None
    """The test evaluation beside baselines, with the split's bar ranges; in `best/` after training."""
    target_offset: float = 0.0
    """Subtracted from the targets before `target_scale` divided them: the training windows' mean ln RV for
    realized-vol, 0 for returns; a forecast is offset + scale * output."""
    residual_var: float | None = None
    """realized-vol: s2, the mean squared residual of the log forecast on the validation windows; the variance
    forecast is exp(forecast + s2 / 2) (`reformer.pipelines.crypto_vol`). Set after training."""

    KIND: ClassVar[str] = "crypto"

    @property
    def test_start(self) -> int | None:
        """Open time of the first bar of the held-out test split, when the evaluation records it."""
        first = (((self.evaluation or {}).get("splits") or {}).get("test") or {}).get("first_timestamp")
        return None if first is None else int(first)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.KIND, "task": self.task, "horizon": self.horizon, "class_threshold": self.class_threshold,
            "target_scale": self.target_scale, "feature_spec": self.feature_spec.to_dict(),
            "feature_names": list(self.feature_names), "dataset": self.dataset.to_dict(),
            "scaler": None if self.scaler is None else self.scaler.to_dict(), "data": self.data.to_dict()}
        if self.target_offset:
            out["target_offset"] = self.target_offset
        for key in ("val_rmse", "residual_var"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.evaluation is not None:
            out["evaluation"] = dict(self.evaluation)
        return out

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], where: object) -> CandleMeta:
        """Raises: DataFormatError naming `where` (the JSON file) and the first key that is missing or wrong."""
        kind = doc.get("kind")
        if kind != cls.KIND:
            raise DataFormatError(f"{where}: not a candle model's checkpoint (kind={kind!r}); train one with "
                                  "`reformer train`")
        tasks = " or ".join(f'"{task}"' for task in TASKS)
        task = _get(doc, "task", str, where, tasks)
        if task not in TASKS:
            raise _bad(where, "task", tasks)
        scaler = doc.get("scaler")
        number = (int, float)
        return cls(task=task, horizon=_int(doc, "horizon", where),
                   feature_spec=_parsed(where, "feature_spec", FeatureSpec.from_dict, doc),
                   feature_names=_names(doc, "feature_names", where),
                   dataset=_parsed(where, "dataset", DatasetConfig.from_dict, doc),
                   scaler=None if scaler is None else _parsed(where, "scaler", StandardScaler.from_dict, doc),
                   data=CandleData.from_dict(_get(doc, "data", dict, where, "an object"), where),
                   target_scale=float(_get(doc, "target_scale", number, where, "a number", default=1.0)),
                   class_threshold=float(_get(doc, "class_threshold", number, where, "a number", default=0.0)),
                   val_rmse=_get(doc, "val_rmse", number, where, "a number or null", default=None, optional=True),
                   evaluation=_get(doc, "evaluation", dict, where, "an object or null", default=None, optional=True),
                   target_offset=float(_get(doc, "target_offset", number, where, "a number", default=0.0)),
                   residual_var=_get(doc, "residual_var", number, where, "a number or null", default=None,
                                     optional=True))

    @classmethod
    def read(cls, path: str | os.PathLike[str], symbol: str | None = None) -> CandleMeta:
        """The description of the checkpoint at `path` (a run directory, a checkpoint directory or a file in one);
        for a model of several symbols, the one of `symbol` (`MultiSymbolMeta.for_symbol`)."""
        directory = resolve_checkpoint_dir(path)
        document = read_meta(directory)
        if document.get("kind") == MultiSymbolMeta.KIND:
            multi = MultiSymbolMeta.from_dict(document, directory / META_FILE)
            if symbol is None:
                raise UserInputError(f"{directory} holds one model of several symbols ({', '.join(multi.symbols)}): "
                                     "name the one to read (--symbol)")
            return multi.for_symbol(symbol)
        return cls.from_dict(document, directory / META_FILE)


@dataclass(frozen=True)
class SymbolEntry:
    """What a multi-symbol checkpoint keeps per symbol: its scaling and its candles."""

    scaler: StandardScaler | None
    """Fitted on this symbol's training rows only (None: per-window or no normalization)."""
    target_scale: float
    """This symbol's regression targets were divided by it in training (the std of its training targets)."""
    data: CandleData
    val_rmse: float | None = None
    """RMSE of this symbol's validation forecasts in return units; set after training."""

    def to_dict(self) -> dict[str, Any]:
        return {"scaler": None if self.scaler is None else self.scaler.to_dict(), "target_scale": self.target_scale,
                "data": self.data.to_dict(), "val_rmse": self.val_rmse}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], where: object) -> SymbolEntry:
        scaler = None if doc.get("scaler") is None else _parsed(where, "scaler", StandardScaler.from_dict, doc)
        return cls(scaler, float(_get(doc, "target_scale", (int, float), where, "a number")),
                   CandleData.from_dict(_get(doc, "data", dict, where, "an object"), where),
                   _get(doc, "val_rmse", (int, float), where, "a number or null", default=None, optional=True))


@dataclass(frozen=True)
class MultiSymbolMeta:
    """A checkpoint of one model trained on several symbols (`kind` "crypto-multi"): what they share (task,
    features, dataset settings, the calendar split) and, per symbol, its scaler, target scale and candles."""

    task: str
    horizon: int
    feature_spec: FeatureSpec
    feature_names: tuple[str, ...]
    dataset: DatasetConfig
    split: CalendarSplit
    """The train / val / test borders (times) every symbol was split by."""
    symbols: Mapping[str, SymbolEntry]  # in training order
    class_threshold: float = 0.0
    evaluation: Mapping[str, Any] | None = None
    """Per-symbol and pooled test scores beside baselines; in `best/` after training."""

    KIND: ClassVar[str] = "crypto-multi"

    def for_symbol(self, symbol: str) -> CandleMeta:
        """The single-symbol description predict and backtest read: this symbol's scaler, target scale, candles
        and evaluation. Raises: UserInputError for a symbol the model was not trained on."""
        entry = self.symbols.get(symbol)
        if entry is None:
            raise UserInputError(f"the model was not trained on {symbol!r}; pick one of {', '.join(self.symbols)}")
        per_symbol = ((self.evaluation or {}).get("per_symbol") or {}).get(symbol)
        return CandleMeta(self.task, self.horizon, self.feature_spec, self.feature_names, self.dataset, entry.scaler,
                          entry.data, entry.target_scale, self.class_threshold, entry.val_rmse, per_symbol)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.KIND, "task": self.task, "horizon": self.horizon, "class_threshold": self.class_threshold,
            "feature_spec": self.feature_spec.to_dict(), "feature_names": list(self.feature_names),
            "dataset": self.dataset.to_dict(), "split": self.split.to_dict(),
            "symbols": {symbol: entry.to_dict() for symbol, entry in self.symbols.items()}}
        if self.evaluation is not None:
            out["evaluation"] = dict(self.evaluation)
        return out

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], where: object) -> MultiSymbolMeta:
        """Raises: DataFormatError naming `where` (the JSON file) and the first key that is missing or wrong."""
        if doc.get("kind") != cls.KIND:
            raise DataFormatError(f"{where}: not a multi-symbol model's checkpoint (kind={doc.get('kind')!r}); "
                                  "train one with `reformer train --symbols A,B`")
        task = _get(doc, "task", str, where, '"regression" or "classification"')
        symbols = _get(doc, "symbols", dict, where, "an object of symbols")
        if not symbols or not all(isinstance(entry, dict) for entry in symbols.values()):
            raise _bad(where, "symbols", "a non-empty object of symbols")
        return cls(task, _int(doc, "horizon", where), _parsed(where, "feature_spec", FeatureSpec.from_dict, doc),
                   _names(doc, "feature_names", where), _parsed(where, "dataset", DatasetConfig.from_dict, doc),
                   _parsed(where, "split", CalendarSplit.from_dict, doc),
                   {symbol: SymbolEntry.from_dict(entry, f"{where} [{symbol}]") for symbol, entry in symbols.items()},
                   float(_get(doc, "class_threshold", (int, float), where, "a number", default=0.0)),
                   _get(doc, "evaluation", dict, where, "an object or null", default=None, optional=True))

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> MultiSymbolMeta:
        """The description of the checkpoint at `path` (as `CandleMeta.read`)."""
        directory = resolve_checkpoint_dir(path)
        return cls.from_dict(read_meta(directory), directory / META_FILE)


@dataclass(frozen=True)
class SeriesData:
    """The CSV file a series forecaster was trained on."""

    source: str | None = None
    """The file's path as given."""
    rows: int | None = None
    step_ms: int | None = None
    """Spacing of its rows, the median (None: the file has no dates)."""
    first_timestamp: int | None = None
    last_timestamp: int | None = None
    train_rows: int | None = None
    """Rows the scaler and the model were fitted on (the first ones)."""
    calendar: str | None = None
    """The rows' calendar step (a key of `data.spacing.CALENDARS`: "months", "business days", ...) when they are
    spaced by one rather than by `step_ms`; None otherwise, and in checkpoints written before it was kept."""

    def spacing(self) -> Spacing | None:
        """How the training file's rows were spaced (None without dates)."""
        return None if self.step_ms is None else Spacing(self.step_ms, self.calendar)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], where: object) -> SeriesData:
        step = _int(doc, "step_ms", where, optional=True, default=None)
        if step == 0:
            raise _bad(where, "step_ms", "a positive integer or null")
        calendar = _get(doc, "calendar", str, where, "a calendar step or null", default=None, optional=True)
        if calendar is not None and calendar not in CALENDARS:
            raise _bad(where, "calendar", f"one of {sorted(CALENDARS)} or null")
        return cls(_get(doc, "source", str, where, "a path or null", default=None, optional=True),
                   _int(doc, "rows", where, optional=True, default=None), step,
                   _int(doc, "first_timestamp", where, optional=True, default=None),
                   _int(doc, "last_timestamp", where, optional=True, default=None),
                   _int(doc, "train_rows", where, optional=True, default=None), calendar)


@dataclass(frozen=True)
class SeriesMeta:
    """A series forecaster's checkpoint description (`model_kind` "patch-forecaster")."""

    feature_names: tuple[str, ...]
    """The columns in model order, the target last."""
    target: str
    features: Literal["M", "S", "MS"]
    """"M" (all columns in, all out), "S" (the target alone) or "MS" (all in, the target out)."""
    scaler: StandardScaler
    """Fitted on the training rows, one mean and std per column of `feature_names`."""
    horizon: int | None = None
    protocol: str | None = None
    """"lstf" (the benchmarks' fixed borders) or "ratio" (70/10/20)."""
    data: SeriesData = dataclasses.field(default_factory=SeriesData)
    evaluation: Mapping[str, Any] | None = None
    ensemble_members: tuple[str, ...] = ()
    """Checkpoint folders, relative to this one, of the other members of a kept ensemble."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "feature_names": list(self.feature_names), "target": self.target, "features": self.features,
            "protocol": self.protocol, "horizon": self.horizon, "task": "series-forecast",
            "scaler": self.scaler.to_dict(), "data": self.data.to_dict()}
        if self.evaluation is not None:
            out["evaluation"] = dict(self.evaluation)
        if self.ensemble_members:
            out["ensemble_members"] = list(self.ensemble_members)
        return out

    def same_training_data(self, other: SeriesMeta) -> bool:
        """Both read the same columns the same way (an ensemble's members must)."""
        return (self.feature_names, self.target, self.features, self.horizon) == (
            other.feature_names, other.target, other.features, other.horizon) and \
            self.scaler.to_dict() == other.scaler.to_dict()

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], where: object) -> SeriesMeta:
        """Raises: DataFormatError naming `where` (the JSON file) and the first key that is missing or wrong."""
        names = _names(doc, "feature_names", where)
        target = _get(doc, "target", str, where, "a column name")
        features = _get(doc, "features", str, where, '"M", "S" or "MS"')
        if features not in ("M", "S", "MS"):
            raise _bad(where, "features", '"M", "S" or "MS"')
        if target not in names:
            raise _bad(where, "target", f"one of feature_names {list(names)}")
        scaler = _parsed(where, "scaler", StandardScaler.from_dict, doc)
        if scaler.mean is None or len(scaler.mean) != len(names):
            raise _bad(where, "scaler", f"one mean and std for each of the {len(names)} feature_names")
        members = _get(doc, "ensemble_members", list, where, "a list of paths", default=None, optional=True) or []
        if not all(isinstance(item, str) for item in members):
            raise _bad(where, "ensemble_members", "a list of paths")
        data = _get(doc, "data", dict, where, "an object or null", default=None, optional=True)
        mode = cast(Literal["M", "S", "MS"], features)
        return cls(names, target, mode, scaler, _int(doc, "horizon", where, optional=True, default=None),
                   _get(doc, "protocol", str, where, "a string or null", default=None, optional=True),
                   SeriesData() if data is None else SeriesData.from_dict(data, where),
                   _get(doc, "evaluation", dict, where, "an object or null", default=None, optional=True),
                   tuple(members))


@dataclass(frozen=True)
class TrainState:
    """Where an interrupted run stopped: stored in every `last/` checkpoint, read by `fit(resume=...)`."""

    epoch: int = 0
    step: int = 0
    best_epoch: int = 0
    best_val_loss: float = float("inf")
    bad_epochs: int = 0
    """Epochs since the validation loss last improved (early stopping's count)."""
    history: tuple[Mapping[str, float], ...] = ()
    """One record per epoch: losses and metrics, as `metrics.csv` holds them."""

    def to_dict(self) -> dict[str, Any]:
        state = {k: getattr(self, k) for k in ("epoch", "step", "best_epoch", "best_val_loss", "bad_epochs")}
        return {"state": state, "history": [dict(record) for record in self.history]}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], where: object) -> TrainState:
        state = _get(doc, "state", dict, where, "an object")
        history = _get(doc, "history", list, where, "a list of epoch records")
        if not all(isinstance(record, dict) for record in history):
            raise _bad(where, "history", "a list of epoch records")
        number = (int, float)
        return cls(_int(state, "epoch", where), _int(state, "step", where), _int(state, "best_epoch", where),
                   float(_get(state, "best_val_loss", number, where, "a number")), _int(state, "bad_epochs", where),
                   tuple(history))


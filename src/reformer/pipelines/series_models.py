"""Forecasting any CSV time series with a series checkpoint (`reformer train --csv FILE --target COL`).

A series checkpoint holds the patched Reformer forecaster of `reformer.model.forecaster` (RevIN, patches, channel
independence) with what it needs to read a new file the way it read its training file: the columns in model order
(`feature_names`; the target last), the target, the features mode (M, S or MS), the scaler fitted on the
training rows, and the data's step. Forecasts come back in the file's own units:

    y = scaler^-1( model( scaler(x_{n-l+1..n}) ) )      x: the last l rows, y: the next t rows

Shape legend: n rows, l input length (`seq_len`), t horizon, c channels, w windows.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from reformer.data.scaling import StandardScaler
from reformer.data.spacing import Spacing
from reformer.data.timeseries import TimeSeries, load_timeseries_csv
from reformer.errors import DataFormatError, UserInputError
from reformer.model import ForecastConfig, PatchReformerForecaster
from reformer.textio import header_separator

from ..training.checkpoint import META_FILE, model_kind, read_meta, rebuild, resolve_checkpoint_dir
from ..training.meta import SeriesMeta

__all__ = ["SeriesForecast", "forecast_all", "forecast_latest", "is_series_checkpoint", "load_series_checkpoint",
           "load_series_models", "plot_forecast"]

def is_series_checkpoint(path: str | os.PathLike[str]) -> bool:
    """True if the checkpoint at `path` (run or checkpoint directory) holds a series forecaster."""
    return model_kind(read_meta(path)) == PatchReformerForecaster.checkpoint_kind


def load_series_checkpoint(path: str | os.PathLike[str]) -> tuple[PatchReformerForecaster, SeriesMeta]:
    """Rebuild a series forecaster (CPU, eval mode) and return it with its description.

    Raises:
        UserInputError: no checkpoint at `path`, or a candle model's checkpoint.
        DataFormatError: corrupt or incomplete checkpoint (the message names the file).
    """
    directory = resolve_checkpoint_dir(path)
    document = read_meta(directory)
    if model_kind(document) != PatchReformerForecaster.checkpoint_kind:
        raise UserInputError(f"{directory} holds a candle model ({model_kind(document)}), not a series forecaster: "
                             "predict from candles with `reformer predict --checkpoint RUN --csv KLINES.csv`")
    meta = SeriesMeta.from_dict(document, directory / META_FILE)
    model = rebuild(directory, document, lambda config: PatchReformerForecaster(ForecastConfig.from_dict(config)))
    return model, meta


def load_series_models(path: str | os.PathLike[str]) -> tuple[list[PatchReformerForecaster], SeriesMeta]:
    """The forecaster(s) of a series checkpoint: one, or a kept ensemble's members (`ensemble_members` in its
    `checkpoint.json`, paths relative to it), whose mean forecast is the run's; with the first's `checkpoint.json`.

    Raises:
        DataFormatError: a member is missing or corrupt, or was trained on other columns, scaling or lengths.
    """
    directory = resolve_checkpoint_dir(path)
    model, meta = load_series_checkpoint(directory)
    models = [model]
    for item in meta.ensemble_members:
        member_dir = directory / item
        if not (member_dir / META_FILE).is_file():
            raise DataFormatError(f"{member_dir}: an ensemble member of {path} is missing; restore the run's "
                                  "members/ folder or retrain")
        member, member_meta = load_series_checkpoint(member_dir)
        lengths = (member.config.seq_len, member.config.horizon) != (model.config.seq_len, model.config.horizon)
        if not member_meta.same_training_data(meta) or lengths:
            raise DataFormatError(f"{member_dir}: this ensemble member was trained on other columns, scaling or "
                                  f"lengths than {path}; retrain the ensemble")
        models.append(member)
    return models, meta


def _read(meta: SeriesMeta, csv: str | os.PathLike[str], seq_len: int
          ) -> tuple[TimeSeries, np.ndarray, list[str], StandardScaler]:
    """The file read as the checkpoint read its training file, and its rows scaled by the training scaler.

    Columns are matched by name (the file may order them differently); the rows must be spaced as the training
    file's were (`data.spacing()`: a step, or a calendar step; checked only when both have dates).

    Returns: (series with its columns in model order, scaled (n, c) float32, the forecast columns in the file's
        order, the training scaler).
    Raises: DataFormatError on missing or extra columns, another step between rows, or fewer rows than one window.
    """
    expected = list(meta.feature_names)
    try:
        header = [str(c).strip() for c in pd.read_csv(csv, sep=header_separator(Path(csv)), nrows=0).columns]
    except (OSError, ValueError, UnicodeDecodeError):
        header = None  # unreadable: load_timeseries_csv names the problem
    if header is not None and not set(expected) <= set(header):
        missing = [c for c in expected if c not in header]
        raise DataFormatError(f"{csv}: no column(s) {missing}; the model was trained on {expected}: pass a file "
                              "with those columns")
    series = load_timeseries_csv(Path(csv), target=meta.target, features=meta.features)
    if set(series.columns) != set(expected):
        extra = [c for c in series.columns if c not in expected]
        raise DataFormatError(f"{csv}: columns {extra} were not in the training file (the model reads exactly "
                              f"{expected}); remove them from the file")
    order = [series.columns.index(c) for c in expected]
    series = replace(series, values=series.values[:, order], columns=tuple(expected))
    trained = meta.data.spacing()
    found = None if series.timestamps is None else Spacing.infer(series.timestamps)
    if trained is not None and found is not None and not found.matches(trained):
        raise DataFormatError(f"{csv}: rows are {found.describe()}, the model was trained on rows "
                              f"{trained.describe()}; pass a file sampled like the training file")
    if len(series.values) < seq_len:
        raise DataFormatError(f"{csv}: {len(series.values)} rows, the model needs the last {seq_len} rows as "
                              "its input; pass a longer file")
    scaler = meta.scaler  # one column per feature name: checked when the checkpoint was read
    outputs = expected if meta.features == "M" else [meta.target]
    in_file = [c for c in (header or expected) if c in outputs]
    return series, scaler.transform(series.values).astype(np.float32), in_file, scaler


def _evenly_spaced_ends(stamps: np.ndarray | None, spacing: Spacing | None, seq_len: int) -> np.ndarray:
    """For each window end row l-1 .. n-1: whether its l rows are one step apart (all True without dates or
    spacing).

    Returns: (n - l + 1,) bool.
    """
    n = 0 if stamps is None else len(stamps)
    if stamps is None or spacing is None or n < 2:
        return np.ones(max(n - seq_len + 1, 1) if stamps is not None else 1, dtype=bool)
    return ~spacing.broken_windows(stamps, seq_len)


@dataclass(frozen=True)
class SeriesForecast:
    """The forecast of the next `horizon` rows after a file's last row, in the file's units."""

    target: str
    horizon: int
    last_timestamp: int | None
    """Epoch ms of the input's last row (None when the file has no date column)."""
    table: pd.DataFrame
    """One row per future step: `step` (1..t), `timestamp` (epoch ms, when the file has dates), then every
    forecast column (M: all channels; S and MS: the target)."""
    history: np.ndarray = field(repr=False)
    """The target's last `seq_len` observed values, the model's input, in the file's units: (l,)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible: target, horizon, last_timestamp and the forecast rows."""
        return {"target": self.target, "horizon": self.horizon, "last_timestamp": self.last_timestamp,
                "forecast": self.table.to_dict(orient="records")}


def _forecast(models: list[PatchReformerForecaster], scaled_windows: torch.Tensor, scaler: StandardScaler,
              bfloat16: bool = False) -> np.ndarray:
    """The models' mean output in the file's units: windows (w, l, c) scaled -> (w, t, c)."""
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
        outputs = [model(scaled_windows).double() for model in models]  # each (w, t, c)
        out = (outputs[0] if len(outputs) == 1 else torch.stack(outputs).mean(dim=0)).numpy()  # (w, t, c)
    w, t, c = out.shape
    return scaler.inverse_transform(out.reshape(w * t, c)).reshape(w, t, c)


def forecast_latest(checkpoint: str | os.PathLike[str], csv: str | os.PathLike[str],
                    bfloat16: bool = False) -> SeriesForecast:
    """Forecast the `horizon` rows after the file's last row from its last `seq_len` rows (`bfloat16`: matrix
    products under CPU bfloat16 autocast).

    Raises:
        DataFormatError: see `_read`; or the last `seq_len` rows are not evenly spaced at the training step.
    """
    models, meta = load_series_models(checkpoint)
    config = models[0].config
    series, scaled, columns, scaler = _read(meta, csv, config.seq_len)
    spacing = meta.data.spacing()
    if series.timestamps is not None and not _evenly_spaced_ends(series.timestamps[-config.seq_len:], spacing,
                                                                 config.seq_len)[-1]:
        assert spacing is not None
        raise DataFormatError(f"{csv}: the last {config.seq_len} rows, the model's input, are not all "
                              f"{spacing.describe()} (a gap or a change of spacing); fill the gap, or predict "
                              "from a file that ends before it")
    values = _forecast(models, torch.from_numpy(scaled[-config.seq_len:])[None], scaler, bfloat16)[0]  # (t, c)
    table = pd.DataFrame({"step": np.arange(1, config.horizon + 1)})
    last = None
    if series.timestamps is not None:
        last = int(series.timestamps[-1])
        if spacing is not None:
            table["timestamp"] = spacing.following(last, config.horizon)
    names = list(meta.feature_names)
    for column in columns:
        table[column] = values[:, names.index(column)]
    history = series.values[-config.seq_len:, names.index(meta.target)]  # (l,)
    return SeriesForecast(meta.target, config.horizon, last, table, history)


def forecast_all(checkpoint: str | os.PathLike[str], csv: str | os.PathLike[str], batch_size: int = 256,
                 bfloat16: bool = False) -> pd.DataFrame:
    """The target's forecast from every window of the file: one row per window, in the file's units.

    Windows whose rows are not evenly spaced at the training step (a gap inside them) are left out with a warning.

    Returns:
        Columns `timestamp` (epoch ms of the window's last row; `row`, its 0-based index, when the file has no
        dates) then `h1..h{t}`: the target `k` rows after that row. Windows end at rows l-1 .. n-1.
    """
    models, meta = load_series_models(checkpoint)
    config = models[0].config
    series, scaled, _, scaler = _read(meta, csv, config.seq_len)
    ends = np.arange(config.seq_len - 1, len(scaled))  # (w,)
    spacing = meta.data.spacing()
    keep = _evenly_spaced_ends(series.timestamps, spacing, config.seq_len)
    if series.timestamps is not None and not keep.all():
        assert spacing is not None
        gaps = spacing.describe_gaps(series.timestamps, config.seq_len)
        if not keep.any():
            raise DataFormatError(f"{csv}: {gaps}, so no window is left to forecast from; fill the gaps")
        warnings.warn(f"{csv}: {gaps}, and were left out", stacklevel=2)
        ends = ends[keep]
    windows = torch.from_numpy(scaled).unfold(0, config.seq_len, 1).transpose(1, 2)  # (n-l+1, l, c) view
    windows = windows[torch.from_numpy(ends - (config.seq_len - 1))]  # (w, l, c)
    target = list(meta.feature_names).index(meta.target)
    parts = [_forecast(models, windows[start: start + batch_size], scaler, bfloat16)[:, :, target]  # (b, t)
             for start in range(0, len(windows), batch_size)]
    key = ("timestamp", series.timestamps[ends]) if series.timestamps is not None else ("row", ends)
    values = np.concatenate(parts) if parts else np.empty((0, config.horizon))
    table = pd.DataFrame(values, columns=[f"h{k}" for k in range(1, config.horizon + 1)])
    table.insert(0, key[0], key[1])
    return table


def plot_forecast(forecast: SeriesForecast, path: str | os.PathLike[str]) -> Path:
    """PNG of the target's last `seq_len` rows (the forecast's input) and its forecast for the next rows."""
    from reformer.figures import pyplot, write_png

    plt = pyplot()
    history = forecast.history  # (l,)
    figure, axis = plt.subplots(figsize=(10, 4))
    axis.plot(np.arange(-len(history) + 1, 1), history, color="black", linewidth=1, label="observed")
    axis.plot(forecast.table["step"], forecast.table[forecast.target], color="tab:red", linewidth=1.5,
              label="forecast")
    axis.axvline(0, color="grey", linewidth=0.8)
    axis.set_xlabel("rows from the last observed row")
    axis.set_ylabel(forecast.target)
    axis.set_title(f"{forecast.target}: last {len(history)} rows and the {forecast.horizon}-row forecast")
    axis.legend()
    return write_png(figure, path)

"""Predictions from a kept model: a candle model's forward return of the latest closed candle (or of every window),
or a series forecaster's rows after its CSV's last row.

    predicted = predict_run(PredictOptions(checkpoint=Path("runs/tiny"), csv=Path("klines.csv")))

`predicted.result` is a dict the command prints (or prints as JSON): a candle model's `LatestPrediction.to_dict()` or
{"rows", "out", "first_out_of_sample", "target"} with `all_windows`; a series forecaster's `SeriesForecast.to_dict()` or
{"rows", "out"}; and "plot" when a plot was written. Importing this module does not load torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UserInputError
from .train import closed_candles, default_run_dir, load_candles

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["PredictOptions", "Predicted", "check_outputs", "predict_run", "write_csv"]


def write_csv(table: pd.DataFrame, out: Path) -> dict[str, Any]:
    """Write `table` to `out` atomically (parent folders made, a symbolic link refused); returns {"rows", "out"}
    for the command's report."""
    from ..files import atomic_write

    atomic_write(out, lambda temp: table.to_csv(temp, index=False))
    return {"rows": len(table), "out": str(out)}


def check_outputs(out: Path | None, plot: Path | None, force: bool) -> None:
    """`predict`'s files, before any work: an existing one only with `force`, never a symbolic link, and `out`
    and `plot` not the same file (the plot would replace the table).

    Raises:
        UserInputError: a file that may not be written.
    """
    from ..files import check_image_file, check_output_file

    if out is not None:
        check_output_file(out, force, "--out")
    if plot is not None:
        check_image_file(plot, force, "--plot")
    if out is not None and plot is not None and out.resolve() == plot.resolve():
        raise UserInputError(f"--out and --plot both name {out}: give them different files")


@dataclass(frozen=True)
class PredictOptions:
    """`reformer predict`'s settings, each a flag of the command (see `reformer predict --help`)."""

    symbol: str = "BTCUSDT"
    interval: str = "60"
    category: str = "linear"
    checkpoint: Path | None = None
    db: Path | None = None
    csv: Path | None = None
    all_windows: bool = False
    out: Path | None = None
    plot: Path | None = None
    bf16: bool = False
    force: bool = False


@dataclass(frozen=True)
class Predicted:
    """What `predict_run` did: `series` says whether the checkpoint is a series forecaster; `result` is the
    prediction (or where the predictions were written), with "plot" when a plot was written."""

    series: bool
    result: dict[str, Any]


def predict_run(options: PredictOptions) -> Predicted:
    """Predict with the checkpoint `options` names (default runs/SYMBOL_INTERVAL), a candle model's or a series
    forecaster's; write `out` and `plot` when given. The store is never fetched from.

    Raises:
        UserInputError: `all_windows` without `out`, a missing checkpoint, a file that may not be written, a series
            forecaster without `csv`, the store without the series.
    """
    from ..training.checkpoint import resolve_checkpoint_dir
    from .series_models import is_series_checkpoint

    if options.all_windows and options.out is None:
        raise UserInputError("--all writes a CSV: pass --out preds.csv")
    run = resolve_checkpoint_dir(options.checkpoint or default_run_dir(options.symbol, options.interval,
                                                                       options.csv))  # before any data is read
    series = is_series_checkpoint(run)
    # a candle model writes --out with --all only
    check_outputs(options.out if options.all_windows or series else None, options.plot, options.force)
    return Predicted(series, _predict_series(run, options) if series else _predict_candles(run, options))


def _predict_candles(run: Path, options: PredictOptions) -> dict[str, Any]:
    from ..files import atomic_write
    from ..training.meta import CandleMeta
    from .attention_plot import plot_attention
    from .crypto import predict_all_predictions, predict_latest

    CandleMeta.read(run, options.symbol)  # a symbol a multi-symbol model was not trained on is named first
    frame, source = load_candles(options.csv, options.symbol, options.interval, options.category, options.db,
                                 offline=True, why_offline="predict never fetches")
    if options.csv is None:
        frame = closed_candles(frame, source["interval"])
    result: dict[str, Any] = {}
    if options.all_windows and options.out is not None:
        preds = predict_all_predictions(run, frame, bfloat16=options.bf16, symbol=options.symbol)
        preds.to_csv(options.out)  # with the interval, horizon and first out-of-sample bar on its first line
        first = preds.first_out_of_sample
        result.update(rows=len(preds), out=str(options.out),
                      first_out_of_sample=None if first is None else first.isoformat(), target=preds.target)
    else:
        result.update(predict_latest(run, frame, bfloat16=options.bf16, symbol=options.symbol).to_dict())
    if options.plot is not None:
        result["plot"] = str(atomic_write(options.plot, lambda temp: plot_attention(run, frame, temp, options.symbol)))
    return result


def _predict_series(run: Path, options: PredictOptions) -> dict[str, Any]:
    """Forecast the rows after `csv`'s last row (or the target from every window with `all_windows`)."""
    from ..files import atomic_write
    from .series_models import forecast_all, forecast_latest, plot_forecast

    csv, out, plot = options.csv, options.out, options.plot
    if csv is None:
        raise UserInputError(f"{run} is a series forecaster: pass the series it forecasts from with --csv FILE")
    result: dict[str, Any] = {}
    forecast = None
    if options.all_windows and out is not None:
        result.update(write_csv(forecast_all(run, csv, bfloat16=options.bf16), out))
    else:
        forecast = forecast_latest(run, csv, bfloat16=options.bf16)
        result.update(forecast.to_dict())
        if out is not None:
            result["out"] = write_csv(forecast.table, out)["out"]
    if plot is not None:
        drawn = forecast or forecast_latest(run, csv, bfloat16=options.bf16)
        result["plot"] = str(atomic_write(plot, lambda temp: plot_forecast(drawn, temp)))
    return result

"""The series branch of `reformer train` and `reformer predict`: any CSV time series, not only candles.

    reformer train --csv ETTh1.csv --target OT --protocol ett-hourly --config configs/etth1.toml --out runs/etth1
    reformer predict --checkpoint runs/etth1 --csv ETTh1.csv [--out forecast.csv] [--plot forecast.png]
    reformer predict --checkpoint runs/etth1 --csv ETTh1.csv --all --out every_window.csv

The `[model]` table of a `--config` file holds `ForecastConfig` fields here (patch_len, stride, d_model, ...); the
`[train]` table `TrainConfig` fields; `[data]` seq_len and horizon.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from ..errors import ConfigError, UserInputError
from .common import check_protocol

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["check_outputs", "first_given", "predict_series", "train_series", "write_csv"]

_SERIES_DATA_KEYS = {"seq_len", "horizon"}


def write_csv(table: pd.DataFrame, out: Path) -> dict[str, Any]:
    """Write `table` to `out` atomically (parent folders made, a symbolic link refused); returns {"rows", "out"}
    for the command's report."""
    from ..files import atomic_write

    atomic_write(out, lambda temp: table.to_csv(temp, index=False))
    return {"rows": len(table), "out": str(out)}


def check_outputs(out: Path | None, plot: Path | None, force: bool) -> None:
    """`predict`'s files, before any work: an existing one only with --force, never a symbolic link, and --out
    and --plot not the same file (the plot would replace the table)."""
    from ..files import check_output_file

    if out is not None:
        check_output_file(out, force, "--out")
    if plot is not None:
        check_output_file(plot, force, "--plot")
    if out is not None and plot is not None and out.resolve() == plot.resolve():
        raise UserInputError(f"--out and --plot both name {out}: give them different files")


def first_given(*values: Any) -> int:
    """The first value that is not None (a command-line 0 is a value, and an invalid one: the config names it)."""
    return int(next(v for v in values if v is not None))


def train_series(csv: Path, target: str, features: str, protocol: str, tables: dict[str, dict[str, Any]],
                 seq_len: int | None, horizon: int | None, epochs: int | None, out: Path | None, as_json: bool,
                 resume: bool, ensemble: int = 1, force: bool = False) -> None:
    """Train the patched Reformer forecaster on `csv` (`run_lstf` with a run directory) and print its test
    metrics beside Repeat and the linear baseline."""
    from ..data.timeseries import check_features
    from ..model import ForecastConfig
    from ..training import TrainConfig
    from ..training.loop import resolve_device
    from ..training.lstf import run_lstf

    check_features(features, "--features")
    check_protocol(protocol)
    bad = sorted(set(tables["data"]) - _SERIES_DATA_KEYS)
    if bad:
        raise ConfigError(f"[data] keys {bad} are for candle models; a series model (--target) takes "
                          f"{sorted(_SERIES_DATA_KEYS)}")
    length = first_given(seq_len, tables["data"].get("seq_len"), tables["model"].get("seq_len"), 336)
    steps = first_given(horizon, tables["data"].get("horizon"), tables["model"].get("horizon"), 96)
    model = ForecastConfig.from_dict({**tables["model"], "seq_len": length, "horizon": steps})
    model.reformer_config()  # the encoder's settings are checked before any data is read
    train_config = TrainConfig.from_dict({**tables["train"], **({"epochs": epochs} if epochs is not None else {})})
    resolve_device(train_config)
    run_dir = out or Path("runs") / f"{csv.stem}_{target}"
    if resume and not (run_dir / "last").is_dir():
        raise UserInputError(f"--resume: {run_dir} holds no last/ checkpoint, so there is nothing to resume; train "
                             "without --resume")
    stream = sys.stderr if as_json else sys.stdout
    result = run_lstf(csv, protocol=protocol, seq_len=length, horizon=steps, features=features,  # type: ignore[arg-type]
                      target=target, model=model, train_config=train_config, out_dir=run_dir, resume=resume,
                      ensemble=ensemble, progress=not as_json, log=lambda line: print(line, file=stream, flush=True),
                      force=force)
    if as_json:
        typer.echo(json.dumps({**result.to_json(), "run_dir": str(run_dir)}))
        return
    typer.echo(f"{protocol} {features} seq_len={length} horizon={steps}: {result.model.n_windows} test windows, "
               f"normalised scale, {result.seconds:.0f} s")
    for name, metrics in (("model: " + result.model_name, result.model), ("repeat", result.repeat),
                          ("linear", result.linear)):
        typer.echo(f"  {name:<60} MSE {metrics.mse:.4f}  MAE {metrics.mae:.4f}")
    kept = f"best/ and members/ hold the {ensemble} models" if ensemble > 1 else "best/ holds the model"
    typer.echo(f"run directory {run_dir} ({kept}; forecast with `reformer predict --checkpoint {run_dir} --csv "
               "FILE`)")


def predict_series(run: Path, csv: Path | None, all_windows: bool, out: Path | None, plot: Path | None,
                   as_json: bool, bfloat16: bool = False) -> None:
    """Forecast the rows after `csv`'s last row (or the target from every window with `all_windows`)."""
    from ..training.series import forecast_all, forecast_latest, plot_forecast

    if csv is None:
        raise UserInputError(f"{run} is a series forecaster: pass the series it forecasts from with --csv FILE")
    result: dict[str, Any] = {}
    forecast = None
    if all_windows and out is not None:
        result.update(write_csv(forecast_all(run, csv, bfloat16=bfloat16), out))
    else:
        forecast = forecast_latest(run, csv, bfloat16=bfloat16)
        result.update(forecast.to_dict())
        if out is not None:
            result["out"] = write_csv(forecast.table, out)["out"]
    if plot is not None:
        from ..files import atomic_write

        drawn = forecast or forecast_latest(run, csv, bfloat16=bfloat16)
        result["plot"] = str(atomic_write(plot, lambda temp: plot_forecast(drawn, temp)))
    if as_json:
        typer.echo(json.dumps(result))
        return
    if "forecast" in result:
        from ..data.sync import format_ms

        rows = result["forecast"]
        target = result["target"]
        start = "" if result["last_timestamp"] is None else f" after {format_ms(result['last_timestamp'])}"
        typer.echo(f"{target}: forecast of the next {result['horizon']} rows{start}: first {rows[0][target]:.4f}, "
                   f"last {rows[-1][target]:.4f}, mean {sum(r[target] for r in rows) / len(rows):.4f}")
    if "rows" in result:
        typer.echo(f"wrote {result['rows']} window forecasts to {result['out']}")
    elif "out" in result:
        typer.echo(f"wrote the forecast to {result['out']}")
    if "plot" in result:
        typer.echo(f"forecast plot: {result['plot']}")

"""The series branch of `reformer train` and `reformer predict` (any CSV time series, not only candles): what they
print. The work is `reformer.pipelines.run_forecast` and `reformer.pipelines.predict_run`.

    reformer train --csv ETTh1.csv --target OT --protocol ett-hourly --config configs/etth1.toml --out runs/etth1
    reformer predict --checkpoint runs/etth1 --csv ETTh1.csv [--out forecast.csv] [--plot forecast.png]
    reformer predict --checkpoint runs/etth1 --csv ETTh1.csv --all --out every_window.csv

The `[model]` table of a `--config` file holds `ForecastConfig` fields here (patch_len, stride, d_model, ...); the
`[train]` table `TrainConfig` fields; `[data]` seq_len and horizon.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from ..pipelines import ForecastRun
    from ..pipelines.lstf import LSTFResult

__all__ = ["print_forecast", "print_trained_series"]


def print_trained_series(result: LSTFResult, run: ForecastRun, as_json: bool) -> None:
    """A kept series forecaster's test metrics beside Repeat and the linear baseline, and where it is kept."""
    if as_json:
        typer.echo(json.dumps({**result.to_json(), "run_dir": str(run.out_dir)}))
        return
    typer.echo(f"{run.protocol} {run.features} seq_len={run.model.seq_len} horizon={run.model.horizon}: "
               f"{result.model.n_windows} test windows, normalised scale, {result.seconds:.0f} s")
    for name, metrics in (("model: " + result.model_name, result.model), ("repeat", result.repeat),
                          ("linear", result.linear)):
        typer.echo(f"  {name:<60} MSE {metrics.mse:.4f}  MAE {metrics.mae:.4f}")
    kept = f"best/ and members/ hold the {run.ensemble} models" if run.ensemble > 1 else "best/ holds the model"
    typer.echo(f"run directory {run.out_dir} ({kept}; forecast with `reformer predict --checkpoint {run.out_dir} "
               "--csv FILE`)")


def print_forecast(result: dict[str, Any]) -> None:
    """A series forecaster's forecast (or where its window forecasts were written) and its plot."""
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

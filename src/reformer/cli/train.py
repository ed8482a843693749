"""`reformer train` and `reformer predict`: thin commands over `reformer.pipelines.train_model` and
`reformer.pipelines.predict_run`.

    reformer train --symbol BTCUSDT --interval 60 --config configs/btc_1h.toml --out runs/btc_1h
    reformer train --csv klines.csv --config configs/tiny.toml --out runs/tiny --json
    reformer train --symbols BTCUSDT,ETHUSDT,SOLUSDT --interval 60 --out runs/majors_1h   (one model, many symbols)
    reformer train --csv klines.csv --task realized-vol --horizon 24 --out runs/vol   (the log realised variance)
    reformer predict --symbol BTCUSDT --checkpoint runs/btc_1h
    reformer predict --checkpoint runs/tiny --csv klines.csv --all --out preds.csv --plot attention.png
    reformer train --csv ETTh1.csv --target OT --protocol ett-hourly --config configs/etth1.toml   (any series:
        `reformer.cli.series`)

A `--config` TOML file holds a `[model]` table (`ReformerConfig` fields), a `[train]` table (`TrainConfig`
fields) and optionally a `[data]` table (seq_len, horizon, task, class_threshold, normalization). Command-line
flags override the file (`--task` the table's `task`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ..configfile import load_config_file
from .common import (
    DEFAULT_SYMBOL,
    PROTOCOL_HELP,
    CategoryOpt,
    ConfigOpt,
    DbOpt,
    IntervalOpt,
    JsonOpt,
    SymbolOpt,
    normalise_symbol,
)

if TYPE_CHECKING:
    from ..pipelines import TrainOutcome

__all__ = ["load_config_file", "register"]

_SHOWN = ("mse", "mae", "directional_accuracy", "base_rate", "ic", "mse_skill")
_SHOWN_VOL = ("mse_log", "ic")  # and QLIKE, from the evaluation's `volatility` block
_HELP = {
    "csv": "Train on a kline CSV instead of the store (with --target: any time-series CSV).",
    "target": "Train a series forecaster of this column of --csv (any time series: a date column and numeric "
              "columns) instead of a candle model (a candle model's target is --task).",
    "task": "Candles: what the model forecasts over --horizon bars: regression (the log return ln(C_t+h / C_t)), "
            "classification (down/flat/up) or realized-vol (the log realised variance: ln of the sum of the "
            "squared 1-bar log returns of bars t+1 .. t+h, scored beside HAR-RV, EWMA, GARCH and naive). "
            r"Overrides \[data].task.",
    "features": "With --target: M (all columns in and out), S (the target only), MS (all in, the target out).",
    "resume": "Continue the interrupted run in --out from its last/ checkpoint (same config; --epochs may raise the "
              "limit).",
    "force": "Start over in an --out that holds a run: its checkpoints, metrics and evaluation are replaced (without "
             "--force or --resume such an --out is refused).",
    "walk_forward": "Candles: instead of one 70/10/20 split, N walk-forward folds, a fresh model per fold, scored per "
                    "fold and pooled beside the baselines (walkforward.json, predictions.csv).",
    "fold_test": "With --walk-forward: test windows per fold (default: the last half of the windows, shared by the "
                 "folds).",
    "fold_train": "With --walk-forward: training windows per fold (required with --fold-mode rolling); expanding: "
                  "the least a fold may train on (default: its validation windows).",
    "fold_mode": "With --walk-forward: expanding (all earlier windows) or rolling (the last --fold-train).",
    "symbols": "Train one model on several symbols' stored candles, comma-separated (BTCUSDT,ETHUSDT): one "
               "calendar split for all, a scaler per symbol, scores per symbol and pooled (instead of --symbol).",
    "nproc": "Train one model on N processes of this machine (torchrun, data-parallel: each a slice of every "
             "batch; docs/distributed.md).",
    "ensemble": "N models, seeds seed .. seed+N-1, scored by their mean forecast: with --target a kept series "
                "ensemble (predict uses their mean), with --walk-forward N models a fold.",
    "checkpoint": "Run or checkpoint directory (default runs/SYMBOL_INTERVAL).",
    "p_csv": "Predict from a kline CSV instead of the store (a series checkpoint: its time-series CSV).",
    "p_out": "CSV for --all predictions (timestamp,prediction,...); a series checkpoint also writes its latest "
             "forecast here.",
    "p_plot": "Also write a PNG of the latest window's attention (a series checkpoint: of its forecast).",
    "bf16": "Matrix products in bfloat16 (CPU autocast): faster at long windows, outputs within ~1e-2 relative.",
    "p_force": "Replace an existing --out or --plot file (never through a symbolic link).",
}


@contextmanager
def _resume_hint() -> Iterator[None]:
    """Ctrl-C while training: one line on how to go on (resume, or start over) and exit 130. SystemExit, not
    typer's Exit: `main` answers the 130 typer returns with a bare 'interrupted' line, which this one replaces."""
    from ..training.loop import TrainingInterrupted

    try:
        yield
    except TrainingInterrupted as exc:
        print(exc.hint(), file=sys.stderr)
        raise SystemExit(130) from None


def _log(as_json: bool, quiet: bool) -> Callable[[str], None]:
    """Progress lines: on stdout, or on stderr with --json (stdout carries the JSON object only); none if quiet."""
    stream = sys.stderr if as_json else sys.stdout
    return lambda line: None if quiet else print(line, file=stream, flush=True)


def _evaluation_table(evaluation: dict[str, Any]) -> Table:
    """The evaluation's forecasts side by side; for realized-vol the MSE and IC of ln RV and each variance
    forecast's QLIKE (lower is better) on the rows every forecast has."""
    table = Table(title=f"Test split: {evaluation['task']}, horizon {evaluation['horizon']} bars, "
                        f"{evaluation['model'].get('n', 0):.0f} windows")
    volatility = evaluation.get("volatility")
    shown = _SHOWN if volatility is None else _SHOWN_VOL
    qlike = {} if volatility is None else (volatility.get("forecasts") or {})
    table.add_column("forecast")
    for key in shown:
        table.add_column(key, justify="right")
    if volatility is not None:
        table.add_column("QLIKE", justify="right")
    table.add_column("IC 95% interval", justify="right")
    rows = {"reformer": evaluation["model"], **evaluation["baselines"]}
    for name, metrics in rows.items():
        cells = [metrics.get(k) for k in shown]
        if volatility is not None:
            cells.append((qlike.get("model" if name == "reformer" else name) or {}).get("qlike"))
        interval = metrics.get("ic_ci95") or [None, None]
        table.add_row(name, *("n/a" if v is None else f"{v:.4g}" for v in cells),
                      "n/a" if None in interval else f"[{interval[0]:+.3f}, {interval[1]:+.3f}]")
    versus = evaluation.get("ic_minus_ridge")
    if versus and versus.get("difference") is not None and None not in versus["ci95"]:
        low, high = versus["ci95"]
        table.caption = (f"IC of the Reformer minus ridge's: {versus['difference']:+.3f}, 95% interval "
                         f"[{low:+.3f}, {high:+.3f}] (paired block bootstrap, blocks of {versus['block']} windows)")
    return table


def train(
    ctx: typer.Context,
    symbol: SymbolOpt = DEFAULT_SYMBOL,
    interval: IntervalOpt = "60",
    category: CategoryOpt = "linear",
    epochs: Annotated[int | None, typer.Option(help=r"Maximum epochs (overrides \[train].epochs).")] = None,
    config: ConfigOpt = None,
    out: Annotated[Path | None, typer.Option(help="Run directory (default runs/SYMBOL_INTERVAL).")] = None,
    db: DbOpt = None,
    offline: Annotated[bool, typer.Option(help="Never fetch; fail if the store lacks the series.")] = False,
    csv: Annotated[Path | None, typer.Option(help=_HELP["csv"])] = None,
    target: Annotated[str | None, typer.Option(help=_HELP["target"])] = None,
    features: Annotated[str, typer.Option(help=_HELP["features"])] = "M",
    protocol: Annotated[str, typer.Option(help=f"With --target: the split, {PROTOCOL_HELP}.")] = "ratio",
    task: Annotated[str | None, typer.Option(help=_HELP["task"])] = None,
    seq_len: Annotated[int | None, typer.Option(help="Bars per input window (series default 336).")] = None,
    horizon: Annotated[int | None, typer.Option(help="Target horizon in bars (series default 96).")] = None,
    as_json: JsonOpt = False,
    resume: Annotated[bool, typer.Option("--resume", help=_HELP["resume"])] = False,
    force: Annotated[bool, typer.Option("--force", help=_HELP["force"])] = False,
    walk_forward: Annotated[int, typer.Option(help=_HELP["walk_forward"])] = 0,
    fold_test: Annotated[int, typer.Option(help=_HELP["fold_test"])] = 0,
    fold_train: Annotated[int, typer.Option(help=_HELP["fold_train"])] = 0,
    fold_mode: Annotated[str, typer.Option(help=_HELP["fold_mode"])] = "expanding",
    ensemble: Annotated[int, typer.Option(help=_HELP["ensemble"])] = 1,
    nproc: Annotated[int, typer.Option(help=_HELP["nproc"])] = 1,
    symbols: Annotated[str | None, typer.Option(help=_HELP["symbols"])] = None,
) -> None:
    """Train a Reformer on candles (70/10/20 chronological split, or --walk-forward folds) to forecast the log
    return, its direction (--task classification) or the log realised variance (--task realized-vol), or with
    --target on any time-series CSV, and report test metrics beside baselines."""
    from ..pipelines import TrainOptions, train_model
    from ..training.ddp import process_group

    options = TrainOptions(symbol=symbol, interval=interval, category=category, epochs=epochs, config=config, out=out,
                           db=db, offline=offline, csv=csv, target=target, task=task, features=features,
                           protocol=protocol,
                           seq_len=seq_len, horizon=horizon, resume=resume, force=force, walk_forward=walk_forward,
                           fold_test=fold_test, fold_train=fold_train, fold_mode=fold_mode, ensemble=ensemble,
                           symbols=_symbol_list(symbols))
    if nproc != 1:
        from ..pipelines.train import launch_local
        from .launch import command_args

        raise typer.Exit(launch_local(options, nproc, command_args(ctx, drop=("nproc",))))
    with _resume_hint(), process_group() as group:
        outcome = train_model(options, progress=not as_json, log=_log(as_json, quiet=as_json and walk_forward > 0))
    if not group.main:  # under torchrun rank 0 reports
        return
    if outcome.kind == "series":
        _print_series(outcome, as_json)
    elif outcome.kind == "walk_forward":
        _print_walk_forward(outcome, as_json)
    elif outcome.kind == "symbols":
        _print_symbols(outcome, as_json)
    elif as_json:
        assert outcome.candles is not None
        typer.echo(json.dumps({**outcome.candles.evaluation, "run_dir": str(outcome.run_dir)}))
    else:
        _print_candles(outcome)


def _print_candles(outcome: TrainOutcome) -> None:
    report = outcome.candles
    assert report is not None
    console = Console(width=120)  # the evaluation table needs it; rich would cut a log file to 80 columns
    console.print(_evaluation_table(report.evaluation))
    console.print(f"best epoch {report.fit.best_epoch} (val loss {report.fit.best_val_loss:.4g}); run directory "
                  f"{report.run_dir}")


def _symbol_list(symbols: str | None) -> tuple[str, ...]:
    """`--symbols a, b` -> ("A", "B"); () when not given."""
    return () if symbols is None else tuple(normalise_symbol(name) for name in symbols.split(","))


def _print_symbols(outcome: TrainOutcome, as_json: bool) -> None:
    """`train --symbols`: the pooled test scores beside the baselines, then one line of ICs per symbol."""
    report = outcome.symbols
    assert report is not None
    evaluation = report.evaluation
    if as_json:
        typer.echo(json.dumps({**evaluation, "run_dir": str(report.run_dir)}))
        return
    console = Console(width=120)  # the evaluation table needs it; rich would cut a log file to 80 columns
    pooled = {"task": evaluation["task"], "horizon": evaluation["horizon"], **evaluation["pooled"]}
    table = _evaluation_table(pooled)
    table.title = f"Pooled over {', '.join(evaluation['symbols'])}: {table.title}"
    console.print(table)
    for symbol, scores in evaluation["per_symbol"].items():
        ics = {"reformer": scores["model"].get("ic"), **{k: v.get("ic") for k, v in scores["baselines"].items()}}
        console.print(f"{symbol}: {scores['model'].get('n', 0):.0f} test windows, IC " + ", ".join(
            f"{name} {'n/a' if ic is None else f'{ic:+.3f}'}" for name, ic in ics.items()))
    console.print(f"best epoch {report.fit.best_epoch} (val loss {report.fit.best_val_loss:.4g}); run directory "
                  f"{report.run_dir} (evaluation.json: per symbol and pooled)")


def _print_series(outcome: TrainOutcome, as_json: bool) -> None:
    from .series import print_trained_series

    assert outcome.series is not None and outcome.forecast is not None
    print_trained_series(outcome.series, outcome.forecast, as_json)


def _print_walk_forward(outcome: TrainOutcome, as_json: bool) -> None:
    """`train --walk-forward N`: the folds' scores and the pooled out-of-sample evaluation."""
    import pandas as pd

    report, run_dir, ensemble = outcome.walk_forward, outcome.run_dir, outcome.ensemble
    assert report is not None
    if as_json:
        typer.echo(json.dumps({**report, "run_dir": str(run_dir)}))
        return
    pooled = report["pooled"]
    table = _evaluation_table(pooled)
    first, last = (pd.to_datetime(pooled[k], unit="ms", utc=True) for k in ("first_timestamp", "last_timestamp"))
    members = f", mean of {ensemble} seeds a fold" if ensemble > 1 else ""
    table.title = (f"Walk-forward, {len(report['folds'])} folds pooled{members}: {pooled['task']}, horizon "
                   f"{pooled['horizon']} bars, {pooled['windows']} windows, {first:%Y-%m-%d} .. {last:%Y-%m-%d}")
    console = Console(width=120)  # the evaluation table needs it; rich would cut a log file to 80 columns
    console.print(table)
    summary = report["summary"]
    console.print(f"IC per fold: model {summary['mean_fold_ic_model']:+.3f} on average, ridge "
                  f"{summary['mean_fold_ic_ridge']:+.3f}; the model above ridge in {summary['folds_model_above_ridge']}"
                  f" of {len(report['folds'])} folds; run directory {run_dir} (walkforward.json, predictions.csv)")
    if pooled["task"] != "realized-vol":  # a variance forecast is no trading signal
        console.print(f"backtest the out-of-sample predictions: reformer backtest --csv CANDLES --predictions "
                      f"{run_dir / 'predictions.csv'} --start {first:%Y-%m-%dT%H:%MZ}")


def predict(
    symbol: SymbolOpt = DEFAULT_SYMBOL,
    interval: IntervalOpt = "60",
    category: CategoryOpt = "linear",
    checkpoint: Annotated[Path | None, typer.Option(help=_HELP["checkpoint"])] = None,
    db: DbOpt = None,
    csv: Annotated[Path | None, typer.Option(help=_HELP["p_csv"])] = None,
    all_windows: Annotated[bool, typer.Option("--all", help="Predict every window (needs --out).")] = False,
    out: Annotated[Path | None, typer.Option(help=_HELP["p_out"])] = None,
    plot: Annotated[Path | None, typer.Option(help=_HELP["p_plot"])] = None,
    as_json: JsonOpt = False,
    bf16: Annotated[bool, typer.Option("--bf16", help=_HELP["bf16"])] = False,
    force: Annotated[bool, typer.Option("--force", help=_HELP["p_force"])] = False,
) -> None:
    """Predict the forward return of the latest closed candle (or of every window with --all); a series
    checkpoint forecasts the rows after its --csv file's last row."""
    from ..pipelines import PredictOptions, predict_run

    predicted = predict_run(PredictOptions(symbol=symbol, interval=interval, category=category, checkpoint=checkpoint,
                                           db=db, csv=csv, all_windows=all_windows, out=out, plot=plot, bf16=bf16,
                                           force=force))
    if as_json:
        typer.echo(json.dumps(predicted.result))
    elif predicted.series:
        from .series import print_forecast

        print_forecast(predicted.result)
    else:
        _print_prediction(predicted.result)


def _print_prediction(result: dict[str, Any]) -> None:
    """A candle model's prediction (or where --all wrote them) and the attention plot."""
    if result.get("task") == "realized-vol":
        from ..data.sync import format_ms

        variance = result["variance"]
        typer.echo(f"{format_ms(result['timestamp'])}  predicted {result['horizon']}-bar log realised variance "
                   f"{result['prediction']:+.4f}  variance {variance:.4g}  volatility {variance ** 0.5:.4%}")
    elif "predicted_return" in result:
        from ..data.sync import format_ms

        what = ("p_up - p_down" if result.get("task") == "classification" else "log return")
        typer.echo(f"{format_ms(result['timestamp'])}  predicted {result['horizon']}-bar {what} "
                   f"{result['predicted_return']:+.5f}  direction {result['direction']}  "
                   f"confidence {result['confidence']:.3f}")
    elif result.get("target") == "log-variance":
        typer.echo(f"wrote {result['rows']} forecasts of the log realised variance (prediction) and the variance to "
                   f"{result['out']}; the model's out-of-sample period starts {result['first_out_of_sample']}")
    else:
        typer.echo(f"wrote {result['rows']} predictions to {result['out']}; the model's out-of-sample period starts "
                   f"{result['first_out_of_sample']} (`reformer backtest --predictions` trades from there)")
    if "plot" in result:
        typer.echo(f"attention plot: {result['plot']}")


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("predict")(predict)

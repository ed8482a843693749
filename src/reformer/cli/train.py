"""`reformer train` and `reformer predict`: thin commands over `reformer.training.crypto`.

    reformer train --symbol BTCUSDT --interval 60 --config configs/btc_1h.toml --out runs/btc_1h
    reformer train --csv klines.csv --config configs/tiny.toml --out runs/tiny --json
    reformer predict --symbol BTCUSDT --checkpoint runs/btc_1h
    reformer predict --checkpoint runs/tiny --csv klines.csv --all --out preds.csv --plot attention.png
    reformer train --csv ETTh1.csv --target OT --protocol ett-hourly --config configs/etth1.toml   (any series:
        `reformer.cli.series`)

A `--config` TOML file holds a `[model]` table (`ReformerConfig` fields), a `[train]` table (`TrainConfig`
fields) and optionally a `[data]` table (seq_len, horizon, task, class_threshold, normalization). Command-line
flags override the file.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ..configfile import load_config_file
from ..errors import ExchangeUnavailableError, UserInputError
from .common import DEFAULT_SYMBOL, PROTOCOL_HELP, DbOpt, SymbolOpt, exchange_url

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["load_config_file", "register"]

_SHOWN = ("mse", "mae", "directional_accuracy", "base_rate", "ic", "mse_skill")


def _store_frame(symbol: str, interval: str, category: str, db: Path | None, offline: bool,
                 why_offline: str = "--offline was given") -> pd.DataFrame:
    from ..data import KlineStore
    from ..data.stored import require_series

    with KlineStore(db) as store:
        if offline:
            return require_series(store, category, symbol, interval, why_offline, "or pass --csv")
        frame = store.load_frame(category, symbol, interval)
    if not frame.empty:
        return frame
    from ..data.sync import sync_klines_blocking

    try:
        sync_klines_blocking(symbol, interval, store=db, category=category)
    except ExchangeUnavailableError as exc:
        raise _no_exchange(exc, symbol, interval, category) from None
    with KlineStore(db) as store:
        return store.load_frame(category, symbol, interval)


def _no_exchange(exc: ExchangeUnavailableError, symbol: str, interval: str,
                 category: str) -> ExchangeUnavailableError:
    """The client's error in `train`'s terms: `train` has no retry option, but two ways not to need the exchange."""
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    return ExchangeUnavailableError(
        f"the store holds no {category} {symbol} {interval} candles and the exchange at {exchange_url(None)} could "
        f"not be reached to fetch them (last: {cause}); train on stored candles with --offline (fill the store "
        f"with `reformer fetch --symbol {symbol} --interval {interval} --category {category}` when the exchange "
        "answers), or on a file with --csv FILE", code=exc.code, http_status=exc.http_status)


def _load_frame(csv: Path | None, symbol: str, interval: str, category: str, db: Path | None,
                offline: bool, why_offline: str = "--offline was given") -> tuple[pd.DataFrame, dict[str, Any]]:
    from ..api import parse_interval
    from ..api.client import KLINE_CATEGORIES
    from ..data import read_klines_frame

    if category not in KLINE_CATEGORIES:  # checked with --csv too, where it is not used: a typo is named
        raise UserInputError(f"invalid category {category!r}: use one of {', '.join(KLINE_CATEGORIES)}")
    if csv is not None:
        return read_klines_frame(csv), {"csv": str(csv)}
    code = parse_interval(interval)
    source = {"symbol": symbol, "interval": code, "category": category}
    return _store_frame(symbol, code, category, db, offline, why_offline), source


def _default_run(symbol: str, interval: str, csv: Path | None) -> Path:
    """runs/SYMBOL_INTERVAL: the interval as Bybit codes it for the store, as given for a CSV."""
    from ..api import parse_interval

    return Path("runs") / f"{symbol}_{interval if csv is not None else parse_interval(interval)}"


def _closed(frame: pd.DataFrame, interval: str) -> pd.DataFrame:
    """Drop a trailing candle that has not closed yet (the store may hold the live one)."""
    from ..api import interval_ms

    now_ms = int(time.time() * 1000)
    closed = frame["timestamp"].to_numpy() + interval_ms(interval) <= now_ms
    return frame[closed].reset_index(drop=True)


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


def _evaluation_table(evaluation: dict[str, Any]) -> Table:
    table = Table(title=f"Test split: {evaluation['task']}, horizon {evaluation['horizon']} bars, "
                        f"{evaluation['model'].get('n', 0):.0f} windows")
    table.add_column("forecast")
    for key in _SHOWN:
        table.add_column(key, justify="right")
    table.add_column("IC 95% interval", justify="right")
    rows = {"reformer": evaluation["model"], **evaluation["baselines"]}
    for name, metrics in rows.items():
        cells = [metrics.get(k) for k in _SHOWN]
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
    symbol: SymbolOpt = DEFAULT_SYMBOL,
    interval: Annotated[str, typer.Option(help="Bybit interval (60, 240, D) or 1h/4h/1d.")] = "60",
    category: Annotated[str, typer.Option(help="Bybit category of the stored series.")] = "linear",
    epochs: Annotated[int | None, typer.Option(help=r"Maximum epochs (overrides \[train].epochs).")] = None,
    config: Annotated[Path | None, typer.Option(help=r"TOML with \[model], \[train], \[data] tables.")] = None,
    out: Annotated[Path | None, typer.Option(help="Run directory (default runs/SYMBOL_INTERVAL).")] = None,
    db: DbOpt = None,
    offline: Annotated[bool, typer.Option(help="Never fetch; fail if the store lacks the series.")] = False,
    csv: Annotated[Path | None, typer.Option(help="Train on a kline CSV instead of the store (with --target: any "
                                                  "time-series CSV).")] = None,
    target: Annotated[str | None, typer.Option(help="Train a series forecaster of this column of --csv (any time "
                                                    "series: a date column and numeric columns) instead of a "
                                                    "candle model.")] = None,
    features: Annotated[str, typer.Option(help="With --target: M (all columns in and out), S (the target only), "
                                               "MS (all in, the target out).")] = "M",
    protocol: Annotated[str, typer.Option(help=f"With --target: the split, {PROTOCOL_HELP}.")] = "ratio",
    seq_len: Annotated[int | None, typer.Option(help="Bars per input window (series default 336).")] = None,
    horizon: Annotated[int | None, typer.Option(help="Target horizon in bars (series default 96).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the evaluation as one JSON object.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the interrupted run in --out from its last/ "
                                                          "checkpoint (same config; --epochs may raise the "
                                                          "limit).")] = False,
    force: Annotated[bool, typer.Option("--force", help="Start over in an --out that holds a run: its checkpoints, "
                                                        "metrics and evaluation are replaced (without --force or "
                                                        "--resume such an --out is refused).")] = False,
    walk_forward: Annotated[int, typer.Option(help="Candles: instead of one 70/10/20 split, N walk-forward folds, "
                                                   "a fresh model per fold, scored per fold and pooled beside the "
                                                   "baselines (walkforward.json, predictions.csv).")] = 0,
    fold_test: Annotated[int, typer.Option(help="With --walk-forward: test windows per fold (default: the last "
                                                "half of the windows, shared by the folds).")] = 0,
    fold_train: Annotated[int, typer.Option(help="With --walk-forward: training windows per fold (required with "
                                                 "--fold-mode rolling); expanding: the least a fold may train on "
                                                 "(default: its validation windows).")] = 0,
    fold_mode: Annotated[str, typer.Option(help="With --walk-forward: expanding (all earlier windows) or "
                                                "rolling (the last --fold-train).")] = "expanding",
    ensemble: Annotated[int, typer.Option(help="N models, seeds seed .. seed+N-1, scored by their mean forecast: "
                                               "with --target a kept series ensemble (predict uses their mean), "
                                               "with --walk-forward N models a fold.")] = 1,
) -> None:
    """Train a Reformer on candles (70/10/20 chronological split, or --walk-forward folds), or with --target on
    any time-series CSV, and report test metrics beside baselines."""
    from ..training import TrainConfig
    from ..training.checkpoint import check_run_dir
    from ..training.crypto import train_crypto
    from ..training.loop import resolve_device

    tables = load_config_file(config)
    if walk_forward < 0 or fold_test < 0 or fold_train < 0:
        raise UserInputError("--walk-forward, --fold-test and --fold-train count folds and windows: use positive "
                             "whole numbers (0 = not set)")
    if walk_forward and (target is not None or resume):
        raise UserInputError(f"--walk-forward evaluates a candle model afresh: drop "
                             f"{'--target' if target is not None else '--resume'}")
    if (fold_test or fold_train or fold_mode != "expanding") and not walk_forward:
        raise UserInputError("--fold-test, --fold-train and --fold-mode shape a walk-forward evaluation: add "
                             "--walk-forward N")
    if ensemble != 1 and not (walk_forward or target is not None):
        raise UserInputError("--ensemble N trains N seeds of a series forecaster (with --target) or of every "
                             "walk-forward fold (with --walk-forward N): add one of them")
    if ensemble < 1:
        raise UserInputError(f"--ensemble {ensemble} is invalid: train 1 or more models")
    if fold_mode not in ("expanding", "rolling"):
        raise UserInputError(f"--fold-mode {fold_mode!r} is invalid: use expanding or rolling")
    if fold_mode == "rolling" and not fold_train:
        raise UserInputError("--fold-mode rolling trains each fold on a fixed number of windows: add --fold-train W "
                             "(e.g. 17520, two years of hourly bars)")
    if fold_train == 1:
        raise UserInputError("--fold-train 1 is too few: a fold trains on 2 or more windows")
    if target is not None:
        if csv is None:
            raise UserInputError("--target trains on a time-series file: pass it with --csv FILE")
        from .series import train_series

        with _resume_hint():
            train_series(csv, target, features, protocol, tables, seq_len, horizon, epochs, out, as_json, resume,
                         ensemble, force)
        return
    data = tables["data"]
    model_table = tables["model"]
    from .series import first_given

    length = first_given(seq_len, data.get("seq_len"), model_table.get("seq_len"), 168)
    model_table.pop("seq_len", None)
    train_table = {**tables["train"], **({"epochs": epochs} if epochs is not None else {})}
    train_config = TrainConfig.from_dict(train_table)
    resolve_device(train_config)  # a CUDA device asked for on a machine without one fails before any fetch
    folds = None
    if walk_forward:
        from ..training.crypto_folds import FoldSettings

        folds = FoldSettings(n_folds=walk_forward, test_windows=fold_test or None, train_windows=fold_train or None,
                             mode=fold_mode)  # type: ignore[arg-type]  # checked by FoldSettings
    run_dir = out or _default_run(symbol, interval, csv)
    check_run_dir(run_dir, resume=resume, force=force, resumable=folds is None)  # before any candle is fetched
    frame, source = _load_frame(csv, symbol, interval, category, db, offline)
    if folds is not None:
        with _resume_hint():
            _walk_forward(frame, folds, length, first_given(horizon, data.get("horizon"), 24), model_table,
                          train_config, data, source, run_dir, as_json, ensemble, force)
        return
    with _resume_hint():
        report = train_crypto(frame, seq_len=length, horizon=first_given(horizon, data.get("horizon"), 24),
                              model_overrides=model_table, train_config=train_config, out_dir=run_dir,
                              task=data.get("task", "regression"),
                              class_threshold=float(data.get("class_threshold", 0.0)),
                              normalization=data.get("normalization", "train"), source=source, progress=not as_json,
                              resume=resume, force=force)
    if as_json:
        typer.echo(json.dumps({**report.evaluation, "run_dir": str(report.run_dir)}))
        return
    console = Console(width=120)  # the evaluation table needs it; rich would cut a log file to 80 columns
    console.print(_evaluation_table(report.evaluation))
    console.print(f"best epoch {report.fit.best_epoch} (val loss {report.fit.best_val_loss:.4g}); run directory "
                  f"{report.run_dir}")


def _walk_forward(frame: pd.DataFrame, folds: Any, seq_len: int, horizon: int, model_table: dict[str, Any],
                  train_config: Any, data: dict[str, Any], source: dict[str, Any], run_dir: Path,
                  as_json: bool, ensemble: int, force: bool) -> None:
    """`train --walk-forward N`: the folds' models, their scores and the pooled out-of-sample evaluation."""
    from ..training.crypto_folds import evaluate_walk_forward

    def log(line: str) -> None:
        if not as_json:
            typer.echo(line)

    report = evaluate_walk_forward(frame, seq_len=seq_len, horizon=horizon, folds=folds, model_overrides=model_table,
                                   train_config=train_config, task=data.get("task", "regression"),
                                   class_threshold=float(data.get("class_threshold", 0.0)),
                                   normalization=data.get("normalization", "train"), source=source, out_dir=run_dir,
                                   ensemble=ensemble, log=log, force=force)
    if as_json:
        typer.echo(json.dumps({**report, "run_dir": str(run_dir)}))
        return
    pooled = report["pooled"]
    table = _evaluation_table(pooled)
    import pandas as pd

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
    first_bar = f"{pd.to_datetime(pooled['first_timestamp'], unit='ms', utc=True):%Y-%m-%dT%H:%MZ}"
    console.print(f"backtest the out-of-sample predictions: reformer backtest --csv CANDLES --predictions "
                  f"{run_dir / 'predictions.csv'} --start {first_bar}")


def predict(
    symbol: SymbolOpt = DEFAULT_SYMBOL,
    interval: Annotated[str, typer.Option(help="Bybit interval of the stored series.")] = "60",
    category: Annotated[str, typer.Option(help="Bybit category of the stored series.")] = "linear",
    checkpoint: Annotated[Path | None, typer.Option(help="Run or checkpoint directory "
                                                         "(default runs/SYMBOL_INTERVAL).")] = None,
    db: DbOpt = None,
    csv: Annotated[Path | None, typer.Option(help="Predict from a kline CSV instead of the store (a series "
                                                  "checkpoint: its time-series CSV).")] = None,
    all_windows: Annotated[bool, typer.Option("--all", help="Predict every window (needs --out).")] = False,
    out: Annotated[Path | None, typer.Option(help="CSV for --all predictions (timestamp,prediction,...); a series "
                                                  "checkpoint also writes its latest forecast here.")] = None,
    plot: Annotated[Path | None, typer.Option(help="Also write a PNG of the latest window's attention (a series "
                                                   "checkpoint: of its forecast).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as one JSON object.")] = False,
    bf16: Annotated[bool, typer.Option("--bf16", help="Matrix products in bfloat16 (CPU autocast): faster at "
                                                      "long windows, outputs within ~1e-2 relative.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --out or --plot file (never through a "
                                                        "symbolic link).")] = False,
) -> None:
    """Predict the forward return of the latest closed candle (or of every window with --all); a series
    checkpoint forecasts the rows after its --csv file's last row."""
    from ..files import atomic_write
    from ..training.checkpoint import resolve_checkpoint_dir
    from ..training.crypto import plot_attention, predict_all_predictions, predict_latest
    from .series import check_outputs

    if all_windows and out is None:
        raise UserInputError("--all writes a CSV: pass --out preds.csv")
    run = resolve_checkpoint_dir(checkpoint or _default_run(symbol, interval, csv))  # before any data is read
    from ..training.series import is_series_checkpoint

    series = is_series_checkpoint(run)
    check_outputs(out if all_windows or series else None, plot, force)  # a candle model writes --out with --all
    if series:
        from .series import predict_series

        predict_series(run, csv, all_windows, out, plot, as_json, bfloat16=bf16)
        return
    frame, source = _load_frame(csv, symbol, interval, category, db, offline=True,
                                why_offline="predict never fetches")
    if csv is None:
        frame = _closed(frame, source["interval"])
    result: dict[str, Any] = {}
    if all_windows and out is not None:
        preds = predict_all_predictions(run, frame, bfloat16=bf16)
        preds.to_csv(out)  # with the interval, horizon and first out-of-sample bar on its first line
        first = preds.first_out_of_sample
        result.update(rows=len(preds), out=str(out), first_out_of_sample=None if first is None else first.isoformat())
    else:
        result.update(predict_latest(run, frame, bfloat16=bf16).to_dict())
    if plot is not None:
        result["plot"] = str(atomic_write(plot, lambda temp: plot_attention(run, frame, temp)))
    if as_json:
        typer.echo(json.dumps(result))
    elif "predicted_return" in result:
        from ..data.sync import format_ms

        what = ("p_up - p_down" if result.get("task") == "classification" else "log return")
        typer.echo(f"{format_ms(result['timestamp'])}  predicted {result['horizon']}-bar {what} "
                   f"{result['predicted_return']:+.5f}  direction {result['direction']}  "
                   f"confidence {result['confidence']:.3f}")
    else:
        typer.echo(f"wrote {result['rows']} predictions to {result['out']}; the model's out-of-sample period starts "
                   f"{result['first_out_of_sample']} (`reformer backtest --predictions` trades from there)")
    if "plot" in result and not as_json:
        typer.echo(f"attention plot: {result['plot']}")


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("predict")(predict)

"""Training from the command line's point of view: where the candles come from, which of the three paths runs
(one 70/10/20 split of candles, walk-forward folds of candles, or a series forecaster of any CSV) and with which
settings (a `--config` TOML's `[model]`, `[train]`, `[data]` tables, overridden by flags).

    outcome = train_model(TrainOptions(csv=Path("klines.csv"), config=Path("configs/tiny.toml"), out=Path("runs/t")))
    print(outcome.candles.evaluation)  # outcome.kind: "candles", "walk_forward" or "series"

`load_candles` is the candle source of `train` and `predict`: a kline CSV, or the store (fetched from the exchange
when the store lacks the series, unless offline). Importing this module does not load torch.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..configfile import load_config_file
from ..errors import ConfigError, ExchangeUnavailableError, UserInputError
from .series import ForecastRun, first_given, forecast_run_from_tables, run_forecast

if TYPE_CHECKING:
    import pandas as pd

    from .crypto import TrainReport
    from .lstf import LSTFResult
    from .multi_symbol import MultiSymbolReport

__all__ = ["TrainOptions", "TrainOutcome", "closed_candles", "default_run_dir", "launch_local", "load_candles",
           "train_model"]


def _no_exchange(exc: ExchangeUnavailableError, symbol: str, interval: str,
                 category: str) -> ExchangeUnavailableError:
    """The client's error in `train`'s terms: `train` has no retry option, but two ways not to need the exchange."""
    from ..api.client import rest_root

    cause = exc.__cause__ if exc.__cause__ is not None else exc
    return ExchangeUnavailableError(
        f"the store holds no {category} {symbol} {interval} candles and the exchange at {rest_root()} could "
        f"not be reached to fetch them (last: {cause}); train on stored candles with --offline (fill the store "
        f"with `reformer fetch --symbol {symbol} --interval {interval} --category {category}` when the exchange "
        "answers), or on a file with --csv FILE", code=exc.code, http_status=exc.http_status)


def _store_frame(symbol: str, interval: str, category: str, db: Path | None, offline: bool,
                 why_offline: str) -> pd.DataFrame:
    from ..data import KlineStore
    from ..data.stored import read_series

    if offline:
        return read_series(db, category, symbol, interval, why_offline, "or pass --csv")
    with KlineStore(db) as store:
        frame = store.load_frame(category, symbol, interval)
    if not frame.empty:
        return frame
    from ..data.sync import sync_klines_blocking

    try:
        report = sync_klines_blocking(symbol, interval, store=db, category=category)
    except ExchangeUnavailableError as exc:
        raise _no_exchange(exc, symbol, interval, category) from None
    # said, since a model trained on the latest thousand candles is seldom what was meant
    warnings.warn(f"the store held no {category} {symbol} {interval} candles: fetched the latest "
                  f"{report.rows_added} from the exchange (`reformer fetch --symbol {symbol} --interval {interval} "
                  f"--category {category} --limit N` stores more history first)", stacklevel=2)
    with KlineStore(db) as store:
        return store.load_frame(category, symbol, interval)


def load_candles(csv: Path | None, symbol: str, interval: str, category: str, db: Path | None, offline: bool,
                 why_offline: str = "--offline was given") -> tuple[pd.DataFrame, dict[str, Any]]:
    """Candles from a kline CSV, or from the store (fetched when it lacks them, unless `offline`), and where they
    came from ({"csv": ...} or {"symbol", "interval" (Bybit's code), "category"}).

    Raises:
        UserInputError: an unknown category (named with --csv too: a typo), a bad interval, an offline store
            without the series (`why_offline` says why it may not fetch).
        ExchangeUnavailableError: the store lacks the series and the exchange cannot be reached.
    """
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


def default_run_dir(symbol: str, interval: str, csv: Path | None) -> Path:
    """runs/SYMBOL_INTERVAL: the interval as Bybit codes it for the store, as given for a CSV."""
    from ..api import parse_interval

    return Path("runs") / f"{symbol}_{interval if csv is not None else parse_interval(interval)}"


def closed_candles(frame: pd.DataFrame, interval: str) -> pd.DataFrame:
    """Drop a trailing candle that has not closed yet (the store may hold the live one)."""
    from ..api import interval_ms

    now_ms = int(time.time() * 1000)
    closed = frame["timestamp"].to_numpy() + interval_ms(interval) <= now_ms
    return frame[closed].reset_index(drop=True)


@dataclass(frozen=True)
class TrainOptions:
    """`reformer train`'s settings, each a flag of the command (see `reformer train --help`); 0 for
    `walk_forward`, `fold_test` and `fold_train` is "not set"."""

    symbol: str = "BTCUSDT"
    interval: str = "60"
    category: str = "linear"
    epochs: int | None = None
    config: Path | None = None
    out: Path | None = None
    db: Path | None = None
    offline: bool = False
    csv: Path | None = None
    target: str | None = None
    task: str | None = None
    """A candle model's target: "regression", "classification" or "realized-vol" (None: the config's `[data]
    task`, else regression)."""
    features: str = "M"
    protocol: str = "ratio"
    seq_len: int | None = None
    horizon: int | None = None
    resume: bool = False
    force: bool = False
    walk_forward: int = 0
    fold_test: int = 0
    fold_train: int = 0
    fold_mode: str = "expanding"
    ensemble: int = 1
    symbols: tuple[str, ...] = ()
    """Train one model on these symbols' stored candles (`train_symbols`) instead of on `symbol`'s."""

    def check(self) -> None:
        """The options against each other (before any file is read).

        Raises:
            UserInputError: one line naming the clash and the fix.
        """
        if self.walk_forward < 0 or self.fold_test < 0 or self.fold_train < 0:
            raise UserInputError("--walk-forward, --fold-test and --fold-train count folds and windows: use "
                                 "positive whole numbers (0 = not set)")
        if self.walk_forward and (self.target is not None or self.resume):
            raise UserInputError(f"--walk-forward evaluates a candle model afresh: drop "
                                 f"{'--target' if self.target is not None else '--resume'}")
        if (self.fold_test or self.fold_train or self.fold_mode != "expanding") and not self.walk_forward:
            raise UserInputError("--fold-test, --fold-train and --fold-mode shape a walk-forward evaluation: add "
                                 "--walk-forward N")
        if self.ensemble != 1 and not (self.walk_forward or self.target is not None):
            raise UserInputError("--ensemble N trains N seeds of a series forecaster (with --target) or of every "
                                 "walk-forward fold (with --walk-forward N): add one of them")
        if self.ensemble < 1:
            raise UserInputError(f"--ensemble {self.ensemble} is invalid: train 1 or more models")
        if self.fold_mode not in ("expanding", "rolling"):
            raise UserInputError(f"--fold-mode {self.fold_mode!r} is invalid: use expanding or rolling")
        if self.fold_mode == "rolling" and not self.fold_train:
            raise UserInputError("--fold-mode rolling trains each fold on a fixed number of windows: add --fold-train"
                                 " W (e.g. 17520, two years of hourly bars)")
        if self.fold_train == 1:
            raise UserInputError("--fold-train 1 is too few: a fold trains on 2 or more windows")
        self._check_task()
        if self.target is not None and self.csv is None:
            raise UserInputError("--target trains on a time-series file: pass it with --csv FILE")
        clash = next((flag for flag, given in (("--csv", self.csv is not None), ("--walk-forward", self.walk_forward))
                      if given), None)
        if self.symbols and clash:
            raise UserInputError(f"--symbols trains one model on several symbols' stored candles; {clash} is not "
                                 "supported with it: drop one of them")
        if len(set(self.symbols)) != len(self.symbols) or len(self.symbols) == 1:
            raise UserInputError(f"--symbols {','.join(self.symbols)}: name two or more different symbols (one: "
                                 "--symbol)")

    def _check_task(self) -> None:
        """`task` names a candle task, and `target` (a series column) is not one: --task and --target are two
        different models' targets."""
        from ..data.windows import TASKS

        if self.target in TASKS:
            raise UserInputError(f"--target names a column of a --csv time series; a candle model forecasting "
                                 f"{self.target} is --task {self.target}: use --task {self.target}")
        if self.task is None:
            return
        if self.task not in TASKS:
            raise UserInputError(f"--task {self.task!r} is invalid: use one of {', '.join(TASKS)}")
        if self.target is not None:
            raise UserInputError("--task sets a candle model's target and --target trains a series forecaster of a "
                                 "column: drop one of them")
        if self.symbols and self.task == "realized-vol":
            raise UserInputError("--symbols trains a return model of several symbols; --task realized-vol trains "
                                 "one symbol at a time: drop --symbols, or train each symbol with --symbol")


@dataclass(frozen=True)
class TrainOutcome:
    """What `train_model` did. `kind` says which path ran and which of `candles` (a `TrainReport`),
    `walk_forward` (`evaluate_walk_forward`'s report) or `series` (an `LSTFResult`, with the `forecast` run that
    made it) is set."""

    kind: Literal["candles", "walk_forward", "series", "symbols"]
    run_dir: Path
    ensemble: int = 1
    candles: TrainReport | None = None
    walk_forward: dict[str, Any] | None = None
    series: LSTFResult | None = None
    forecast: ForecastRun | None = None
    symbols: MultiSymbolReport | None = None


def train_model(options: TrainOptions, *, progress: bool = True,
                log: Callable[[str], None] | None = None) -> TrainOutcome:
    """Train what `options` asks for: a series forecaster with `target` (`run_forecast`, the model kept), else a
    candle model on one chronological split (`train_crypto`) or on `walk_forward` folds (`evaluate_walk_forward`).
    Everything that can be refused is refused before any candle is fetched.

    Args:
        options: the command's settings.
        progress: show the training loop's progress bar (candles, series).
        log: one-line progress messages (series, walk-forward folds).

    Raises:
        UserInputError / ConfigError: options that clash, a bad config file, an `out` that holds a run (without
            `resume` or `force`); anything the path that runs raises.
        TrainingInterrupted: Ctrl-C while training.
    """
    from ..training import distributed
    distributed.init_from_env()
    options = _resumed_after_restart(options)
    tables = load_config_file(options.config)
    options.check()
    if options.target is not None:
        assert options.csv is not None  # options.check
        run = forecast_run_from_tables(options.csv, options.target, options.features, options.protocol, tables,
                                       options.seq_len, options.horizon, options.epochs, options.out, options.resume,
                                       options.ensemble, options.force)
        result = run_forecast(run, progress=progress, log=log)
        assert run.out_dir is not None
        return TrainOutcome("series", run.out_dir, options.ensemble, series=result, forecast=run)
    return _train_candles(options, tables, progress, log)


def _resumed_after_restart(options: TrainOptions) -> TrainOptions:
    """Under torchrun's `--max-restarts`, a restarted candle run goes on from its run directory's `last/` (the
    restarted workers get the first attempt's arguments, which may say `--force`)."""
    from ..training.ddp import restarted

    if not restarted() or options.walk_forward or options.target is not None:
        return options
    run_dir = options.out or default_run_dir(options.symbol, options.interval, options.csv)
    if not (run_dir / "last" / "checkpoint.json").is_file():
        return options
    return dataclasses.replace(options, resume=True, force=False)


def launch_local(options: TrainOptions, nproc: int, train_args: list[str]) -> int:
    """`reformer train <train_args>` as one data-parallel job of `nproc` processes on this machine (torchrun,
    `reformer.training.ddp.run_local`); returns its exit status.

    Raises:
        UserInputError: `nproc` below 1, a series forecaster (`target`: trained in one process), or a process that
            torchrun already started.
    """
    from ..training import distributed
    from ..training.ddp import run_local

    if nproc < 1:
        raise UserInputError(f"--nproc {nproc} is invalid: use 1 or more processes")
    if options.target is not None:
        raise UserInputError("--nproc trains a candle model on several processes; a --target series forecaster "
                             "trains in one: drop --nproc")
    if distributed.launched_by_torchrun():
        raise UserInputError("--nproc launches torchrun itself, and this process already runs under torchrun: drop "
                             "--nproc")
    options.check()
    return run_local(nproc, ["train", *train_args])


def _train_candles(options: TrainOptions, tables: dict[str, dict[str, Any]], progress: bool,
                   log: Callable[[str], None] | None) -> TrainOutcome:
    from ..training import TrainConfig
    from ..training.loop import resolve_device
    from ..training.run_dir import check_run_dir

    data, model_table = tables["data"], dict(tables["model"])
    length = first_given(options.seq_len, data.get("seq_len"), model_table.pop("seq_len", None), 168)
    horizon = first_given(options.horizon, data.get("horizon"), 24)
    epochs = {"epochs": options.epochs} if options.epochs is not None else {}
    train_config = TrainConfig.from_dict({**tables["train"], **epochs})
    resolve_device(train_config)  # a CUDA device asked for on a machine without one fails before any fetch
    folds = None
    if options.walk_forward:
        from .crypto_folds import FoldSettings

        folds = FoldSettings(n_folds=options.walk_forward, test_windows=options.fold_test or None,
                             train_windows=options.fold_train or None,
                             mode=options.fold_mode)  # type: ignore[arg-type]  # checked by FoldSettings
    run_dir = options.out or default_run_dir("-".join(options.symbols) or options.symbol, options.interval,
                                             options.csv)
    check_run_dir(run_dir, resume=options.resume, force=options.force, resumable=folds is None)  # before a fetch
    if options.symbols:
        return _train_symbols(options, run_dir, length, horizon, train_config, tables, progress)
    from ..data.csv_io import NotCandlesError

    try:
        frame, source = load_candles(options.csv, options.symbol, options.interval, options.category, options.db,
                                     options.offline)
    except NotCandlesError as exc:  # a time series of other columns, given without --target
        raise NotCandlesError(f"{exc}; or, to forecast a column of any time series, pass --target COL") from None
    settings: dict[str, Any] = dict(model_overrides=model_table, train_config=train_config, source=source,
                                    task=options.task or data.get("task", "regression"), out_dir=run_dir,
                                    force=options.force,
                                    class_threshold=float(data.get("class_threshold", 0.0)),
                                    normalization=data.get("normalization", "train"))
    stride = data.get("stride", 1)
    if folds is not None:
        from .crypto_folds import evaluate_walk_forward

        report = evaluate_walk_forward(frame, seq_len=length, horizon=horizon, folds=folds, stride=stride,
                                       ensemble=options.ensemble, log=log, **settings)
        return TrainOutcome("walk_forward", run_dir, options.ensemble, walk_forward=report)
    if stride != 1:
        raise ConfigError(f"[data] stride = {stride!r} applies to walk-forward runs only: add --walk-forward N, "
                          "or remove stride")
    from .crypto import train_crypto

    trained = train_crypto(frame, seq_len=length, horizon=horizon, progress=progress, resume=options.resume,
                           **settings)
    return TrainOutcome("candles", trained.run_dir, candles=trained)


def _train_symbols(options: TrainOptions, run_dir: Path, seq_len: int, horizon: int, train_config: Any,
                   tables: dict[str, dict[str, Any]], progress: bool) -> TrainOutcome:
    """`--symbols`: every symbol's stored candles (fetched when missing, unless offline), one model."""
    from .multi_symbol import train_symbols

    frames: dict[str, pd.DataFrame] = {}
    source: dict[str, Any] = {}
    for symbol in options.symbols:
        frames[symbol], source = load_candles(None, symbol, options.interval, options.category, options.db,
                                              options.offline)
    data, model_table = tables["data"], {k: v for k, v in tables["model"].items() if k != "seq_len"}
    report = train_symbols(frames, seq_len=seq_len, horizon=horizon, model_overrides=model_table,
                           train_config=train_config, out_dir=run_dir,
                           task=options.task or data.get("task", "regression"),  # type: ignore[arg-type]  # checked there
                           class_threshold=float(data.get("class_threshold", 0.0)),
                           normalization=data.get("normalization", "train"),
                           source={k: v for k, v in source.items() if k != "symbol"}, progress=progress,
                           resume=options.resume, force=options.force)
    return TrainOutcome("symbols", report.run_dir, symbols=report)

"""Series forecasters on any time-series CSV: `reformer evaluate` and `reformer train --csv FILE --target COL`.

Both commands are front doors to one function, `run_forecast`, which checks a `ForecastRun` and hands it to
`reformer.pipelines.lstf.run_lstf`. They differ in where the settings come from and in whether the model is kept:

    run = EvaluateOptions(csv=Path("ETTh1.csv"), epochs=3).forecast_run()          # flags; in memory only
    run = forecast_run_from_tables(Path("ETTh1.csv"), "OT", tables=load_config_file("configs/etth1.toml"),
                                   out=Path("runs/etth1"))                         # a TOML; kept in runs/etth1
    result = run_forecast(run, progress=True, log=print)

Importing this module does not load torch: the model and the training code are imported when a run is built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, UserInputError

if TYPE_CHECKING:
    from ..model import ForecastConfig
    from ..training.loop import TrainConfig
    from .lstf import LSTFResult

__all__ = ["PROTOCOL_HELP", "EvaluateOptions", "ForecastRun", "check_protocol", "first_given",
           "forecast_run_from_tables", "run_forecast"]

PROTOCOL_HELP = "ratio (70/10/20 of the rows), ett-hourly (12/4/4 months of hourly rows) or ett-15min (the same " \
                "months of 15-minute rows)"
"""The protocol choices in users' words (the keys of `reformer.pipelines.lstf.PROTOCOLS`)."""

SERIES_DATA_KEYS = frozenset({"seq_len", "horizon"})
"""The `[data]` keys a series model takes (the others are for candle models)."""


def check_protocol(protocol: str) -> str:
    """`protocol` as `run_lstf` takes it.

    Raises:
        UserInputError: one line naming the bad value and the choices.
    """
    from .lstf import PROTOCOLS

    if protocol not in PROTOCOLS:
        raise UserInputError(f"--protocol {protocol!r} is invalid: use {PROTOCOL_HELP}")
    return protocol


def first_given(*values: Any) -> int:
    """The first value that is not None (a command-line 0 is a value, and an invalid one: the config names it)."""
    return int(next(v for v in values if v is not None))


@dataclass(frozen=True)
class ForecastRun:
    """One series forecaster's training and test: what `run_forecast` hands to `run_lstf`.

    Attributes:
        csv: the series (a date column and numeric columns).
        target: the target column.
        features: "M" (all columns in and out), "S" (the target only), "MS" (all in, the target scored).
        protocol: the split, "ratio", "ett-hourly" or "ett-15min".
        model: the forecaster's settings (its seq_len and horizon are the run's).
        train: the training loop's settings.
        ensemble: models trained (seeds seed .. seed + ensemble - 1), scored by their mean forecast.
        out_dir: keep the model in this run directory (`reformer predict` reads it); None: in memory only.
        resume: continue the interrupted run in `out_dir` from its `last/` checkpoint.
        force: start over in an `out_dir` that holds a run.
        drop_last_batch: also score the windows a `drop_last=True` test loader of this batch size keeps.
        threads: torch CPU threads; 0 = torch's default.
    """

    csv: Path
    target: str
    features: str
    protocol: str
    model: ForecastConfig
    train: TrainConfig
    ensemble: int = 1
    out_dir: Path | None = None
    resume: bool = False
    force: bool = False
    drop_last_batch: int | None = None
    threads: int = 0


def _check_split(protocol: str, features: str) -> None:
    from ..data.timeseries import check_features

    check_features(features, "--features")
    check_protocol(protocol)


def run_forecast(run: ForecastRun, *, progress: bool = False,
                 log: Callable[[str], None] | None = None) -> LSTFResult:
    """Train and score the series forecaster `run` describes (`run_lstf`), keeping it when `run.out_dir` is set.

    Args:
        run: the run (`EvaluateOptions.forecast_run`, `forecast_run_from_tables`).
        progress: show the training loop's progress bar.
        log: one-line progress messages.

    Raises:
        UserInputError / ConfigError: bad features or protocol, an encoder setting the model refuses, a CUDA device
            on a machine without one, `resume` without a `last/` checkpoint in `out_dir`; anything `run_lstf` raises.
    """
    from ..training.loop import resolve_device
    from .lstf import run_lstf

    _check_split(run.protocol, run.features)
    run.model.reformer_config()  # the encoder's settings are checked before any data is read
    resolve_device(run.train)  # an explicit CUDA device on a machine without one fails before any work
    if run.resume and (run.out_dir is None or not (run.out_dir / "last").is_dir()):
        raise UserInputError(f"--resume: {run.out_dir} holds no last/ checkpoint, so there is nothing to resume; "
                             "train without --resume")
    if run.threads:
        import torch

        torch.set_num_threads(run.threads)
    return run_lstf(run.csv, protocol=run.protocol, seq_len=run.model.seq_len, horizon=run.model.horizon,
                    features=run.features, target=run.target, model=run.model,  # type: ignore[arg-type]
                    train_config=run.train, ensemble=run.ensemble, out_dir=run.out_dir, resume=run.resume,
                    force=run.force, drop_last_batch=run.drop_last_batch, progress=progress, log=log)


def forecast_run_from_tables(csv: Path, target: str, features: str = "M", protocol: str = "ratio",
                             tables: dict[str, dict[str, Any]] | None = None, seq_len: int | None = None,
                             horizon: int | None = None, epochs: int | None = None, out: Path | None = None,
                             resume: bool = False, ensemble: int = 1, force: bool = False) -> ForecastRun:
    """`reformer train --csv FILE --target COL`'s run: the `[model]` table holds `ForecastConfig` fields, `[train]`
    `TrainConfig` fields, `[data]` seq_len and horizon; the arguments override them. The model is kept in `out`
    (default runs/<csv stem>_<target>).

    Raises:
        ConfigError: `[data]` keys of a candle model; a bad field.
        UserInputError: bad features or protocol.
    """
    from ..model import ForecastConfig
    from ..training.loop import TrainConfig

    _check_split(protocol, features)
    tables = tables or {"model": {}, "train": {}, "data": {}}
    bad = sorted(set(tables["data"]) - SERIES_DATA_KEYS)
    if bad:
        raise ConfigError(f"[data] keys {bad} are for candle models; a series model (--target) takes "
                          f"{sorted(SERIES_DATA_KEYS)}")
    length = first_given(seq_len, tables["data"].get("seq_len"), tables["model"].get("seq_len"), 336)
    steps = first_given(horizon, tables["data"].get("horizon"), tables["model"].get("horizon"), 96)
    model = ForecastConfig.from_dict({**tables["model"], "seq_len": length, "horizon": steps})
    model.reformer_config()
    train = TrainConfig.from_dict({**tables["train"], **({"epochs": epochs} if epochs is not None else {})})
    return ForecastRun(csv, target, features, protocol, model, train, ensemble=ensemble,
                       out_dir=out or Path("runs") / f"{csv.stem}_{target}", resume=resume, force=force)


@dataclass(frozen=True)
class EvaluateOptions:
    """`reformer evaluate`'s settings, each a flag of the command (see `reformer evaluate --help`): the split, the
    forecaster (`ForecastConfig` fields) and its training (`TrainConfig` fields). `max_batches` 0 is every training
    window, `max_minutes` 0 no time limit, `drop_last_batch` 0 every window only, `threads` 0 torch's default."""

    csv: Path
    protocol: str = "ett-hourly"
    seq_len: int = 336
    horizon: int = 96
    features: str = "M"
    target: str = "OT"
    epochs: int = 3
    seed: int = 0
    ensemble: int = 1
    drop_last_batch: int = 128
    patch_len: int = 16
    stride: int = 8
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    d_ff: int = 128
    attention: str = "full"
    chunk_size: int = 16
    n_buckets: int = 4
    n_hash_rounds: int = 2
    reversible: bool = True
    revin: bool = True
    dropout: float = 0.1
    linear_skip: bool = False
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 2
    max_batches: int = 0
    loss: str = "mse"
    threads: int = 0
    max_minutes: float = 0.0
    device: str = "auto"

    def forecast_run(self) -> ForecastRun:
        """The run: in memory only (no run directory).

        Raises:
            UserInputError / ConfigError: a bad protocol, features, loss, ensemble, drop_last_batch or encoder
                setting.
        """
        from ..model import ForecastConfig
        from ..training.loop import TrainConfig

        check_protocol(self.protocol)
        _check_split(self.protocol, self.features)
        if self.loss not in ("mse", "l1", "huber"):
            raise ConfigError(f"--loss {self.loss!r} is invalid: use mse, l1 or huber")
        if self.ensemble < 1:
            raise ConfigError(f"--ensemble {self.ensemble} is invalid: train 1 or more models")
        if self.drop_last_batch < 0:
            raise ConfigError(f"--drop-last-batch {self.drop_last_batch} is invalid: use a batch size >= 1, or 0 "
                              "for none")
        model = ForecastConfig(seq_len=self.seq_len, horizon=self.horizon, patch_len=self.patch_len,
                               stride=self.stride, revin=self.revin, d_model=self.d_model, n_heads=self.n_heads,
                               n_layers=self.n_layers, d_ff=self.d_ff, attention_type=self.attention,
                               chunk_size=self.chunk_size, n_buckets=self.n_buckets,
                               n_hash_rounds=self.n_hash_rounds, reversible=self.reversible, dropout=self.dropout,
                               linear_skip=self.linear_skip, seed=self.seed)
        model.reformer_config()  # validate the encoder settings before loading data
        train = TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                            weight_decay=self.weight_decay, patience=self.patience,
                            max_batches_per_epoch=self.max_batches or None, seed=self.seed, loss=self.loss,
                            device=self.device, max_seconds=60 * self.max_minutes if self.max_minutes else None)
        return ForecastRun(self.csv, self.target, self.features, self.protocol, model, train, ensemble=self.ensemble,
                           drop_last_batch=self.drop_last_batch or None, threads=self.threads)

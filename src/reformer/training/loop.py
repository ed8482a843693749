"""The training loop: `fit` (AdamW, warmup + cosine, clipping, early stopping, resume).

    result = fit(model, prepared.train, prepared.val, TrainConfig(epochs=20), out_dir="runs/btc")

`TrainConfig` lives in `config.py` and is re-exported here.

Reproducibility: every source of randomness in an epoch is re-derived from (`seed`, epoch): the window order or
sample (a private generator), dropout (`torch.manual_seed`) and the LSH rotation stream (`model.reseed`). A run
resumed from its `last/` checkpoint (weights, optimizer, global step, epoch, early-stopping state) therefore
replays exactly the losses of an uninterrupted run on CPU. The learning rate is a pure function of the global
step, so the schedule needs no saved state beyond that step.

Run directory written when `out_dir` is given:

    metrics.csv   epoch, train_loss, val_loss, lr, seconds, then any extra metrics (rewritten every epoch)
    best/         checkpoint with the lowest validation loss so far
    last/         checkpoint of the latest epoch with optimizer state and `train_state` (for `resume=`)

An epoch's three are written together, a Ctrl-C held until all are (and each file replaced atomically), so an
interrupted run's directory always holds one whole epoch to resume from; `fit` then raises `TrainingInterrupted`.
"""

from __future__ import annotations

import csv
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, default_collate

from reformer.data.dataset import WindowDataset
from reformer.errors import UserInputError
from reformer.files import atomic_write
from reformer.model import ReformerModel
from reformer.training import ddp, distributed
from reformer.training._fields import data_difference
from reformer.training.checkpoint import (
    META_FILE,
    kind_of,
    load_optimizer_state,
    model_kind,
    read_meta,
    read_weights,
    save_checkpoint,
)
from reformer.training.config import TrainConfig
from reformer.training.interrupts import TrainingInterrupted, as_training_interrupted, interrupts_held
from reformer.training.meta import TrainState

if TYPE_CHECKING:
    from rich.progress import Progress

__all__ = ["EpochEnd", "FitResult", "TrainConfig", "TrainingInterrupted", "fit", "lr_at_step", "predict_dataset",
           "resolve_device"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
@dataclass
class EpochEnd:
    """What `on_epoch` receives after each validation pass."""

    epoch: int
    record: dict[str, float]
    model: ReformerModel
    val_predictions: torch.Tensor
    """`[n_val, o]` model outputs on the validation windows (CPU, float32)."""
    val_targets: torch.Tensor


@dataclass
class FitResult:
    """Outcome of `fit`; the model is left holding the best epoch's weights."""

    best_epoch: int
    best_val_loss: float
    history: list[dict[str, float]] = field(default_factory=list)
    best_checkpoint: Path | None = None
    stopped_early: bool = False


def lr_at_step(step: int, total_steps: int, config: TrainConfig) -> float:
    """Linear warmup to `config.lr` over `warmup_fraction` of the steps, then cosine decay to 0."""
    warmup = max(1, round(config.warmup_fraction * total_steps)) if config.warmup_fraction > 0 else 0
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def resolve_device(config: TrainConfig) -> torch.device:
    """The device `fit` trains on: CUDA under "auto" when available, else the CPU; raises UserInputError for an
    explicit CUDA device on a machine without one."""
    if config.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if config.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserInputError(f"TrainConfig.device={config.device!r} but CUDA is not available; use 'auto' or 'cpu'")
    return torch.device(config.device)


def _loss_fn(config: TrainConfig) -> LossFn:
    def loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred = pred.float()
        if config.loss == "cross_entropy":
            return F.cross_entropy(pred, target.long())
        pred = pred.reshape(target.shape) if pred.numel() == target.numel() else pred
        if config.loss == "huber":
            return F.huber_loss(pred, target.float(), delta=config.huber_delta)
        if config.loss == "l1":
            return F.l1_loss(pred, target.float())
        return F.mse_loss(pred, target.float())

    return loss


def _batch(dataset: Dataset[Any], idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(dataset, WindowDataset):  # fast path: one gather instead of per-item indexing
        rows = torch.as_tensor(dataset.indices)[idx]
        return dataset.features[rows], dataset.targets[rows]
    x, y = default_collate([dataset[int(i)] for i in idx])
    return x, y


def predict_dataset(model: ReformerModel, dataset: Dataset[Any], batch_size: int = 256,
                    device: str | torch.device = "cpu", bfloat16: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Model outputs and targets over a whole dataset, in order (eval mode, no grad).

    Matrix products run in bfloat16 under autocast on CUDA always, and on CPU when `bfloat16` is set (hashing,
    logits and softmax stay float32; see `bench.targets`).

    Returns:
        (predictions `[n, o]` float32 on CPU, targets `[n, ...]` on CPU).
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    preds, targets = [], []
    n = len(dataset)  # type: ignore[arg-type]
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16,
                                         enabled=bfloat16 or device.type == "cuda"):
        for start in range(0, n, batch_size):
            x, y = _batch(dataset, torch.arange(start, min(n, start + batch_size)))
            preds.append(model(x.to(device)).float().cpu())
            targets.append(y)
    model.train(was_training)
    if not preds:
        raise UserInputError("the dataset has no windows to predict; use a longer series or a smaller seq_len")
    return torch.cat(preds), torch.cat(targets)


def _write_metrics(path: Path, history: list[dict[str, float]]) -> None:
    columns = ["epoch", "train_loss", "val_loss", "lr", "seconds"]
    columns += sorted({key for row in history for key in row} - set(columns))

    def write(temp: Path) -> None:
        with temp.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(history)

    atomic_write(path, write)


def _progress_bar(enabled: bool) -> Progress:
    """The training bar: epoch and losses, batches done of all epochs', elapsed time and an ETA (an upper bound
    when early stopping ends the run sooner). On stderr, so stdout stays clean for machine-readable output
    (`reformer train --json`), and only on a terminal: a log file or a test's captured output gets nothing."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.progress import Progress as Bar
    from rich.table import Column

    console = Console(stderr=True)

    def kept() -> Column:
        return Column(no_wrap=True)

    # the columns after the description take about 60 characters; a narrow terminal cuts the losses, never the
    # counts and times
    described = Column(no_wrap=True, overflow="ellipsis", max_width=max(16, console.width - 62))
    return Bar(TextColumn("{task.description}", table_column=described), BarColumn(bar_width=20),
               MofNCompleteColumn(table_column=kept()), TextColumn("batches", table_column=kept()),
               TimeElapsedColumn(table_column=kept()), TextColumn("eta", table_column=kept()),
               TimeRemainingColumn(table_column=kept()), console=console,
               disable=not (enabled and console.is_terminal), transient=False)


def _epoch_order(n: int, config: TrainConfig, generator: torch.Generator) -> torch.Tensor:
    order = torch.randperm(n, generator=generator)
    if config.max_batches_per_epoch is not None:
        order = order[: config.max_batches_per_epoch * config.batch_size]
    return order


def _check_resumable(last: Path, meta: dict[str, Any], model: ReformerModel,
                     checkpoint_meta: dict[str, Any]) -> None:
    """A resumed run must be the same model on the same inputs: else one line naming the first difference.

    The model's `seed` may differ: it only draws the initial weights, which the checkpoint's replace.
    """
    saved_kind, kind = model_kind(meta), kind_of(model)
    if saved_kind != kind:
        raise UserInputError(f"{last} holds a {saved_kind} model and this run trains a {kind} model; resume with the "
                             "command that started the run, or train into a new run directory")
    saved, model_config = meta.get("model_config", {}), model.config.to_dict()
    changed = [key for key in sorted(set(saved) | set(model_config))
               if key != "seed" and saved.get(key) != model_config.get(key)]
    if changed:
        key = changed[0]
        raise UserInputError(f"{last} was trained with {key}={saved.get(key)!r}, this run has {key}="
                             f"{model_config.get(key)!r}; resume with the run's own config, or train into a new "
                             "run directory")
    for key in ("feature_names", "horizon", "task", "features", "protocol"):
        if key in meta and key in checkpoint_meta and meta[key] != checkpoint_meta[key]:
            raise UserInputError(f"{last} was trained with {key}={meta[key]!r}, this run has {key}="
                                 f"{checkpoint_meta[key]!r}; resume with the run's own data settings, or train "
                                 "into a new run directory")
    if (moved := data_difference(meta.get("data"), checkpoint_meta.get("data"))) is not None:
        raise UserInputError(f"{last} was trained on {moved}; its best epoch is chosen on one validation split: "
                             "resume on the run's own data, or train into a new run directory")


def _validate(model: ReformerModel, val_dataset: Dataset[Any], config: TrainConfig, device: torch.device,
              val_metric: LossFn, on_epoch: Callable[[EpochEnd], Mapping[str, float] | None] | None,
              record: dict[str, float], started: float, began: float) -> tuple[dict[str, float], bool]:
    """The epoch's record with its validation loss and `on_epoch`'s extras, and whether `max_seconds` is spent."""
    val_pred, val_target = predict_dataset(model, val_dataset, config.eval_batch_size, device)
    with torch.no_grad():
        val_loss = float(val_metric(val_pred, val_target))
    record = {"epoch": record["epoch"], "train_loss": record["train_loss"], "val_loss": val_loss, "lr": record["lr"],
              "seconds": time.perf_counter() - started}
    if on_epoch is not None:
        record.update(on_epoch(EpochEnd(int(record["epoch"]), record, model, val_pred, val_target)) or {})
    return record, config.max_seconds is not None and time.perf_counter() - began >= config.max_seconds


def fit(model: ReformerModel, train_dataset: Dataset[Any], val_dataset: Dataset[Any], config: TrainConfig, *,
        loss_fn: LossFn | None = None, val_metric: LossFn | None = None, out_dir: str | os.PathLike[str] | None = None,
        checkpoint_meta: dict[str, Any] | None = None, resume: str | os.PathLike[str] | None = None,
        progress: bool = True, on_epoch: Callable[[EpochEnd], Mapping[str, float] | None] | None = None,
        data_parallel: bool = True) -> FitResult:
    """Train `model` with AdamW, warmup + cosine LR, gradient clipping and early stopping on validation loss.

    Args:
        model: the model (moved to the training device; left there holding the best epoch's weights).
        train_dataset, val_dataset: datasets of (x `[l, f]`, y) pairs, e.g. `PreparedDataset.train/.val`.
        config: the training configuration.
        loss_fn: (pred `[b, o]`, target `[b, ...]`) -> scalar; default from `config.loss`.
        val_metric: same signature; the validation loss that early stopping and the best epoch go by (recorded as
            `val_loss`); default `loss_fn`.
        out_dir: run directory for `metrics.csv`, `best/` and `last/` checkpoints; None writes nothing.
        checkpoint_meta: JSON-compatible extras stored in every checkpoint (feature spec, scaler, data range, ...).
        resume: a run directory or `last/` checkpoint of an interrupted run with the same config.
        progress: show a progress bar with the losses and an ETA (`_progress_bar`: stderr, on a terminal only).
        on_epoch: called after each validation pass; a returned mapping adds metrics to that epoch's record.
        data_parallel: under torchrun, train this one model on all ranks (`reformer.training.ddp`: each rank a
            slice of every global batch; validation, `on_epoch`, files and the progress bar on rank 0 only);
            False trains it in this process alone.

    Returns:
        `FitResult(best_epoch, best_val_loss, history, best_checkpoint, stopped_early)`; epochs count from 1.

    Raises:
        UserInputError: empty datasets, unusable device or resume checkpoint.
        TrainingInterrupted: Ctrl-C (a `KeyboardInterrupt`), once `out_dir` holds whole epochs only.
    """
    n_train = len(train_dataset)  # type: ignore[arg-type]
    if n_train == 0 or len(val_dataset) == 0:  # type: ignore[arg-type]
        raise UserInputError(f"fit needs training and validation windows (got {n_train} and "
                             f"{len(val_dataset)}); use a longer series or a smaller seq_len/horizon")  # type: ignore[arg-type]
    device = resolve_device(config)
    model.to(device)
    loss_fn = loss_fn or _loss_fn(config)
    val_metric = val_metric or loss_fn
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(min(n_train, (config.max_batches_per_epoch or n_train) * config.batch_size)
                                / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    run_dir = Path(out_dir) if out_dir is not None else None
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)

    history: list[dict[str, float]] = []
    state: dict[str, Any] = {"epoch": 0, "step": 0, "best_epoch": 0, "best_val_loss": math.inf, "bad_epochs": 0}
    best_weights: dict[str, torch.Tensor] | None = None
    if resume is not None:
        last = Path(resume) / "last" if (Path(resume) / "last").is_dir() else Path(resume)
        meta = read_meta(last)
        if not isinstance(meta.get("train_state"), dict):
            raise UserInputError(f"{last} is not a resumable checkpoint (no train_state): pass the run's last/")
        _check_resumable(last, meta, model, checkpoint_meta or {})
        saved_state = TrainState.from_dict(meta["train_state"], Path(last) / META_FILE)
        model.load_state_dict(read_weights(last, model.state_dict()))
        load_optimizer_state(last, optimizer)
        state.update(saved_state.to_dict()["state"])
        history = [dict(record) for record in saved_state.history]
        if int(state["epoch"]) >= config.epochs:
            raise UserInputError(f"{last}: the run already trained {int(state['epoch'])} of its epochs (limit "
                                 f"{config.epochs}); raise the epoch limit (--epochs) to train on")
        if config.patience and int(state["bad_epochs"]) >= config.patience:
            raise UserInputError(f"{last}: the run stopped early (no better validation loss in its last "
                                 f"{int(state['bad_epochs'])} epochs); raise the patience to train on")
        if run_dir is not None and (run_dir / "best").is_dir():
            best_weights = {k: v.to(device) for k, v in read_weights(run_dir / "best", model.state_dict()).items()}

    def meta_for(epoch_record: dict[str, float] | None, with_state: bool) -> dict[str, Any]:
        out = {**(checkpoint_meta or {}), "train_config": config.to_dict(), "metrics": epoch_record or {}}
        if with_state:
            out["train_state"] = TrainState(**state, history=tuple(history)).to_dict()
        return out

    parallel = data_parallel and distributed.is_distributed()
    writes = run_dir if not parallel or distributed.is_main() else None  # rank 0's files only
    net = ddp.wrap(model, parallel)  # forward and backward through DDP; state, reseed and files via `model`
    bar = _progress_bar(progress and writes is run_dir)
    stopped_early = False
    amp = device.type == "cuda"
    began = time.perf_counter()
    saved = int(state["epoch"])  # the epoch last/ holds
    with bar, as_training_interrupted(writes, lambda: saved):
        task = bar.add_task(f"epoch {int(state['epoch']) + 1}/{config.epochs}", total=total_steps,
                            completed=int(state["step"]))
        for epoch in range(int(state["epoch"]) + 1, config.epochs + 1):
            started = time.perf_counter()
            epoch_seed = config.seed * 1_000_003 + epoch
            generator = torch.Generator().manual_seed(epoch_seed)
            torch.manual_seed(epoch_seed)  # dropout
            model.reseed(epoch_seed)  # LSH rotations
            model.train()
            order = _epoch_order(n_train, config, generator)
            total_loss, n_seen = 0.0, 0
            for start in range(0, len(order), config.batch_size):
                ddp.exit_for_test(int(state["step"]))
                part = ddp.shard(order[start: start + config.batch_size]) if parallel else None
                idx = order[start: start + config.batch_size] if part is None else part.indices
                x, y = _batch(train_dataset, idx)
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                lr = lr_at_step(int(state["step"]), total_steps, config)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    loss = loss_fn(net(x), y)
                optimizer.zero_grad(set_to_none=True)
                (loss if part is None else loss * part.weight).backward()  # DDP's mean of these: the batch's mean
                if config.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                state["step"] += 1
                counted = len(idx) if part is None else part.count
                total_loss += float(loss.detach()) * counted
                n_seen += counted
                bar.update(task, advance=1, description=f"epoch {epoch}/{config.epochs} loss {loss.item():.4g}")
            if parallel:
                total_loss, seen = ddp.sum_over_ranks(total_loss, n_seen)
                n_seen = int(seen)
            record: dict[str, float] = {"epoch": epoch, "train_loss": total_loss / max(1, n_seen), "lr": lr}
            # rank 0 validates over the whole set and decides; every rank then keeps the same state
            record, out_of_time = ddp.on_main(partial(_validate, model, val_dataset, config, device, val_metric,
                                                      on_epoch, record, started, began), parallel)
            val_loss = record["val_loss"]
            improved = val_loss < float(state["best_val_loss"])
            if improved:
                state.update(best_epoch=epoch, best_val_loss=val_loss, bad_epochs=0)
                best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                state["bad_epochs"] += 1
            state["epoch"] = epoch
            history.append(record)
            extras = " ".join(f"{k} {v:.4g}" for k, v in record.items() if k not in ("epoch", "lr", "seconds"))
            bar.update(task, description=f"epoch {epoch}/{config.epochs} {extras} (best {state['best_epoch']})")
            if writes is not None:
                with interrupts_held():
                    _write_metrics(writes / "metrics.csv", history)
                    if improved:
                        save_checkpoint(writes / "best", model, meta_for(record, with_state=False))
                    save_checkpoint(writes / "last", model, meta_for(record, with_state=True), optimizer)
                    saved = epoch  # inside: a Ctrl-C held by the block is raised as it ends
            if (config.patience and state["bad_epochs"] >= config.patience) or out_of_time:
                stopped_early = epoch < config.epochs
                break
    del net  # DDP's reducer goes before the process group does
    if parallel:
        distributed.barrier()  # rank 0's files are whole before any rank reads them
    if best_weights is not None:
        model.load_state_dict(best_weights)
    model.eval()
    best = run_dir / "best" if run_dir is not None and (run_dir / "best").is_dir() else None
    return FitResult(int(state["best_epoch"]), float(state["best_val_loss"]), history, best, stopped_early)

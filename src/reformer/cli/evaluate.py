"""`reformer evaluate`: the standard LSTF protocol (ETT, ECL, Weather, ...) for the patched Reformer and baselines.

A thin command over `reformer.pipelines.run_forecast` (the same function as `reformer train --csv FILE --target COL`,
which keeps the model; `evaluate` trains in memory only)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .common import PROTOCOL_HELP, ForceOpt, JsonOpt, check_out, write_output

if TYPE_CHECKING:
    from ..pipelines.lstf import LSTFResult

__all__ = ["register"]

_HELP = {
    "features": "M: all channels in and out; S: target only; MS: all in, target scored.",
    "ensemble": "Train this many models (seeds SEED, SEED+1, ...) and score their mean forecast; each member's own "
                "scores are in the JSON.",
    "drop_last_batch": "Also score the leading test windows that a drop_last=True test loader of this batch size "
                       "keeps, as PatchTST's published ETT rows did (128); 0 = every window only.",
    "linear_skip": "Add a least-squares-initialised linear map of the window to the encoder's output (the encoder "
                   "learns the residual).",
    "loss": "Training loss on the normalised scale: mse, l1 or huber (delta 1.0); early stopping is on validation "
            "MSE whatever the loss.",
    "max_minutes": "Stop training after the epoch that ends past this many minutes; 0 = no limit.",
    "device": "auto (CUDA with bfloat16 autocast in training when present, else CPU), cpu, cuda or cuda:N.",
}


def evaluate(
    csv: Annotated[Path, typer.Option(help="Time-series CSV (date column, numeric columns), e.g. ETTh1.csv.")],
    protocol: Annotated[str, typer.Option(help=f"Split: {PROTOCOL_HELP}.")] = "ett-hourly",
    seq_len: Annotated[int, typer.Option(help="Input (look-back) length in steps.")] = 336,
    horizon: Annotated[int, typer.Option(help="Forecast length in steps.")] = 96,
    features: Annotated[str, typer.Option(help=_HELP["features"])] = "M",
    target: Annotated[str, typer.Option(help="Target column (ETT: OT).")] = "OT",
    epochs: Annotated[int, typer.Option(help="Training epochs (early stopping on validation MSE).")] = 3,
    seed: Annotated[int, typer.Option(help="Seed for weights, shuffling and dropout.")] = 0,
    ensemble: Annotated[int, typer.Option(help=_HELP["ensemble"])] = 1,
    drop_last_batch: Annotated[int, typer.Option(help=_HELP["drop_last_batch"])] = 128,
    json_out: JsonOpt = False,
    out: Annotated[Path | None, typer.Option(help="Also write the JSON result to this file.")] = None,
    force: ForceOpt = False,
    patch_len: Annotated[int, typer.Option(help="Steps per patch (token).")] = 16,
    stride: Annotated[int, typer.Option(help="Steps between patch starts.")] = 8,
    d_model: Annotated[int, typer.Option(help="Width of each residual half.")] = 64,
    n_heads: Annotated[int, typer.Option(help="Attention heads.")] = 4,
    n_layers: Annotated[int, typer.Option(help="Encoder layers.")] = 2,
    d_ff: Annotated[int, typer.Option(help="Feed-forward hidden width.")] = 128,
    attention: Annotated[str, typer.Option(help="Attention kernel: full, lsh or local.")] = "full",
    chunk_size: Annotated[int, typer.Option(help="Patches per attention chunk (LSH/local).")] = 16,
    n_buckets: Annotated[int, typer.Option(help="LSH buckets per round (even).")] = 4,
    n_hash_rounds: Annotated[int, typer.Option(help="LSH hash rounds.")] = 2,
    reversible: Annotated[bool, typer.Option(help="Reversible residual layers.")] = True,
    revin: Annotated[bool, typer.Option(help="Per-window normalisation (RevIN).")] = True,
    dropout: Annotated[float, typer.Option(help="Encoder dropout.")] = 0.1,
    linear_skip: Annotated[bool, typer.Option(help=_HELP["linear_skip"])] = False,
    batch_size: Annotated[int, typer.Option(help="Windows per training step.")] = 128,
    lr: Annotated[float, typer.Option(help="Peak learning rate (warm-up, then cosine).")] = 1e-3,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = 1e-4,
    patience: Annotated[int, typer.Option(help="Epochs without validation improvement before stopping.")] = 2,
    max_batches: Annotated[int, typer.Option(help="Steps per epoch; 0 = all training windows.")] = 0,
    loss: Annotated[str, typer.Option(help=_HELP["loss"])] = "mse",
    threads: Annotated[int, typer.Option(help="torch CPU threads; 0 = torch's default.")] = 0,
    max_minutes: Annotated[float, typer.Option(help=_HELP["max_minutes"])] = 0.0,
    device: Annotated[str, typer.Option(help=_HELP["device"])] = "auto",
) -> None:
    """Train on the standard split; print test MSE/MAE (normalised scale, every window) beside Repeat and linear."""
    from ..pipelines import EvaluateOptions, run_forecast

    options = EvaluateOptions(
        csv=csv, protocol=protocol, seq_len=seq_len, horizon=horizon, features=features, target=target, epochs=epochs,
        seed=seed, ensemble=ensemble, drop_last_batch=drop_last_batch, patch_len=patch_len, stride=stride,
        d_model=d_model, n_heads=n_heads, n_layers=n_layers, d_ff=d_ff, attention=attention, chunk_size=chunk_size,
        n_buckets=n_buckets, n_hash_rounds=n_hash_rounds, reversible=reversible, revin=revin, dropout=dropout,
        linear_skip=linear_skip, batch_size=batch_size, lr=lr, weight_decay=weight_decay, patience=patience,
        max_batches=max_batches, loss=loss, threads=threads, max_minutes=max_minutes, device=device)
    check_out(out, force)  # before the training, not after it
    stream = sys.stderr if json_out else sys.stdout  # with --json, stdout carries the JSON object only
    result = run_forecast(options.forecast_run(), progress=not json_out,
                          log=lambda line: print(line, file=stream, flush=True))
    payload = result.to_json()
    if out is not None:
        write_output(out, json.dumps(payload, indent=2) + "\n")
    if json_out:
        print(json.dumps(payload))
    else:
        _print_result(result, f"{protocol} {features} seq_len={seq_len} horizon={horizon}", seed)


def _print_result(result: LSTFResult, what: str, seed: int) -> None:
    print(f"{what}: {result.model.n_windows} test windows, normalised scale, seed {seed}, {result.seconds:.0f} s")
    for member in result.train.get("members", []):
        label = f"member, seed {member['seed']}"
        print(f"  {label:<60} MSE {member['test_mse']:.4f}  MAE {member['test_mae']:.4f}")
    for name, metrics in (("model: " + result.model_name, result.model), ("repeat", result.repeat),
                          ("linear", result.linear),
                          (f"blend: model x {result.blend_weight:.2f} + linear (weight fitted on validation)",
                           result.blend)):
        print(f"  {name:<60} MSE {metrics.mse:.4f}  MAE {metrics.mae:.4f}")
    subset = result.drop_last
    if subset is not None and subset["model"] is not None and subset["n_dropped"]:
        print(f"on the first {subset['n_windows']} windows only (drop_last with batch {subset['batch_size']}, "
              f"as in PatchTST's published rows; {subset['n_dropped']} latest windows left out):")
        for name in ("model", "repeat", "linear"):
            print(f"  {name:<60} MSE {subset[name]['mse']:.4f}  MAE {subset[name]['mae']:.4f}")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)

"""`reformer bench compare`, `attention-scaling` and `targets`: added to the `bench` group of `cli.bench`."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ..bench.attention import Measurement
from ..bench.compare import CompareSpec, Run, machine_info, ratios, run_compare
from ..bench.scaling import DEFAULT_LENGTHS, loglog_slope, plot_scaling, run_scaling
from ..bench.shape import IMPLS, ModelShape
from ..errors import ConfigError
from .bench import bench_app
from .common import ForceOpt, check_out, write_output

__all__ = ["compare_markdown", "register"]


def _ints(text: str, option: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{option} {text!r} is not a comma-separated list of integers, e.g. {option} 2048,8192") \
            from None
    if not values or min(values) < 1:
        raise ConfigError(f"{option} {text!r}: give positive integers, e.g. {option} 2048,8192")
    return values


def _cell(m: Measurement | None) -> str:
    if m is None:
        return "-"
    if m.seconds is None:
        return f"skipped: {m.skipped}"
    return f"{m.seconds:,.2f} s / {m.peak_mb or 0:,.0f} MB"


def _ratio(m: Measurement | None, ours: Measurement | None) -> str:
    if m is None or ours is None or m.seconds is None or not ours.seconds:
        return "-"
    mem = f"{m.peak_mb / ours.peak_mb:.2f}×" if m.peak_mb is not None and ours.peak_mb else "-"
    return f"{m.seconds / ours.seconds:.2f}× / {mem}"


def _grid(results: list[Measurement], lengths: list[int], impls: tuple[str, ...]) -> tuple[list[str], list[list[str]]]:
    by_key = {(m.kernel, m.length): m for m in results}
    others = [i for i in impls if i != "ours"] if "ours" in impls else []
    header = ["L", *[f"{i} (time / mem)" for i in impls], *[f"{i} ÷ ours (time / mem)" for i in others]]
    rows = []
    for length in lengths:
        ours = by_key.get(("ours", length))
        rows.append([str(length), *[_cell(by_key.get((i, length))) for i in impls],
                     *[_ratio(by_key.get((i, length)), ours) for i in others]])
    return header, rows


def compare_markdown(results: list[Measurement], lengths: list[int], impls: tuple[str, ...]) -> str:
    """The comparison as a Markdown table: median step time / peak RSS growth, and ratios to ours."""
    header, rows = _grid(results, lengths, impls)
    lines = ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _table(results: list[Measurement], lengths: list[int], impls: tuple[str, ...], title: str) -> Table:
    header, rows = _grid(results, lengths, impls)
    table = Table(title=title)
    for name in header:
        table.add_column(name, justify="right")
    for row in rows:
        table.add_row(*row)
    return table


def _progress(console: Console) -> Callable[[Run], None]:
    def show(run: Run) -> None:
        if run.skipped:
            console.print(f"  {run.impl:>10} L={run.length:<7} #{run.repeat}  skipped: {run.skipped}")
        else:
            times = ", ".join(f"{t:.2f}" for t in run.times)
            console.print(f"  {run.impl:>10} L={run.length:<7} #{run.repeat}  steps {times} s "
                          f"(warm-up {run.warmup or 0:.2f} s), peak +{run.peak_mb or 0:,.0f} MB")
    return show


def _check_threads(threads: int) -> None:
    if threads < 0:
        raise ConfigError(f"--threads {threads}: give a number of torch threads >= 1, or 0 for torch's default")


def _spec(d_model: int, heads: int, layers: int, rounds: int, chunk_size: int, ff_chunk_len: int, repeats: int,
          steps: int, step_timeout: float, budget_gb: float, threads: int) -> CompareSpec:
    shape = ModelShape(d_model=d_model, n_heads=heads, n_layers=layers, n_hash_rounds=rounds,
                       chunk_size=chunk_size, ff_chunk_len=ff_chunk_len)
    if repeats < 1 or steps < 1:
        raise ConfigError(f"--repeats {repeats} / --steps {steps}: both must be at least 1")
    _check_threads(threads)
    return CompareSpec(shape=shape, repeats=repeats, steps=steps, step_timeout=step_timeout, budget_gb=budget_gb,
                       threads=threads)


Lengths = Annotated[str, typer.Option(help="Comma-separated sequence lengths.")]
DModel = Annotated[int, typer.Option(help="Model width.")]
Heads = Annotated[int, typer.Option(help="Attention heads.")]
Rounds = Annotated[int, typer.Option(help="LSH hash rounds.")]
Chunk = Annotated[int, typer.Option(help="LSH chunk size (reformer-pytorch: bucket_size).")]
FFLen = Annotated[int, typer.Option(help="Positions per feed-forward slice.")]
Repeats = Annotated[int, typer.Option(help="Interleaved subprocess runs per cell.")]
Steps = Annotated[int, typer.Option(help="Timed steps per run (after one warm-up step).")]
Timeout = Annotated[float, typer.Option(help="Seconds one step may take before the run is killed and skipped.")]
Budget = Annotated[float, typer.Option(help="Resident memory (GB) a run may reach before it is killed.")]
Threads = Annotated[int, typer.Option(help="torch threads per run; 0 = torch's default.")]
Out = Annotated[Path | None, typer.Option(help="Write the results as JSON here.")]
CompareOut = Annotated[Path | None, typer.Option(help="Write the results as JSON here, and a .md table beside it.")]


@bench_app.command("compare")
def compare(
    lengths: Lengths = "2048,8192,32768",
    impls: Annotated[str, typer.Option(help=f"Comma-separated, from {','.join(IMPLS)}.")] = ",".join(IMPLS),
    d_model: DModel = 256, heads: Heads = 8,
    layers: Annotated[int, typer.Option(help="Encoder layers.")] = 6,
    rounds: Rounds = 4, chunk_size: Chunk = 64, ff_chunk_len: FFLen = 1024,
    repeats: Repeats = 3,
    steps: Annotated[int, typer.Option(help="Timed steps per run after one warm-up step; a cell's time is the median "
                                            "of all its runs' steps. The first one follows the heap trim that resets "
                                            "the peak-memory counter and pays for faulting the heap back in.")] = 3,
    step_timeout: Timeout = 600.0, budget_gb: Budget = 12.0, threads: Threads = 1, out: CompareOut = None,
    force: ForceOpt = False,
) -> None:
    """Training-step time and memory of ours, HF transformers, reformer-pytorch and an SDPA Transformer."""
    _check_outputs(force, out, out and out.with_suffix(".md"))
    length_list = _ints(lengths, "--lengths")
    impl_list = tuple(i.strip() for i in impls.split(",") if i.strip())
    bad = [i for i in impl_list if i not in IMPLS]
    if bad or not impl_list:
        raise ConfigError(f"--impls {impls!r}: choose from {','.join(IMPLS)}")
    spec = _spec(d_model, heads, layers, rounds, chunk_size, ff_chunk_len, repeats, steps, step_timeout,
                 budget_gb, threads)
    console = Console(width=200)
    before = machine_info()
    console.print(f"spec: {spec}\nmachine: {before}")
    runs, results = run_compare(length_list, impl_list, spec, progress=_progress(console))
    console.print(_table(results, length_list, impl_list,
                         "Training step (fwd+bwd): median time / peak RSS growth; ratios to ours"))
    if out is not None:
        info = {"before": before, "after": machine_info()}
        data = {"command": "compare", "spec": asdict(spec), "lengths": length_list, "impls": list(impl_list),
                "machine": info, "runs": [asdict(r) for r in runs], "results": [asdict(m) for m in results],
                "ratios_to_ours": ratios(results)}
        write_output(out, json.dumps(data, indent=2))
        write_output(out.with_suffix(".md"), compare_markdown(results, length_list, impl_list) + "\n")
        console.print(f"wrote {out} and {out.with_suffix('.md')}")


_SCALING_LENGTHS = ",".join(map(str, DEFAULT_LENGTHS))


@bench_app.command("attention-scaling")
def attention_scaling(
    lengths: Lengths = _SCALING_LENGTHS,
    d_model: DModel = 256, heads: Heads = 8, rounds: Rounds = 4, chunk_size: Chunk = 64,
    repeats: Repeats = 1, steps: Steps = 2, step_timeout: Timeout = 600.0, budget_gb: Budget = 12.0,
    threads: Threads = 1, out: Out = None,
    plot: Annotated[Path | None, typer.Option(help="Log-log PNG plot; default: --out with .png.")] = None,
    force: ForceOpt = False,
) -> None:
    """Our LSH attention layer alone (fwd+bwd): time and peak memory against L, JSON and a log-log plot."""
    _check_outputs(force, out, plot if plot is not None else (out and out.with_suffix(".png")))
    if plot is not None:
        from ..files import check_image_file

        check_image_file(plot, force)
    length_list = _ints(lengths, "--lengths")
    spec = _spec(d_model, heads, 1, rounds, chunk_size, 1024, repeats, steps, step_timeout, budget_gb, threads)
    console = Console(width=200)
    before = machine_info()
    console.print(f"spec: {spec}\nmachine: {before}")
    runs, results = run_scaling(length_list, spec, progress=_progress(console))
    table = Table(title="LSH attention layer (fwd+bwd): median time and peak RSS growth")
    for name in ("L", "time", "peak MB", "MB per 1k positions"):
        table.add_column(name, justify="right")
    for m in results:
        per_k = f"{m.peak_mb / m.length * 1000:,.1f}" if m.peak_mb else "-"
        time_cell = f"{m.seconds:,.3f} s" if m.seconds is not None else f"skipped: {m.skipped}"
        table.add_row(str(m.length), time_cell, f"{m.peak_mb:,.0f}" if m.peak_mb is not None else "-", per_k)
    console.print(table)
    ok = [m for m in results if m.seconds is not None and m.peak_mb]
    slopes = {"time": loglog_slope([(m.length, m.seconds or 0.0) for m in ok]),
              "memory": loglog_slope([(m.length, m.peak_mb or 0.0) for m in ok])}
    console.print(f"log-log slopes (exponent k in y ~ L^k): {slopes}")
    plot_path = plot if plot is not None else (out.with_suffix(".png") if out is not None else None)
    if out is not None:
        data = {"command": "attention-scaling", "spec": asdict(spec), "lengths": length_list,
                "machine": {"before": before, "after": machine_info()}, "runs": [asdict(r) for r in runs],
                "results": [asdict(m) for m in results], "loglog_slopes": slopes}
        write_output(out, json.dumps(data, indent=2))
        console.print(f"wrote {out}")
    if plot_path is not None:
        from ..files import atomic_write

        atomic_write(plot_path, lambda temp: plot_scaling(results, temp))
        console.print(f"wrote {plot_path}")


@bench_app.command("targets")
def targets(
    batch: Annotated[int, typer.Option(help="Training batch of the default configuration.")] = 32,
    train_steps: Annotated[int, typer.Option(help="Timed training steps of each model (alternating).")] = 20,
    latency_calls: Annotated[int, typer.Option(help="Timed batch-1 inference calls.")] = 200,
    long_calls: Annotated[int, typer.Option(help="Timed seq_len-8760 eval forwards per precision (0 skips).")] = 3,
    threads: Threads = 1, out: Out = None, force: ForceOpt = False,
) -> None:
    """Default configuration (seq_len 168): training step vs the same-size SDPA encoder, batch-1 latency."""
    _check_outputs(force, out)
    if min(batch, train_steps, latency_calls) < 1 or long_calls < 0:
        raise ConfigError(f"--batch {batch} / --train-steps {train_steps} / --latency-calls {latency_calls} / "
                          f"--long-calls {long_calls}: each must be at least 1 (--long-calls at least 0)")
    _check_threads(threads)
    console = Console(width=200)
    before = machine_info()
    console.print(f"machine: {before}")
    from ..bench.targets import TargetSpec, run_targets  # imports torch: only when the command runs

    result = run_targets(TargetSpec(batch=batch, train_steps=train_steps, latency_calls=latency_calls,
                                    long_calls=long_calls, threads=threads))
    train, infer = result["train"], result["inference"]
    table = Table(title="Default configuration (seq_len 168): speed targets")
    for name in ("measure", "value", "target", "met"):
        table.add_column(name, justify="right")
    table.add_row(f"training step, batch {batch}: ours / sdpa (median)",
                  f"{train['ours_s'] * 1e3:,.1f} ms / {train['sdpa_s'] * 1e3:,.1f} ms", "", "")
    table.add_row("sdpa time ÷ ours (median of paired steps)", f"{train['sdpa_over_ours']:.2f}×",
                  f">= {train['target']:.1f}×", "yes" if train["met"] else "no")
    table.add_row(f"  ours keeps {train['stored_layers']} layers' activations; with every layer recomputed "
                  "(activation_budget_mb=0)",
                  f"{train['ours_recompute_s'] * 1e3:,.1f} ms, {train['sdpa_over_ours_recompute']:.2f}×", "", "")
    table.add_row("inference, batch 1: p50 (p90)", f"{infer['p50_ms']:.2f} ms ({infer['p90_ms']:.2f} ms)",
                  f"< {infer['target_ms']:.0f} ms", "yes" if infer["met"] else "no")
    long = result["long_forward"]
    if long is not None:
        table.add_row("seq_len-8760 eval forward, batch 1: float32 / bfloat16 autocast",
                      f"{long['float32_s']:.2f} s / {long['bfloat16_s']:.2f} s",
                      f"< {long['target_s']:.0f} s", "yes" if long["met"] else "no")
    console.print(table)
    if out is not None:
        write_output(out, json.dumps({"command": "targets", **result,
                                      "machine": {"before": before, "after": machine_info()}}, indent=2))
        console.print(f"wrote {out}")


def _check_outputs(force: bool, *paths: Path | None) -> None:
    """Before the benchmark runs (minutes to hours): no result file is replaced unasked, none through a link."""
    for path in paths:
        check_out(path, force)


def register(app: typer.Typer) -> None:
    """Nothing to add at the top level: the commands live on `bench_app`, which `cli.bench` registers."""
    del app

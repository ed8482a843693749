"""`reformer bench attention`: time and memory of the attention kernels against sequence length."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ..bench.attention import KERNELS, BenchSpec, Measurement, run_suite
from ..errors import ConfigError
from .common import App, ForceOpt, check_out, write_output

__all__ = ["attention_table", "register"]

bench_app = App(help="Benchmarks: attention kernels and models, time and peak memory.", no_args_is_help=True)


def _fmt_time(m: Measurement | None) -> str:
    if m is None:
        return "-"
    return f"{m.seconds * 1000:,.0f} ms" if m.seconds is not None else f"skipped ({m.skipped})"


def _fmt_cell(m: Measurement | None) -> str:
    if m is None:
        return "-"
    if m.seconds is None:
        return "skipped" if m.skipped and m.skipped.startswith("needs") else "failed"
    return f"{m.seconds * 1000:,.0f} ms / {m.peak_mb:,.0f} MB"


def attention_table(results: list[Measurement], lengths: list[int]) -> Table:
    """The README's table: time / memory per kernel, and LSH's time relative to naive full attention."""
    table = Table(title="Attention forward+backward: median time / peak RSS growth")
    table.add_column("L", justify="right", no_wrap=True)
    for kernel in KERNELS:
        table.add_column(kernel, justify="right", no_wrap=True)
    table.add_column("LSH/naive", justify="right", no_wrap=True)
    table.add_column("speed-up", justify="right", no_wrap=True)
    by_key = {(m.kernel, m.length): m for m in results}
    for length in lengths:
        row = [str(length)] + [_fmt_cell(by_key.get((kernel, length))) for kernel in KERNELS]
        naive, lsh = by_key.get(("naive", length)), by_key.get(("lsh", length))
        if naive and lsh and naive.seconds and lsh.seconds:
            row += [f"{lsh.seconds / naive.seconds:.0%}", f"{naive.seconds / lsh.seconds:.1f}x"]
        elif lsh and lsh.seconds:
            row += ["naive skipped", "∞"]
        else:
            row += ["-", "-"]
        table.add_row(*row)
    return table


@bench_app.command("attention")
def attention(
    lengths: Annotated[str, typer.Option(help="Comma-separated sequence lengths.")] = "512,2048,8192,32768",
    heads: Annotated[int, typer.Option(help="Attention heads.")] = 4,
    head_dim: Annotated[int, typer.Option(help="Width of one head.")] = 32,
    chunk_size: Annotated[int, typer.Option(help="Chunk size (LSH and local).")] = 64,
    rounds: Annotated[int, typer.Option(help="LSH hash rounds.")] = 4,
    batch: Annotated[int, typer.Option(help="Batch size.")] = 1,
    repeats: Annotated[int, typer.Option(help="Timed repetitions per cell (median reported).")] = 3,
    budget_gb: Annotated[float, typer.Option(help="Skip kernels estimated to need more memory.")] = 8.0,
    kernels: Annotated[str, typer.Option(help="Comma-separated subset of naive,sdpa,local,lsh.")] = ",".join(KERNELS),
    out: Annotated[Path | None, typer.Option(help="Also write the results as JSON here.")] = None,
    force: ForceOpt = False,
) -> None:
    """Forward+backward time and peak memory of naive full, SDPA, local and LSH attention."""
    check_out(out, force)  # before the benchmark runs, not after it
    try:
        length_list = [int(x) for x in lengths.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--lengths {lengths!r} is not a comma-separated list of integers, "
                          "e.g. --lengths 512,2048") from None
    if not length_list or min(length_list) < 1:
        raise ConfigError(f"--lengths {lengths!r}: give positive sequence lengths, e.g. 512,2048")
    chosen = tuple(k.strip() for k in kernels.split(",") if k.strip())
    if not chosen or set(chosen) - set(KERNELS):
        raise ConfigError(f"--kernels {kernels!r}: choose from {','.join(KERNELS)}")
    spec = BenchSpec(batch=batch, heads=heads, head_dim=head_dim, chunk_size=chunk_size,
                     n_hash_rounds=rounds, repeats=repeats)
    console = Console(width=160)
    console.print(f"spec: {spec}; each cell in its own subprocess")
    results = run_suite(length_list, spec, int(budget_gb * 2**30), kernels=chosen,
                        progress=lambda m: console.print(f"  {m.kernel:>5} L={m.length:<6} {_fmt_time(m)}"))
    console.print(attention_table(results, length_list))
    if out is not None:
        write_output(out, json.dumps({"spec": spec.__dict__, "results": [m.__dict__ for m in results]}, indent=2))
        console.print(f"wrote {out}")


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")


@bench_app.command("backtest")
def backtest_speed(
    bars: Annotated[int, typer.Option(help="Hourly bars per symbol.")] = 50_000,
    symbols: Annotated[int, typer.Option(help="Symbols in the portfolio case.")] = 10,
    repeats: Annotated[int, typer.Option(help="Timed repetitions per case (median reported).")] = 3,
    out: Annotated[Path | None, typer.Option(help="Also write the results as JSON here.")] = None,
    force: ForceOpt = False,
) -> None:
    """Simulation speed of the backtest engine: one symbol and a portfolio, beside a vectorised reference."""
    from ..bench.backtest import run_backtest_bench

    check_out(out, force)
    if bars < 100 or symbols < 1 or repeats < 1:
        raise ConfigError("--bars must be >= 100, --symbols and --repeats >= 1")
    result = run_backtest_bench(bars, symbols, repeats)
    table = Table(title=f"backtest engine, {bars:,} hourly bars per symbol (median of {repeats})")
    for column in ("case", "seconds", "bars / s", "target"):
        table.add_column(column)
    table.add_row("1 symbol", f"{result['single_s']:.3f}", f"{result['single_bars_per_s']:,.0f}",
                  f"< {result['single_target_s']:g} s")
    table.add_row(f"{symbols} symbols", f"{result['portfolio_s']:.3f}", f"{result['portfolio_bars_per_s']:,.0f}",
                  f"< {result['portfolio_target_s']:g} s")
    table.add_row("vectorised reference", f"{result['vectorised_reference_s']:.4f}", "", "")
    Console(width=120).print(table)
    if out is not None:
        write_output(out, json.dumps(result, indent=2))


@bench_app.command("paper")
def paper_latency(
    closes: Annotated[int, typer.Option(help="Consecutive candle closes to time.")] = 40,
    period: Annotated[float, typer.Option(help="Wall seconds between two closes of the replayed market.")] = 0.5,
    out: Annotated[Path | None, typer.Option(help="Also write the results as JSON here.")] = None,
    force: ForceOpt = False,
) -> None:
    """A paper trader's latency at the default configuration: a close on the stream to its candle committed."""
    from ..bench.paper import run_paper_bench

    check_out(out, force)
    if closes < 2 or not period > 0:
        raise ConfigError("--closes must be >= 2 and --period > 0 seconds")
    result = run_paper_bench(closes, period)
    table = Table(title=f"paper trading, {result['closes']} closes, default configuration")
    for column in ("p50", "p90", "max", "target"):
        table.add_column(column)
    table.add_row(*(f"{1000 * result[k]:.1f} ms" for k in ("p50_s", "p90_s", "max_s")),
                  f"p50 < {1000 * result['target_p50_s']:.0f} ms")
    Console(width=120).print(table)
    if out is not None:
        write_output(out, json.dumps(result, indent=2))

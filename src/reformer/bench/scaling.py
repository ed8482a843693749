"""`reformer bench attention-scaling`: one LSH attention layer (`SharedQKAttention`), forward+backward, over L.

Each (length, repeat) is its own subprocess (`python -m reformer.bench.scaling PAYLOAD`) with the same
protocol, memory watchdog and step timeout as `reformer.bench.compare`. The results go to JSON and to a log-log
plot of time and peak memory against L, with the fitted exponents (memory ~ L^1 is the claim to check).

Shape legend: b batch, l length, d model width.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .attention import Measurement, n_buckets_for
from .compare import CompareSpec, Run, measure_run, predict_skip, summarise, time_steps
from .shape import ModelShape

__all__ = ["DEFAULT_LENGTHS", "loglog_slope", "plot_scaling", "run_scaling"]

DEFAULT_LENGTHS = (2048, 4096, 8192, 16384, 32768, 65536, 131072)


def loglog_slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of log(y) against log(x): the exponent k in y ~ x^k; None for < 2 usable points."""
    usable = [(math.log(x), math.log(y)) for x, y in points if x > 0 and y > 0]
    if len(usable) < 2:
        return None
    mx = statistics.fmean(p[0] for p in usable)
    my = statistics.fmean(p[1] for p in usable)
    sxx = sum((p[0] - mx) ** 2 for p in usable)
    if sxx == 0:
        return None
    return sum((p[0] - mx) * (p[1] - my) for p in usable) / sxx


def run_scaling(lengths: list[int], spec: CompareSpec,
                progress: Callable[[Run], None] | None = None) -> tuple[list[Run], list[Measurement]]:
    """The LSH attention layer at every length, `spec.repeats` runs each; returns (runs, summary)."""
    runs: list[Run] = []
    done: list[Measurement] = []
    for length in lengths:
        at_length: list[Run] = []
        for repeat in range(spec.repeats):
            reason = predict_skip("lsh", length, done, spec)
            if reason is None and at_length and at_length[-1].skipped is not None:
                reason = at_length[-1].skipped
            run = Run("lsh", length, repeat, skipped=reason)
            if reason is None:
                measure_run(run, "reformer.bench.scaling", spec)
            at_length.append(run)
            if progress is not None:
                progress(run)
        runs += at_length
        done += summarise(at_length)
    return runs, done


def plot_scaling(results: list[Measurement], path: Path, title: str = "LSH attention layer, forward+backward") -> None:
    """Log-log plot of median step time and peak memory against L, with L and L² reference lines, to `path`."""
    from reformer.figures import pyplot, write_png

    plt = pyplot()
    ok = sorted((m for m in results if m.seconds is not None and m.peak_mb), key=lambda m: m.length)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    series = (("step time (s)", [m.seconds or 0.0 for m in ok]),
              ("peak RSS growth (MB)", [m.peak_mb or 0.0 for m in ok]))
    for ax, (label, ys) in zip(axes, series, strict=True):
        xs = [m.length for m in ok]
        slope = loglog_slope(list(zip(xs, ys, strict=True)))
        ax.loglog(xs, ys, "o-", base=2, label=f"measured (slope {slope:.2f})" if slope is not None else "measured")
        if xs:
            ax.loglog(xs, [ys[0] * x / xs[0] for x in xs], "--", color="grey", base=2, label="∝ L (from the first)")
            ax.loglog(xs, [ys[-1] * (x / xs[-1]) ** 2 for x in xs], ":", color="grey", base=2,
                      label="∝ L² (through the last)")
        ax.set_xlabel("sequence length L")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    write_png(fig, path, dpi=110)


def _main(args: dict[str, Any]) -> None:
    import torch

    from ..model import AttentionType, ReformerConfig, SharedQKAttention

    if args.get("threads"):
        torch.set_num_threads(int(args["threads"]))
    shape, length = ModelShape(**args["shape"]), int(args["length"])
    config = ReformerConfig(seq_len=length, d_model=shape.d_model, n_heads=shape.n_heads, n_layers=1,
                            n_hash_rounds=shape.n_hash_rounds, chunk_size=shape.chunk_size,
                            n_buckets=n_buckets_for(length, shape.chunk_size), attention_type=AttentionType.LSH,
                            dropout=0.0, seed=int(args["seed"]))
    layer = SharedQKAttention(config, 0).train()
    x = torch.randn(shape.batch, length, shape.d_model, generator=torch.Generator().manual_seed(config.seed))
    x.requires_grad_(True)  # (b, l, d)
    params = list(layer.parameters())

    def step() -> None:
        layer(x).out.sum().backward()
        x.grad = None
        for p in params:
            p.grad = None

    result = time_steps(step, int(args["steps"]), emit=lambda line: print(line, flush=True))
    result["threads"] = torch.get_num_threads()
    print("result " + json.dumps(result), flush=True)


if __name__ == "__main__":
    from ..runtime import tune_malloc

    tune_malloc()  # every implementation a worker runs gets the same allocator setting as the CLI
    _main(json.loads(sys.argv[1]))

"""Attention benchmark: forward+backward time and peak memory of naive full, SDPA full, local and LSH attention.

Each (kernel, length) runs in its own subprocess so that its peak resident memory (RSS) is its own; the
memory reported is the growth of the peak RSS over the process's resident size just before the measurement.
Kernels whose estimated memory exceeds the budget are skipped, and the table says so.

Shape legend: b batch, h heads, l length, e head dim.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["KERNELS", "BenchSpec", "Measurement", "estimate_bytes", "measure", "run_suite"]

KERNELS = ("naive", "sdpa", "local", "lsh")


@dataclass(frozen=True)
class BenchSpec:
    """Dimensions shared by every kernel in one benchmark run."""

    batch: int = 1
    heads: int = 4
    head_dim: int = 32
    chunk_size: int = 64
    n_hash_rounds: int = 4
    repeats: int = 3
    threads: int = 0
    """torch threads in the worker; 0 = torch's default (all cores)."""


@dataclass
class Measurement:
    kernel: str
    length: int
    seconds: float | None = None
    peak_mb: float | None = None
    skipped: str | None = None
    times: list[float] = field(default_factory=list)


def n_buckets_for(length: int, chunk_size: int) -> int:
    """Buckets per round so that an average bucket is half a chunk (Reformer sec. 2; trax's default)."""
    return max(2, 2 * (length // chunk_size))


def estimate_bytes(kernel: str, length: int, spec: BenchSpec) -> int:
    """Rough peak bytes of one forward+backward (float32); used only to skip what cannot fit."""
    rows = spec.batch * spec.heads
    linear = rows * length * spec.head_dim * 4 * 12
    if kernel == "naive":
        return rows * length * length * 4 * 4 + linear
    if kernel == "sdpa":
        return linear * 2
    if kernel == "local":
        return rows * length * 3 * spec.chunk_size * 4 * 4 + linear
    return spec.n_hash_rounds * rows * length * 2 * spec.chunk_size * 4 * 5 + spec.n_hash_rounds * linear


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize()


def _worker(kernel: str, length: int, spec: BenchSpec) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    from ..model.kernels import local_attention
    from ..model.lsh import hash_vectors, lsh_attention, rotation_columns

    if spec.threads:
        torch.set_num_threads(spec.threads)
    gen = torch.Generator().manual_seed(0)
    b, h, e = spec.batch, spec.heads, spec.head_dim
    padded = -(-length // spec.chunk_size) * spec.chunk_size
    q = torch.randn(b, h, padded, e, generator=gen).requires_grad_()
    k = torch.randn(b, h, padded, e, generator=gen).requires_grad_()
    v = torch.randn(b, h, padded, e, generator=gen).requires_grad_()
    n_buckets = n_buckets_for(padded, spec.chunk_size)
    rotations = torch.randn(h, e, spec.n_hash_rounds, rotation_columns(n_buckets), generator=gen)

    def step() -> None:
        if kernel == "naive":
            scores = (q @ k.transpose(-1, -2)) * e**-0.5  # (b, h, l, l) materialised
            out = torch.softmax(scores, dim=-1) @ v
        elif kernel == "sdpa":
            out = F.scaled_dot_product_attention(q, k, v)
        elif kernel == "local":
            out, _ = local_attention(q, v, spec.chunk_size)
        else:
            buckets = hash_vectors(q, rotations, n_buckets, None)
            out, _ = lsh_attention(q, v, buckets, spec.chunk_size)
        out.sum().backward()
        q.grad = k.grad = v.grad = None

    from .compare import _peak_rss_bytes, _settle_and_reset_peak

    step()  # warm-up (allocator, kernels)
    # as `compare.time_steps`: freed heap back to the OS and the peak counter restarted. Without it the timed
    # steps would show no growth at all (`tune_malloc` keeps the warm-up's freed memory mapped), and `ru_maxrss`
    # also carries the parent's peak copied in at fork
    _settle_and_reset_peak()
    before = _rss_bytes()
    times = []
    for _ in range(spec.repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    peak = _peak_rss_bytes() or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"times": times, "peak_mb": max(0, peak - before) / 2**20}


def measure(kernel: str, length: int, spec: BenchSpec, budget_bytes: int, timeout: float = 1800) -> Measurement:
    """Run one (kernel, length) in a fresh subprocess; skip it when it would exceed the memory budget."""
    needed = estimate_bytes(kernel, length, spec)
    if needed > budget_bytes:
        return Measurement(kernel, length, skipped=f"needs ~{needed / 2**30:.0f} GB > budget")
    payload = json.dumps({"kernel": kernel, "length": length, "spec": asdict(spec)})
    proc = subprocess.run([sys.executable, "-m", "reformer.bench.attention", payload],
                          capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        reason = "out of memory" if proc.returncode in (-9, 137) else proc.stderr.strip().splitlines()[-1:]
        return Measurement(kernel, length, skipped=f"failed: {reason}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return Measurement(kernel, length, seconds=statistics.median(result["times"]), peak_mb=result["peak_mb"],
                       times=result["times"])


def run_suite(lengths: list[int], spec: BenchSpec, budget_bytes: int,
              kernels: tuple[str, ...] = KERNELS, progress: Any = None) -> list[Measurement]:
    """Every kernel at every length, interleaved by length; `progress(m)` is called after each."""
    results = []
    for length in lengths:
        for kernel in kernels:
            m = measure(kernel, length, spec, budget_bytes)
            results.append(m)
            if progress is not None:
                progress(m)
    return results


if __name__ == "__main__":
    from ..runtime import tune_malloc

    tune_malloc()  # every implementation a worker runs gets the same allocator setting as the CLI
    args = json.loads(sys.argv[1])
    print(json.dumps(_worker(args["kernel"], args["length"], BenchSpec(**args["spec"]))))

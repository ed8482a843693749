"""In-process A/B timing for the per-step benchmark scripts (`benchmarks/compare/ab_*.py`): variants of one
workload called in turn, round after round, so a shared machine's drift falls on all of them alike."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from ..model import ReformerConfig

__all__ = ["alternate", "report", "training_step"]


def alternate(variants: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Seconds of each variant's calls: one warm-up call each, then `rounds` rounds of one call per variant."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for fn in variants.values():
        fn()  # warm-up
    for _ in range(rounds):
        for name, fn in variants.items():
            began = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - began)
    return times


def report(label: str, times: dict[str, list[float]], baseline: str, candidate: str) -> None:
    """Print every time and the ratio of medians baseline / candidate (above 1: the candidate is faster)."""
    shown = {name: [round(t, 3) for t in values] for name, values in times.items()}
    ratio = statistics.median(times[baseline]) / statistics.median(times[candidate])
    print(f"{label}: {shown}; {baseline} / {candidate} = {ratio:.3f}x", flush=True)


def training_step(length: str, config: ReformerConfig | None = None) -> Callable[[], None]:
    """One training step (forward, loss, backward; gradients dropped): of `config` (default: the one-year
    configuration, `targets.LONG_CONFIG`) at batch 1 when `length` is "one-year", else of the `bench compare`
    shape at L = int(length)."""
    import torch

    from ..model import ReformerModel
    from .peers import build_step
    from .shape import ModelShape
    from .targets import LONG_CONFIG

    if length != "one-year":
        return build_step("ours", ModelShape(), int(length))
    config = config or LONG_CONFIG
    model = ReformerModel(config).train()
    x = torch.randn(1, config.seq_len, config.n_features)  # (1, l, f)

    def step() -> None:
        model(x).pow(2).sum().backward()
        for p in model.parameters():
            p.grad = None

    return step

"""In-process A/B timing for the per-step benchmark scripts (`benchmarks/compare/ab_*.py`): variants of one
workload called in turn, round after round, so a shared machine's drift falls on all of them alike."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from ..model import ReformerConfig

__all__ = ["alternate", "report", "swap_main", "training_step"]


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


def _installed(install: Callable[[], None], fn: Callable[[], object]) -> Callable[[], object]:
    def go() -> object:
        install()
        return fn()
    return go


def _one_year_forwards(variants: dict[str, Callable[[], None]], rounds: int) -> None:
    """The seq_len-8760 eval forward at batch 1, float32 then bfloat16 autocast: outputs compared, then timed."""
    import torch

    from ..model import ReformerModel
    from .targets import LONG_CONFIG

    model = ReformerModel(LONG_CONFIG).eval()
    x = torch.randn(1, LONG_CONFIG.seq_len, LONG_CONFIG.n_features)  # (1, l, f)
    (baseline, first), (candidate, second) = variants.items()
    for bf16 in (False, True):
        def run(bf16: bool = bf16) -> torch.Tensor:
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                return model(x).float()

        difference = float((_installed(first, run)() - _installed(second, run)()).abs().max())  # type: ignore[operator]
        times = alternate({name: _installed(install, run) for name, install in variants.items()}, rounds)
        report(f"one-year eval forward, {'bfloat16' if bf16 else 'float32'}, {torch.get_num_threads()} thread(s), "
               f"output difference {difference:.1e}", times, baseline, candidate)


def swap_main(doc: str, variants: dict[str, Callable[[], None]]) -> None:
    """Command line of a two-variant A/B script: `forward` (the one-year eval forward, float32 and bfloat16) or
    `train --length N|one-year` (a training step). `variants`: baseline then candidate, each a function that
    installs that variant (swaps module functions or constants) before its every call."""
    import argparse

    import torch

    from ..runtime import tune_malloc

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["forward", "train"])
    parser.add_argument("--length", default="8192", help="train: a bench-compare length, or one-year")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=4, help="timed calls per variant, alternating")
    args = parser.parse_args()
    tune_malloc()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.what == "forward":
        _one_year_forwards(variants, args.rounds)
        return
    step = training_step(args.length)
    baseline, candidate = variants
    times = alternate({name: _installed(install, step) for name, install in variants.items()}, args.rounds)
    report(f"training step, L={args.length}, {torch.get_num_threads()} thread(s)", times, baseline, candidate)

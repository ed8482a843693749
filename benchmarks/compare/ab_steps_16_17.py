"""In-process A/B of steps 16 and 17 (README, per-step history): the same model, each variant timed in turn.

    THP_MEM_ALLOC_ENABLE=1 .venv/bin/python benchmarks/compare/ab_steps_16_17.py keep --length 8192 --threads 1
    THP_MEM_ALLOC_ENABLE=1 .venv/bin/python benchmarks/compare/ab_steps_16_17.py keep --length one-year --threads 2
    THP_MEM_ALLOC_ENABLE=1 .venv/bin/python benchmarks/compare/ab_steps_16_17.py last --threads 2

`keep` (step 16): training steps with the probabilities a recomputed layer may keep passed to the reversible stack
(what the activation budget leaves, as `ReformerModel` does) or zeroed. `--length N` is the `bench compare` shape at
L = N; `one-year` is the seq_len-8760 configuration. `--budget-mb` overrides the activation budget.
`last` (step 17): the one-year eval forward, float32 and bfloat16 autocast, with the last layer at the read
position only (`pooling="last"`) against every position (`pooling="mean"`: the same layers, a mean instead of an
index at the end).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from reformer.runtime import tune_malloc


def _alternate(variants: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in variants}
    for fn in variants.values():
        fn()  # warm-up
    for _ in range(rounds):
        for name, fn in variants.items():
            began = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - began)
    return times


def _report(label: str, times: dict[str, list[float]], baseline: str, candidate: str) -> None:
    shown = {name: [round(t, 3) for t in values] for name, values in times.items()}
    ratio = statistics.median(times[baseline]) / statistics.median(times[candidate])
    print(f"{label}: {shown}; {baseline} / {candidate} = {ratio:.3f}x")


def keep(length: str, rounds: int, budget_mb: float | None) -> None:
    import reformer.model.reformer as reformer_module
    from reformer.bench.peers import build_step
    from reformer.bench.shape import ModelShape
    from reformer.bench.targets import LONG_CONFIG
    from reformer.model import ReformerModel

    real = reformer_module.run_reversible
    passing = {"on": True}

    def patched(layers, x, valid, keep_bytes=0):  # type: ignore[no-untyped-def]
        return real(layers, x, valid, keep_bytes if passing["on"] else 0)

    reformer_module.run_reversible = patched  # type: ignore[assignment]
    if length == "one-year":
        config = LONG_CONFIG if budget_mb is None else LONG_CONFIG.replace(activation_budget_mb=budget_mb)
        model = ReformerModel(config).train()
        x = torch.randn(1, config.seq_len, config.n_features)

        def step() -> None:
            model(x).pow(2).sum().backward()
            for p in model.parameters():
                p.grad = None
    else:
        if budget_mb is not None:
            raise SystemExit("--budget-mb applies to --length one-year only (bench compare builds its own config)")
        step = build_step("ours", ModelShape(), int(length))

    def run(on: bool) -> Callable[[], None]:
        def go() -> None:
            passing["on"] = on
            step()
        return go

    times = _alternate({"zeroed": run(False), "kept": run(True)}, rounds)
    _report(f"training step, L={length}, {torch.get_num_threads()} thread(s)", times, "zeroed", "kept")


def last(rounds: int) -> None:
    from reformer.bench.targets import LONG_CONFIG
    from reformer.model import ReformerModel

    model = ReformerModel(LONG_CONFIG).eval()
    x = torch.randn(1, LONG_CONFIG.seq_len, LONG_CONFIG.n_features)
    for bf16 in (False, True):
        def forward(pooling: str, bf16: bool = bf16) -> Callable[[], None]:
            def go() -> None:
                model.config = LONG_CONFIG.replace(pooling=pooling)
                with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    model(x)
            return go

        times = _alternate({"every position": forward("mean"), "read position": forward("last")}, rounds)
        _report(f"one-year eval forward, {'bfloat16' if bf16 else 'float32'}, {torch.get_num_threads()} thread(s)",
                times, "every position", "read position")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["keep", "last"])
    parser.add_argument("--length", default="8192", help="keep: a bench-compare length, or one-year")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=4, help="timed calls per variant, alternating")
    parser.add_argument("--budget-mb", type=float, default=None)
    args = parser.parse_args()
    tune_malloc()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.what == "keep":
        keep(args.length, args.rounds, args.budget_mb)
    else:
        last(args.rounds)


if __name__ == "__main__":
    main()

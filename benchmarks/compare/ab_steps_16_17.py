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
from collections.abc import Callable

import torch

from reformer.bench.ab import alternate, report, training_step
from reformer.runtime import tune_malloc


def keep(length: str, rounds: int, budget_mb: float | None) -> None:
    import reformer.model.reformer as reformer_module
    from reformer.bench.targets import LONG_CONFIG

    real = reformer_module.run_reversible
    passing = {"on": True}

    def patched(layers, x, valid, keep_bytes=0):  # type: ignore[no-untyped-def]
        return real(layers, x, valid, keep_bytes if passing["on"] else 0)

    reformer_module.run_reversible = patched  # type: ignore[assignment]
    if budget_mb is not None and length != "one-year":
        raise SystemExit("--budget-mb applies to --length one-year only (bench compare builds its own config)")
    step = training_step(length, None if budget_mb is None else LONG_CONFIG.replace(activation_budget_mb=budget_mb))

    def run(on: bool) -> Callable[[], None]:
        def go() -> None:
            passing["on"] = on
            step()
        return go

    times = alternate({"zeroed": run(False), "kept": run(True)}, rounds)
    report(f"training step, L={length}, {torch.get_num_threads()} thread(s)", times, "zeroed", "kept")


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

        times = alternate({"every position": forward("mean"), "read position": forward("last")}, rounds)
        report(f"one-year eval forward, {'bfloat16' if bf16 else 'float32'}, {torch.get_num_threads()} thread(s)",
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

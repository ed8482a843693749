"""In-process A/B of step 20 (README, per-step history): the attention weights by `exp2` or by `exp` on the CPU.

    THP_MEM_ALLOC_ENABLE=1 .venv/bin/python benchmarks/compare/ab_exp2.py forward --threads 2
    THP_MEM_ALLOC_ENABLE=1 .venv/bin/python benchmarks/compare/ab_exp2.py train --length one-year --threads 2
    THP_MEM_ALLOC_ENABLE=1 .venv/bin/python benchmarks/compare/ab_exp2.py train --length 8192 --threads 1

`forward`: the seq_len-8760 eval forward (float32, then bfloat16 autocast). `train`: one training step of the
one-year configuration or of the `bench compare` shape at L = N. The two variants alternate call by call in one
process (`chunked._EXP2_ON_CPU`), so a shared machine's drift falls on both; the outputs of the two are compared too.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from reformer.model import chunked
from reformer.runtime import tune_malloc


def _variant(exp2: bool, fn: Callable[[], object]) -> Callable[[], object]:
    def go() -> object:
        chunked._EXP2_ON_CPU = exp2
        return fn()
    return go


def _alternate(fn: Callable[[], object], rounds: int) -> dict[str, list[float]]:
    variants = {"exp": _variant(False, fn), "exp2": _variant(True, fn)}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for go in variants.values():
        go()  # warm-up
    for _ in range(rounds):
        for name, go in variants.items():
            began = time.perf_counter()
            go()
            times[name].append(time.perf_counter() - began)
    return times


def _report(label: str, times: dict[str, list[float]]) -> None:
    shown = {name: [round(t, 3) for t in values] for name, values in times.items()}
    ratio = statistics.median(times["exp"]) / statistics.median(times["exp2"])
    print(f"{label}: {shown}; exp / exp2 = {ratio:.3f}x", flush=True)


def forward(rounds: int) -> None:
    from reformer.bench.targets import LONG_CONFIG
    from reformer.model import ReformerModel

    model = ReformerModel(LONG_CONFIG).eval()
    x = torch.randn(1, LONG_CONFIG.seq_len, LONG_CONFIG.n_features)
    for bf16 in (False, True):
        def run(bf16: bool = bf16) -> torch.Tensor:
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                return model(x).float()

        outputs = [_variant(flag, run)() for flag in (False, True)]
        difference = float((outputs[0] - outputs[1]).abs().max())  # type: ignore[operator]
        _report(f"one-year eval forward, {'bfloat16' if bf16 else 'float32'}, {torch.get_num_threads()} thread(s), "
                f"output difference {difference:.1e}", _alternate(run, rounds))


def train(length: str, rounds: int) -> None:
    from reformer.bench.peers import build_step
    from reformer.bench.shape import ModelShape
    from reformer.bench.targets import LONG_CONFIG
    from reformer.model import ReformerModel

    if length == "one-year":
        model = ReformerModel(LONG_CONFIG).train()
        x = torch.randn(1, LONG_CONFIG.seq_len, LONG_CONFIG.n_features)

        def step() -> None:
            model(x).pow(2).sum().backward()
            for p in model.parameters():
                p.grad = None
    else:
        step = build_step("ours", ModelShape(), int(length))
    _report(f"training step, L={length}, {torch.get_num_threads()} thread(s)", _alternate(step, rounds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["forward", "train"])
    parser.add_argument("--length", default="8192", help="train: a bench-compare length, or one-year")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=4, help="timed calls per variant, alternating")
    args = parser.parse_args()
    tune_malloc()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.what == "forward":
        forward(args.rounds)
    else:
        train(args.length, args.rounds)


if __name__ == "__main__":
    main()

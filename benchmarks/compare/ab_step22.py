"""In-process A/B of step 22 (README, per-step history): the attention weights' exponent in one pass, CPU.

    THP_MEM_ALLOC_ENABLE=1 .venv/bin/python benchmarks/compare/ab_step22.py forward --threads 2
    THP_MEM_ALLOC_ENABLE=1 .venv/bin/python benchmarks/compare/ab_step22.py train --length one-year --threads 2
    THP_MEM_ALLOC_ENABLE=1 .venv/bin/python benchmarks/compare/ab_step22.py train --length 8192 --threads 1

Step 22: the exponent x log2 e - m log2 e of the attention weights is formed in one pass and `exp2` runs
unclamped (`chunked._exp_shifted_`; before, step 20: subtract, clamp, multiply, `exp2`). The baseline swaps the
step-20 function back in; the variants alternate call by call in one process, and their outputs are compared.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch

from reformer.bench.ab import alternate, report, training_step
from reformer.model import chunked
from reformer.runtime import tune_malloc


def _exp_shifted_step20_(scores: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """`chunked._exp_shifted_` as step 20 left it (CPU branch)."""
    return scores.sub_(shift).clamp_(min=chunked._EXP_FLOOR).mul_(chunked._LOG2E).exp2_()


_STEP22 = chunked._exp_shifted_


def _variant(new: bool, fn: Callable[[], object]) -> Callable[[], object]:
    def go() -> object:
        chunked._exp_shifted_ = _STEP22 if new else _exp_shifted_step20_
        return fn()
    return go


def _alternate(fn: Callable[[], object], rounds: int) -> dict[str, list[float]]:
    return alternate({"step21": _variant(False, fn), "step22": _variant(True, fn)}, rounds)


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
        report(f"one-year eval forward, {'bfloat16' if bf16 else 'float32'}, {torch.get_num_threads()} thread(s), "
               f"output difference {difference:.1e}", _alternate(run, rounds), "step21", "step22")


def train(length: str, rounds: int) -> None:
    step = training_step(length)
    report(f"training step, L={length}, {torch.get_num_threads()} thread(s)", _alternate(step, rounds),
           "step21", "step22")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["forward", "train"])
    parser.add_argument("--length", default="8192", help="train: a bench-compare length, or one-year")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5, help="timed calls per variant, alternating")
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

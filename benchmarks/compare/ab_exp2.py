"""In-process A/B of step 20 (README, per-step history): the attention weights by `exp2` or by `exp` on the CPU.

    THP_MEM_ALLOC_ENABLE=1 .venv/bin/python benchmarks/compare/ab_exp2.py forward --threads 2
    THP_MEM_ALLOC_ENABLE=1 .venv/bin/python benchmarks/compare/ab_exp2.py train --length one-year --threads 2
    THP_MEM_ALLOC_ENABLE=1 .venv/bin/python benchmarks/compare/ab_exp2.py train --length 8192 --threads 1

`forward`: the seq_len-8760 eval forward (float32, then bfloat16 autocast). `train`: one training step of the
one-year configuration or of the `bench compare` shape at L = N. The two variants alternate call by call in one
process (the baseline swaps `chunked._exp_shifted_` for its `exp` version), so a shared machine's drift falls
on both; the outputs of the two are compared too.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch

from reformer.bench.ab import alternate, report, training_step
from reformer.model import chunked
from reformer.runtime import tune_malloc


def _exp_shifted_with_exp_(scores: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Step 20's baseline: `chunked._exp_shifted_` as it was, with `exp`."""
    return scores.sub_(shift).clamp_(min=chunked._EXP_FLOOR).exp_()


_WITH_EXP2 = chunked._exp_shifted_


def _variant(exp2: bool, fn: Callable[[], object]) -> Callable[[], object]:
    def go() -> object:
        chunked._exp_shifted_ = _WITH_EXP2 if exp2 else _exp_shifted_with_exp_
        return fn()
    return go


def _alternate(fn: Callable[[], object], rounds: int) -> dict[str, list[float]]:
    return alternate({"exp": _variant(False, fn), "exp2": _variant(True, fn)}, rounds)


def _report(label: str, times: dict[str, list[float]]) -> None:
    report(label, times, "exp", "exp2")


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
    step = training_step(length)
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

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

from collections.abc import Callable

import torch

from reformer.bench.ab import swap_main
from reformer.model import chunked


def _exp_shifted_with_exp_(scores: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Step 20's baseline: `chunked._exp_shifted_` as it was, with `exp`."""
    return scores.sub_(shift).clamp_(min=chunked._EXP_FLOOR).exp_()


def exp_shifted_step20_(scores: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Step 20 itself (step 22 has since fused the shift and the multiply into one pass)."""
    return scores.sub_(shift).clamp_(min=chunked._EXP_FLOOR).mul_(chunked._LOG2E).exp2_()


def install(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Callable[[], None]:
    def go() -> None:
        setattr(chunked, "_exp_shifted_", fn)  # noqa: B010 - a module attribute swapped for the A/B
    return go


if __name__ == "__main__":
    swap_main(__doc__ or "", {"exp": install(_exp_shifted_with_exp_), "exp2": install(exp_shifted_step20_)})

"""In-process A/B of step 23 (README, per-step history): the hash's signed argmax by a bool x int8 product, CPU.

    THP_MEM_ALLOC_ENABLE=1 .venv/bin/python benchmarks/compare/ab_step23.py forward --threads 2 --rounds 8
    THP_MEM_ALLOC_ENABLE=1 .venv/bin/python benchmarks/compare/ab_step23.py train --length 8192 --threads 1

Step 23: `lsh._signed_argmax` finds the winning column as the largest of hit x column with int8 column ids
(before: `torch.where(hit, column, 0)` into int16). The baseline swaps the step-22 function back in; the variants
alternate call by call in one process, and their outputs are compared (the buckets are identical).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from reformer.bench.ab import swap_main
from reformer.model import lsh


def _signed_argmax_step22(cols: torch.Tensor, half: int) -> torch.Tensor:
    """`lsh._signed_argmax` as step 22 left it."""
    top, bottom = cols.amax(dim=-2, keepdim=True), cols.amin(dim=-2, keepdim=True)  # (..., 1, s)
    positive = top >= -bottom  # (..., 1, s)
    column = torch.arange(half, dtype=torch.int16, device=cols.device).view(half, 1)
    index = torch.where(cols == torch.where(positive, top, bottom), column, 0).amax(dim=-2)  # (..., s)
    return index.long() + (~positive.squeeze(-2)).long() * half


def _install(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> Callable[[], None]:
    def go() -> None:
        setattr(lsh, "_signed_argmax", fn)  # noqa: B010 - a module attribute swapped for the A/B
    return go


if __name__ == "__main__":
    swap_main(__doc__ or "", {"step22": _install(_signed_argmax_step22), "step23": _install(lsh._signed_argmax)})

"""In-process A/B of step 24 (README, per-step history): the bucket sort as one flat radix sort, CPU.

    THP_MEM_ALLOC_ENABLE=1 .venv/bin/python benchmarks/compare/ab_step24.py forward --threads 2 --rounds 6
    THP_MEM_ALLOC_ENABLE=1 .venv/bin/python benchmarks/compare/ab_step24.py train --length 8192 --threads 1

Step 24: `lsh.sort_by_bucket` sorts every round of every head as one 1-D int32 key (row x span + bucket), stably,
which PyTorch hands to its parallel radix sort; before, `argsort(dim=-1, stable=True)` sorted each row by
comparison. The baseline swaps the step-23 function back in (in `lsh` and in `queries`, which both sort); the
variants alternate call by call in one process, and their outputs are compared (the order is identical).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from reformer.bench.ab import swap_main
from reformer.model import lsh, queries


def _sort_step23(buckets: torch.Tensor) -> torch.Tensor:
    """`lsh.sort_by_bucket` as step 23 left it."""
    return torch.argsort(buckets.long(), dim=-1, stable=True)


def _install(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], None]:
    def go() -> None:
        setattr(lsh, "sort_by_bucket", fn)  # noqa: B010 - module attributes swapped for the A/B
        setattr(queries, "sort_by_bucket", fn)  # noqa: B010
    return go


if __name__ == "__main__":
    swap_main(__doc__ or "", {"step23": _install(_sort_step23), "step24": _install(lsh.sort_by_bucket)})

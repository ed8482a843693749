"""In-process A/B of step 26 (README, per-step history): the key normalisation's backward as one fused pass.

    THP_MEM_ALLOC_ENABLE=1 .venv/bin/python benchmarks/compare/ab_step26.py train --length 32768 --threads 1 --rounds 3

Step 26: `masking.normalize_keys` runs as `_NormalizeKeys`, whose backward is dx = (g - k <g, k>) / ||x|| in one
product-sum and one fused multiply-add; before, `F.normalize` left autograd a dozen passes (five divisions, a
negation, products, sums) over each (r, l + c, e) key tensor, which at L = 32,768 do not stay in cache. The
baseline routes `normalize_keys` back to `F.normalize` with autograd; the variants alternate call by call.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from reformer.bench.ab import swap_main
from reformer.model import masking


def _route(fused: bool) -> Callable[[], None]:
    def go() -> None:
        setattr(masking, "_FUSED_BACKWARD", fused)  # noqa: B010 - module attribute swapped for the A/B
    return go


if __name__ == "__main__":
    torch.set_grad_enabled(True)
    swap_main(__doc__ or "", {"step25": _route(False), "step26": _route(True)})

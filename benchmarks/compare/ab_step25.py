"""In-process A/B of step 25 (README, per-step history): linear layers on oneDNN instead of MKL, CPU float32.

    THP_MEM_ALLOC_ENABLE=1 .venv/bin/python benchmarks/compare/ab_step25.py forward --threads 2 --rounds 6
    THP_MEM_ALLOC_ENABLE=1 .venv/bin/python benchmarks/compare/ab_step25.py train --length 8192 --threads 1

Step 25: `model.linear.Linear` runs the forward and both backward products of every linear layer on oneDNN
(`torch.ops.mkldnn._linear_pointwise`), and the FFN's first layer with its GELU fused in inference; before, every
linear layer was `nn.Linear`, whose float32 products PyTorch sends to MKL. The baseline turns the oneDNN route off
(`model.linear._ONEDNN = False`, which sends every layer back to `F.linear`); the variants alternate call by call
in one process, and their outputs are compared.
"""

from __future__ import annotations

from collections.abc import Callable

from reformer.bench.ab import swap_main
from reformer.model import linear


def _route(onednn: bool) -> Callable[[], None]:
    def go() -> None:
        setattr(linear, "_ONEDNN", onednn)  # noqa: B010 - module attribute swapped for the A/B
    return go


if __name__ == "__main__":
    swap_main(__doc__ or "", {"step24": _route(False), "step25": _route(True)})

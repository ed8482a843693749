"""Triton computes bfloat16 as a GPU does, here too: exact products with float32 sums, and casts that round to
nearest, ties to even (on the CPU through `tests/triton_bf16.py`'s teaching of the interpreter)."""

from __future__ import annotations

import os

import pytest
import torch

triton = pytest.importorskip("triton", reason="needs Triton (pip install triton)")
assert torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"

import triton.language as tl  # noqa: E402

from ..triton_bf16 import BF16_DEVICE as DEVICE  # noqa: E402
from ..triton_bf16 import bfloat16_runs  # noqa: E402

pytestmark = bfloat16_runs()


@triton.jit
def _dot_and_round(A, B, PRODUCT, X, ROUNDED, N: tl.constexpr):
    rows = tl.arange(0, N)
    tile = rows[:, None] * N + rows[None, :]
    product = tl.dot(tl.load(A + tile), tl.load(B + tile))  # bfloat16 tiles, float32 accumulation
    tl.store(PRODUCT + tile, product)
    tl.store(ROUNDED + tile, tl.load(X + tile).to(tl.bfloat16))


def test_bfloat16_products_are_exact_and_casts_round_to_nearest_even() -> None:
    n = 16
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(torch.bfloat16)
    b = torch.randn(n, n, generator=gen).to(torch.bfloat16)
    # casts: random values, and the hard ones: halfway between two bfloat16 values (ties go to the even one),
    # just below a power of two (rounding up carries into the exponent), negatives and zero
    x = torch.randn(n, n, generator=gen) * 100
    one_ulp = 2.0 ** -7  # of bfloat16 at 1
    x.view(-1)[:8] = torch.tensor([1 + one_ulp / 2, 1 + 3 * one_ulp / 2, 2 - one_ulp / 4, -(1 + one_ulp / 2),
                                   0.0, 3.0e38, 1e-39, -2 + one_ulp / 8])
    product = torch.empty(n, n, device=DEVICE)
    rounded = torch.empty(n, n, dtype=torch.bfloat16, device=DEVICE)
    _dot_and_round[(1,)](a.to(DEVICE), b.to(DEVICE), product, x.to(DEVICE), rounded, N=n)
    exact = a.double() @ b.double()  # each product exact in float32 as well; only the sums round
    assert float((product.cpu().double() - exact).abs().max() / exact.abs().max()) < 1e-6
    assert torch.equal(rounded.cpu().view(torch.int16), x.to(torch.bfloat16).view(torch.int16))
    assert rounded.cpu()[0, 0] == 1.0 and rounded.cpu()[0, 1] == 1 + 2 * one_ulp  # ties to even
    assert rounded.cpu()[0, 2] == 2.0  # the carry into the exponent

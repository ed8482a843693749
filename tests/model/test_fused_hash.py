"""The fused hashing kernel (`fused_lsh.hash_fused`) against `lsh.hash_vectors`' reference, through Triton's
interpreter where there is no GPU.

On values whose products and sums are exact in float32 (multiples of 1/8, a few of them per sum) both compute
the same projections whatever the order of the additions, including exact ties, so the ids must be equal:
that checks the tie rule too (the positive side when max(xR) = -min(xR), the highest column among equals).
On ordinary floats the two sum the products in different orders, so an id may differ where two projections are
within rounding of each other: rare, and bounded here.
"""

from __future__ import annotations

import os

import pytest
import torch

pytest.importorskip("triton", reason="the fused kernels need Triton (pip install triton)")
assert torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"  # tests/conftest.py

from reformer.model.lsh import bucket_factors, hash_vectors, rotation_columns  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _inputs(n_buckets: int, exact: bool, e: int = 16, strided: bool = False
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """qk (2, 3, 200, e), rotations (3, e, 3, u) and a padding mask that cuts the second row at 150."""
    gen = torch.Generator().manual_seed(n_buckets + e)
    b, h, l, r, u = 2, 3, 200, 3, rotation_columns(n_buckets)
    if exact:
        qk = torch.randint(-8, 9, (b, l, h, e), generator=gen).float() / 8
        rotations = torch.randint(-8, 9, (h, e, r, u), generator=gen).float() / 8
    else:
        qk = torch.randn(b, l, h, e, generator=gen)
        rotations = torch.randn(h, e, r, u, generator=gen)
    qk = qk.transpose(1, 2)  # (b, h, l, e) with the model's strides
    if not strided:
        qk = qk.contiguous()
    valid = torch.ones(b, l, dtype=torch.bool)
    valid[1, 150:] = False
    return qk.to(DEVICE), rotations.to(DEVICE), valid.to(DEVICE)


@pytest.mark.parametrize(("n_buckets", "e", "strided", "dtype"), [
    (8, 16, False, torch.float32), (64, 20, True, torch.float32), (256, 16, True, torch.bfloat16),
    (1024, 32, False, torch.float32),
])
def test_fused_hash_equals_the_reference_on_exact_arithmetic(n_buckets: int, e: int, strided: bool,
                                                            dtype: torch.dtype) -> None:
    qk, rotations, valid = _inputs(n_buckets, exact=True, e=e, strided=strided)
    qk = qk.to(dtype)  # multiples of 1/8 up to 1 are exact in bfloat16 too
    assert qk.is_contiguous() != strided
    want = hash_vectors(qk, rotations, n_buckets, valid)
    got = hash_vectors(qk, rotations, n_buckets, valid, fused=True)
    assert got.dtype == want.dtype and got.shape == want.shape == (2, 3, 3, 200)
    assert torch.equal(got, want)
    assert int(got[1, :, :, 150:].min()) == n_buckets  # padding in the extra bucket
    assert int(got[:, :, :, :150].max()) < n_buckets
    # the exact values tie often: the tie rule is exercised, not assumed
    if len(bucket_factors(n_buckets)) == 1:
        projections = torch.einsum("bhle,heru->bhrlu", qk.float(), rotations)
        signed = torch.cat([projections, -projections], dim=-1)
        ties = (signed == signed.amax(dim=-1, keepdim=True)).sum(dim=-1) > 1
        assert ties.any()


@pytest.mark.parametrize("n_buckets", [64, 1024])
def test_fused_hash_agrees_with_the_reference_on_random_floats(n_buckets: int) -> None:
    qk, rotations, valid = _inputs(n_buckets, exact=False)
    want = hash_vectors(qk, rotations, n_buckets, valid)
    got = hash_vectors(qk, rotations, n_buckets, valid, fused=True)
    assert float((got == want).float().mean()) >= 0.999

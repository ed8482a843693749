"""The FlexAttention route to LSH attention (`benchmarks/gpu/flex_lsh.py`), measured against the Triton kernels on
a GPU, must compute what the reference computes before its timings mean anything.

On the CPU FlexAttention runs uncompiled and forward only: a dense evaluation of `score_mod` and `mask_mod` over
every (query, key) pair, so the mask's per-element rule is checked here. The compiled GPU kernel reads the block
tables instead, so they are checked against that rule block by block. Gradients need CUDA.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("torch.nn.attention.flex_attention", reason="FlexAttention needs torch >= 2.5")
# uncompiled on purpose: the dense evaluation is the per-element check
pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks" / "gpu"))

from flex_lsh import block_mask, look_backs, lsh_attention_flex  # noqa: E402
from torch.nn.attention.flex_attention import _ordered_to_dense, create_block_mask  # noqa: E402

from reformer.model.lsh import hash_vectors, lsh_attention, rotation_columns  # noqa: E402


def _case(rounds: int, chunk: int, causal: bool, padded: bool, dtype: torch.dtype
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    b, h, n, e = 2, 2, 4, 16
    l = n * chunk
    gen = torch.Generator().manual_seed(rounds + chunk + 5 * causal + 3 * padded)
    qk = torch.randn(b, h, l, e, generator=gen, dtype=dtype)
    v = torch.randn(b, h, l, e, generator=gen, dtype=dtype)
    n_buckets = 2 * n
    rotations = torch.randn(h, e, rounds, rotation_columns(n_buckets), generator=gen)
    valid = None
    if padded:  # row 1 ends a chunk and a half early: its chunk 0 looks back at its last real chunk
        valid = torch.ones(b, l, dtype=torch.bool)
        valid[1, l - chunk - chunk // 2:] = False
    return qk, v, hash_vectors(qk.float(), rotations, n_buckets, valid), valid


@pytest.mark.parametrize("rounds", [1, 2, 8])
@pytest.mark.parametrize("chunk", [32, 64, 128])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_flex_route_equals_the_reference(rounds: int, chunk: int, causal: bool, padded: bool) -> None:
    qk, v, buckets, valid = _case(rounds, chunk, causal, padded, torch.float64)
    want, _ = lsh_attention(qk, v, buckets, chunk, valid, causal)  # float64: exact to rounding
    got = lsh_attention_flex(qk.float(), v.float(), buckets, chunk, valid, causal)
    keep = torch.ones_like(want, dtype=torch.bool) if valid is None else valid[:, None, :, None].expand_as(want)
    error = float(((got.double() - want).abs() * keep).max() / want.abs().max())
    assert error < 1e-5


@pytest.mark.parametrize(("n", "wrap"), [(1, None), (2, None), (4, None), (4, [1, 3]), (5, [2, 4]), (3, [1, 1])])
def test_block_tables_hold_exactly_the_blocks_the_mask_allows(n: int, wrap: list[int] | None) -> None:
    """Both tables the compiled kernel reads (query blocks -> key blocks for the forward and dQ, key blocks ->
    query blocks for dK and dV) against `create_block_mask` over the per-element rule."""
    b, r, chunk = 2, 3, 16
    back = look_backs(b, r, n, None if wrap is None else torch.tensor(wrap), torch.device("cpu"))
    mask = block_mask(back, n, chunk)
    size = r * n * chunk
    dense = create_block_mask(mask.mask_mod, b, 1, size, size, device="cpu", BLOCK_SIZE=chunk).to_dense()
    assert dense.sum() > 0
    blocks = r * n
    assert mask.full_kv_num_blocks is not None and mask.full_kv_indices is not None
    assert mask.full_q_num_blocks is not None and mask.full_q_indices is not None
    assert torch.equal(_ordered_to_dense(mask.full_kv_num_blocks, mask.full_kv_indices, blocks), dense)
    assert torch.equal(_ordered_to_dense(mask.full_q_num_blocks, mask.full_q_indices, blocks).transpose(-1, -2),
                       dense)
    assert int(mask.kv_num_blocks.sum()) == 0 and mask.q_num_blocks is not None and int(mask.q_num_blocks.sum()) == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="FlexAttention has no backward on the CPU; needs CUDA")
@pytest.mark.parametrize("causal", [False, True])
def test_flex_route_gradients_equal_the_reference_on_cuda(causal: bool) -> None:
    qk, v, buckets, valid = _case(4, 64, causal, True, torch.float64)
    keep = None if valid is None else valid[:, None, :, None].cuda()
    results = []
    for fn, dtype in ((lambda *a: lsh_attention(*a)[0], torch.float64),
                      (torch.compile(lsh_attention_flex, dynamic=False), torch.float32)):
        x = qk.cuda().to(dtype).requires_grad_()
        y = v.cuda().to(dtype).requires_grad_()
        out = fn(x, y, buckets.cuda(), 64, None if valid is None else valid.cuda(), causal)
        grads = torch.autograd.grad((out * keep).pow(2).sum(), [x, y])
        results.append([out.detach() * keep, *grads])
    for got, want in zip(results[1], results[0], strict=True):
        assert float((got.double() - want).abs().max() / want.abs().max()) < 1e-5

"""The recomputing chunk-attention kernel: exact gradients (gradcheck) and agreement with plain autograd."""

from __future__ import annotations

import pytest
import torch

from reformer.model import chunked
from reformer.model.chunked import chunk_attention, chunk_scores, window_attention


def _problem(n: int = 5, c: int = 4, w: int = 8, e: int = 3) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(n, c, e, dtype=torch.float64, generator=gen, requires_grad=True)
    k = torch.randn(n, w, e, dtype=torch.float64, generator=gen, requires_grad=True)
    v = torch.randn(n, w, e, dtype=torch.float64, generator=gen, requires_grad=True)
    q_pos = torch.stack([torch.randperm(20, generator=gen)[:c] + 10 for _ in range(n)])
    k_pos = torch.cat([q_pos, torch.randint(0, 40, (n, w - c), generator=gen)], dim=1)
    return q, k, v, q_pos, k_pos


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("self_offset", [None, 0])
def test_gradcheck_including_the_lse_path(causal: bool, self_offset: int | None) -> None:
    q, k, v, q_pos, k_pos = _problem()
    valid = torch.ones(k_pos.shape, dtype=torch.bool)
    valid[:, -2] = False

    def f(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, lse = chunk_attention(q, k, v, q_pos, k_pos, valid, causal, self_offset)
        return out, lse * 0.3  # a non-trivial d_lse, as the round combination produces

    assert torch.autograd.gradcheck(f, (q, k, v))


def test_matches_plain_autograd_and_blocks_do_not_matter(monkeypatch: pytest.MonkeyPatch) -> None:
    q, k, v, q_pos, k_pos = _problem(n=37)
    out, lse = chunk_attention(q, k, v, q_pos, k_pos)
    (out.sum() + lse.sum()).backward()
    grads = [t.grad.clone() for t in (q, k, v)]  # type: ignore[union-attr]
    for t in (q, k, v):
        t.grad = None
    dots = chunk_scores(q, k, q_pos, k_pos, None, False)
    ref_lse = torch.logsumexp(dots, dim=-1)
    ref_out = torch.softmax(dots, dim=-1) @ v
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(lse, ref_lse)
    (ref_out.sum() + ref_lse.sum()).backward()
    for got, t in zip(grads, (q, k, v), strict=True):
        torch.testing.assert_close(got, t.grad)
    monkeypatch.setitem(chunked._BLOCK_ELEMENTS, "cpu", 40)  # many small blocks: same answer
    out_small, _ = chunk_attention(q, k, v, q_pos, k_pos)
    torch.testing.assert_close(out_small, out)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("before", "after"), [(1, 0), (1, 1)])
def test_window_views_match_explicit_windows_and_gradcheck(before: int, after: int, causal: bool) -> None:
    """Windows as strided views of the key buffer = the same problems on concatenated copies, gradients too.

    Padding only without `causal`: a padded query whose every key is masked has constant logits, and the
    recomputing backward (like FlashAttention's) does not zero its gradient; such outputs are discarded.
    """
    gen = torch.Generator().manual_seed(1)
    m, c, e = 7, 3, 2
    q, k, v = (torch.randn(m, c, e, dtype=torch.float64, generator=gen, requires_grad=True) for _ in range(3))
    pos = torch.randperm(m * c, generator=gen).view(m, c)
    valid: torch.Tensor | None = None
    if not causal:
        valid = torch.ones(m, c, dtype=torch.bool)
        valid[2, 1] = False

    def windowed(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, lse = window_attention(q, k, v, pos, pos, valid, before, after, causal, self_offset=before * c)
        return out, lse * 0.3

    def explicit(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows = range(before, m - after)
        span = range(-before, after + 1)
        k_win = torch.stack([torch.cat([k[j + s] for s in span]) for j in rows])  # (n, w, e)
        v_win = torch.stack([torch.cat([v[j + s] for s in span]) for j in rows])
        k_pos = torch.stack([torch.cat([pos[j + s] for s in span]) for j in rows])
        kv = None if valid is None else torch.stack([torch.cat([valid[j + s] for s in span]) for j in rows])
        out, lse = chunk_attention(q[before:m - after], k_win, v_win, pos[before:m - after], k_pos, kv, causal,
                                   self_offset=before * c)
        return out, lse * 0.3

    got, want = windowed(q, k, v), explicit(q, k, v)
    torch.testing.assert_close(got[0][before:m - after], want[0])
    torch.testing.assert_close(got[1][before:m - after], want[1])
    assert not got[0][:before].any() and not got[0][m - after:].any()  # chunks without a full window: zero
    assert torch.autograd.gradcheck(windowed, (q, k, v))


@pytest.mark.parametrize("causal", [False, True])
def test_kept_probabilities_give_the_same_gradients_and_skip_the_recomputation(
        causal: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under `keep_probabilities`, blocks that fit the budget keep P for the backward: identical outputs and
    gradients (gradcheck too), and the backward scores only the blocks that did not fit."""
    gen = torch.Generator().manual_seed(2)
    m, c, e = 9, 4, 3
    q, k, v = (torch.randn(m, c, e, dtype=torch.float64, generator=gen, requires_grad=True) for _ in range(3))
    pos = torch.randperm(m * c, generator=gen).view(m, c)
    monkeypatch.setitem(chunked._BLOCK_ELEMENTS, "cpu", 3 * c * 2 * c)  # blocks of 3 chunks: 3 blocks
    block_bytes = 3 * c * 2 * c * 8

    def run(budget: int) -> tuple[list[torch.Tensor], int]:
        calls = []
        real = chunked.chunk_scores
        with chunked.keep_probabilities(budget):
            out, lse = window_attention(q, k, v, pos, pos, None, 1, 0, causal, self_offset=c)
        monkeypatch.setattr(chunked, "chunk_scores", lambda *a, **kw: calls.append(1) or real(*a, **kw))
        grads = torch.autograd.grad((out * out).sum() + (lse * 0.3).sum(), (q, k, v))
        monkeypatch.setattr(chunked, "chunk_scores", real)
        return [out.detach(), lse.detach(), *grads], len(calls)

    plain, plain_calls = run(0)
    assert plain_calls == 3  # the first chunk has no full window: chunks 1..8 in blocks of 3, 3, 2
    for budget, expected_calls in [(block_bytes, 2), (3 * block_bytes, 0)]:
        kept, calls = run(budget)
        assert calls == expected_calls
        for got, want in zip(kept, plain, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    with chunked.keep_probabilities(3 * block_bytes):
        assert torch.autograd.gradcheck(
            lambda q, k, v: window_attention(q, k, v, pos, pos, None, 1, 0, causal, self_offset=c), (q, k, v))
    assert chunked._KEEP_BUDGET.get() == 0  # the context restores the budget


def test_kept_probabilities_need_a_graph() -> None:
    """Without autograd nothing is kept, whatever the budget (eval forwards stay linear in memory)."""
    gen = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(6, 4, 3, generator=gen) for _ in range(3))
    with chunked.keep_probabilities(1 << 30):
        out, _ = window_attention(q, k, v, None, None, None, 1, 0, False, self_offset=4)
        assert chunked._KEEP_BUDGET.get() == 1 << 30  # nothing was taken from it
        q.requires_grad_(True)
        window_attention(q, k, v, None, None, None, 1, 0, False, self_offset=4)
        assert chunked._KEEP_BUDGET.get() < 1 << 30  # with a graph, the blocks are kept
    assert out.grad_fn is None and chunked._KEEP_BUDGET.get() == 0


def test_mixed_input_dtypes_under_autocast_train() -> None:
    """CUDA autocast hands the kernel float32 unit keys beside bfloat16 queries (it runs F.normalize in float32);
    the backward, which runs without autocast, must still see one dtype. Reproduced here with CPU autocast."""
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(6, 8, 16, generator=generator).bfloat16().requires_grad_(True)
    k = torch.nn.functional.normalize(torch.randn(6, 8, 16, generator=generator), dim=-1).requires_grad_(True)
    v = torch.randn(6, 8, 16, generator=generator).bfloat16().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, lse = window_attention(q, k, v, None, None, None, before=1, after=0, self_offset=8)
    assert out.dtype == torch.bfloat16 and lse.dtype == torch.float32
    (out.float().square().sum() + lse.sum()).backward()
    for tensor in (q, k, v):
        assert tensor.grad is not None and tensor.grad.dtype == tensor.dtype
        assert torch.isfinite(tensor.grad.float()).all() and tensor.grad.abs().sum() > 0
    # the same attention in float32, for scale: bfloat16 rounding, not a different function
    want, _ = window_attention(q.float(), k.float(), v.float(), None, None, None, before=1, after=0,
                               self_offset=8)
    torch.testing.assert_close(out.float()[1:], want[1:], atol=0.05, rtol=0.05)


def test_block_and_head_group_sizes_follow_the_device() -> None:
    """The CPU keeps cache-sized blocks and 4 MiB head groups; a GPU takes 2**25-element ones (constants either
    way, so memory stays linear in length). Device objects only: nothing runs on a GPU here."""
    from reformer.model import lsh

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert chunked.block_elements(cpu) == 2**20 and chunked.block_elements(gpu) == 2**25
    assert lsh._group_elements(cpu) == 2**20 and lsh._group_elements(gpu) == 2**25
    assert chunked.block_elements(torch.device("meta")) == 2**20  # other devices: the CPU's figure


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_exp_shifted_matches_exp_and_masked_logits_give_zero(dtype: torch.dtype) -> None:
    """The CPU's one-pass exp2 form of exp(S - m) equals exp to float rounding; masked and self-penalised logits
    (no clamp any more) give exactly 0 or a tiny weight, never NaN or inf."""
    from reformer.model.masking import MASKED, SELF_PENALTY

    g = torch.Generator().manual_seed(0)
    scores = torch.randn(16, 8, 24, generator=g, dtype=torch.float64) * 6  # (n, c, w), logits up to ~25
    scores.diagonal(offset=8, dim1=1, dim2=2).add_(SELF_PENALTY)
    scores[:, :, :4] = MASKED
    shift = scores.amax(dim=-1, keepdim=True)  # (n, c, 1)
    want = torch.exp(scores - shift)
    got = chunked._exp_shifted_(scores.to(dtype), shift.to(dtype)).double()
    assert torch.isfinite(got).all()
    assert got[:, :, :4].abs().max() == 0.0  # masked keys: exactly zero weight
    big = want > 1e-6
    tolerance = 5e-6 if dtype == torch.float32 else 1e-13
    assert ((got - want).abs() / want)[big].max() < tolerance
    # each row's largest weight is exp(0) = 1, to rounding (x log2 e - m log2 e need not be exactly 0)
    torch.testing.assert_close(got.amax(dim=-1), torch.ones(16, 8, dtype=torch.float64), rtol=tolerance, atol=0.0)

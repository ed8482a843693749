"""The recomputing chunk-attention kernel: exact gradients (gradcheck) and agreement with plain autograd."""

from __future__ import annotations

import pytest
import torch

from reformer.model.chunked import chunk_attention, chunk_scores


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
    monkeypatch.setattr("reformer.model.chunked._BLOCK_ELEMENTS", 40)  # many small blocks: same answer
    out_small, _ = chunk_attention(q, k, v, q_pos, k_pos)
    torch.testing.assert_close(out_small, out)

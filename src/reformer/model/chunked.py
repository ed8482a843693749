"""Attention inside many small independent chunks, with a recomputing backward, blocked for cache locality.

Shape legend: N chunk problems (batch x heads x rounds x chunks, flattened), c queries per chunk, w keys per chunk,
e head dim.

LSH and local attention both reduce to N independent (c x w) softmax-attention problems. Done naively, autograd
keeps the (N, c, w) probabilities for the backward and every elementwise step streams that tensor through memory.
Here the forward keeps only q, k, v, the output and the logsumexp (linear in length, no (N, c, w) tensor), and both
passes walk over blocks of chunks small enough to stay in cache. The backward recomputes the probabilities from
the saved logsumexp (as FlashAttention does, Dao et al. 2022):

    P = exp(S - lse),  dV = P^T dO,  dP = dO V^T,  dS = P * (dP - rowsum(dO * O) + d_lse),  dQ = dS K,  dK = dS^T Q

The `d_lse` term carries the gradient of the multi-round combination, which weighs each round by its lse.
Scores follow `masking.py`: the self penalty, then padding and causal masks on original positions.
"""

from __future__ import annotations

from typing import Any

import torch

from .masking import MASKED, SELF_PENALTY

__all__ = ["chunk_attention", "chunk_scores"]

# elements of one block's (chunks, c, w) score tensor: 2**18 float32 = 1 MiB, comfortably inside L2/L3
_BLOCK_ELEMENTS = 2**18


def chunk_scores(q: torch.Tensor, k: torch.Tensor, q_pos: torch.Tensor, k_pos: torch.Tensor,
                 key_valid: torch.Tensor | None, causal: bool, self_offset: int | None = None) -> torch.Tensor:
    """Masked logits of a block: q (n, c, e), k (n, w, e), positions (n, c) / (n, w) -> (n, c, w), >= float32.

    `self_offset`: when every query's own key sits at column (query index + offset) of its chunk, as in LSH
    (offset 0) and local windows (offset c), the self penalty is added on that diagonal without comparing
    positions; None compares positions.
    """
    dots = torch.bmm(q, k.transpose(1, 2))  # (n, c, w)
    dots = dots.to(torch.promote_types(dots.dtype, torch.float32))
    if self_offset is None:
        is_self = q_pos.unsqueeze(-1) == k_pos.unsqueeze(-2)  # (n, c, w)
        dots.add_(is_self.to(dots.dtype), alpha=SELF_PENALTY)
    else:
        dots.diagonal(offset=self_offset, dim1=1, dim2=2).add_(SELF_PENALTY)
    if causal:
        future = k_pos.unsqueeze(-2) > q_pos.unsqueeze(-1)  # (n, c, w)
        dots.masked_fill_(future, MASKED)
    if key_valid is not None:
        dots.masked_fill_(~key_valid.unsqueeze(-2), MASKED)
    return dots


def _blocks(n: int, c: int, w: int) -> list[slice]:
    size = max(1, _BLOCK_ELEMENTS // (c * w))
    return [slice(start, min(n, start + size)) for start in range(0, n, size)]


def _pick(t: torch.Tensor | None, part: slice) -> torch.Tensor | None:
    return None if t is None else t[part]


class _ChunkAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_pos: torch.Tensor,
                k_pos: torch.Tensor, key_valid: torch.Tensor | None, causal: bool, self_offset: int | None) -> Any:
        n, c, _ = q.shape
        w = k.shape[1]
        out = torch.empty(n, c, v.shape[-1], dtype=v.dtype, device=v.device)  # (N, c, e)
        lse_dtype = torch.promote_types(q.dtype, torch.float32)
        lse = torch.empty(n, c, dtype=lse_dtype, device=q.device)  # (N, c)
        for part in _blocks(n, c, w):
            probs = chunk_scores(q[part], k[part], q_pos[part], k_pos[part], _pick(key_valid, part), causal,
                                 self_offset)
            top = probs.amax(dim=-1, keepdim=True)  # (n, c, 1)
            probs.sub_(top).exp_()
            total = probs.sum(dim=-1, keepdim=True)  # (n, c, 1)
            probs.div_(total)
            torch.bmm(probs.to(v.dtype), v[part], out=out[part])
            lse[part] = (top + total.log()).squeeze(-1)
        ctx.causal, ctx.self_offset = causal, self_offset
        ctx.save_for_backward(q, k, v, out, lse, q_pos, k_pos, key_valid)
        return out, lse

    @staticmethod
    def backward(ctx: Any, d_out: torch.Tensor, d_lse: torch.Tensor) -> Any:
        q, k, v, out, lse, q_pos, k_pos, key_valid = ctx.saved_tensors
        n, c, _ = q.shape
        w = k.shape[1]
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        # rowsum(dO * O) - d_lse: the per-query shift of the softmax backward, (N, c)
        shift = (d_out * out).sum(dim=-1).to(lse.dtype) - d_lse
        for part in _blocks(n, c, w):
            probs = chunk_scores(q[part], k[part], q_pos[part], k_pos[part], _pick(key_valid, part), ctx.causal,
                                 ctx.self_offset)
            probs.sub_(lse[part].unsqueeze(-1)).exp_()  # (n, c, w)
            d_o = d_out[part]
            torch.bmm(probs.transpose(1, 2).to(v.dtype), d_o, out=dv[part])
            d_scores = torch.bmm(d_o, v[part].transpose(1, 2)).to(probs.dtype)  # (n, c, w)
            d_scores.sub_(shift[part].unsqueeze(-1)).mul_(probs)
            d_scores = d_scores.to(q.dtype)
            torch.bmm(d_scores, k[part], out=dq[part])
            torch.bmm(d_scores.transpose(1, 2), q[part], out=dk[part])
        return dq, dk, dv, None, None, None, None, None


def chunk_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_pos: torch.Tensor, k_pos: torch.Tensor,
                    key_valid: torch.Tensor | None = None, causal: bool = False, self_offset: int | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention within each of N chunks, memory linear in N.

    Args:
        q: queries (N, c, e); k: keys (N, w, e) (already unit-normalised); v: values (N, w, e).
        q_pos, k_pos: original positions (N, c), (N, w) int64, for the self penalty and the causal mask.
        key_valid: (N, w) bool, False for padding keys; None = all valid.
        causal: mask keys whose position is after the query's.
        self_offset: column offset of each query's own key in its chunk, if fixed (see `chunk_scores`).
    Returns:
        out (N, c, e) and lse (N, c) (float32 or wider), both differentiable.
    """
    out, lse = _ChunkAttention.apply(q.contiguous(), k.contiguous(), v.contiguous(), q_pos.contiguous(),
                                     k_pos.contiguous(), None if key_valid is None else key_valid.contiguous(),
                                     causal, self_offset)
    return out, lse

"""Attention of query chunks to windows of neighbouring key chunks, with a recomputing backward, blocked.

Shape legend: M chunks in a flat buffer (batch x heads x rounds x chunks, flattened, plus any leading or padding
chunks the caller lays out), c queries per chunk, ck keys per key chunk, w = (before + 1 + after) * ck keys per
window, e head dim.

LSH and local attention both reduce to many small (c x w) softmax-attention problems in which query chunk j
attends to key chunks j - before .. j + after of the same flat buffer. The windows are strided *views* of the key
buffer (`Tensor.unfold`), so no look-back copy of the keys or values is ever made; a caller lays its chunks out
so that every query's window holds the right keys (LSH: each round's last chunk copied in front of the round;
local: a padding chunk at both ends of each head). Query chunks whose window would leave the buffer (the first
`before` and last `after`) are not computed: their output and logsumexp are zero.

The forward keeps only q, k, v, the output and the logsumexp (linear in length, no (M, c, w) tensor), and both
passes walk over blocks of chunks small enough to stay in cache. The backward recomputes the probabilities from
the saved logsumexp (as FlashAttention does, Dao et al. 2022):

    P = exp(S - lse),  dV = P^T dO,  dP = dO V^T,  dS = P * (dP - rowsum(dO * O) + d_lse),  dQ = dS K,  dK = dS^T Q

The `d_lse` term carries the gradient of the multi-round combination, which weighs each round by its lse. A key
chunk lies in `before + 1 + after` windows; its gradient is the sum of its slices of their window gradients.
Scores follow `masking.py`: the self penalty, then padding and causal masks on original positions.

Inside `keep_probabilities(max_bytes)` a forward that builds a graph keeps P for as many blocks as fit the
budget, and the backward uses them instead of recomputing S and exp(S - lse) (one of the five matrix products
and every elementwise pass over the scores). The reversible stack uses it for the one layer it recomputes and
back-propagates at a time, so the kept blocks are transient.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

import torch

from .fused import window_attention_fused
from .masking import MASKED, SELF_PENALTY

__all__ = ["block_elements", "chunk_attention", "chunk_scores", "compute_dtype", "keep_probabilities",
           "window_attention", "window_view"]

# elements of one block's (chunks, c, w) score tensor: 2**20 float32 = 4 MiB, inside L3; against blocks of 2**18 and
# 2**19 elements it makes the seq_len-8760 eval forward 8% faster on 2 threads (15% under bfloat16 autocast), and
# training at L = 4,096 faster by 3% (`reformer bench targets`, `reformer bench compare`)
# On a GPU a block costs a handful of kernel launches whatever its size, and with CPU-sized blocks the launches
# dominate (bench compare's L = 32,768 training step on an H200: 0.86 s against HF transformers' 0.18 s), so
# blocks there are 32x larger: 2**25 elements, 128 MiB of float32 scores, still a constant, so memory stays linear.
_BLOCK_ELEMENTS = {"cpu": 2**20, "cuda": 2**25}


def block_elements(device: torch.device) -> int:
    """Elements of one block's score tensor on `device` (the CPU's figure for other device types)."""
    return _BLOCK_ELEMENTS.get(device.type, _BLOCK_ELEMENTS["cpu"])


# exp arguments are clamped here (see `_exp_shifted_`): e^-80 is a normal float32, and exp stays on its fast path
_EXP_FLOOR = -80.0
_LOG2E = 1.4426950408889634


# bytes of probabilities that forwards may still keep for their backward (see `keep_probabilities`); a context
# variable, so that backward passes in other threads (autograd's device threads, data-parallel replicas) each
# have their own
_KEEP_BUDGET: contextvars.ContextVar[int] = contextvars.ContextVar("reformer_keep_budget", default=0)


@contextlib.contextmanager
def keep_probabilities(max_bytes: int) -> Iterator[None]:
    """Let the window-attention forwards inside this context keep their normalised probabilities, up to
    `max_bytes` in all, so that their backward uses them instead of recomputing S = QK^T and exp(S - lse).

    For a graph that is built and back-propagated at once, as the reversible stack does layer by layer in its
    backward: the kept blocks live only as long as that graph. Blocks past the budget recompute as usual.
    """
    token = _KEEP_BUDGET.set(max(0, int(max_bytes)))
    try:
        yield
    finally:
        _KEEP_BUDGET.reset(token)


def window_view(buffer: torch.Tensor, start: int, stop: int, before: int, after: int) -> torch.Tensor:
    """The key windows of query chunks start..stop-1 as a view: (M, ck, *rest) -> (stop - start, w, *rest)."""
    span = before + 1 + after
    part = buffer[start - before:stop + after]  # (stop - start + span - 1, ck, *rest)
    if span == 1:
        return part
    ck = buffer.shape[1]
    flat = part.reshape(part.shape[0] * ck, *part.shape[2:])  # a view: the slice is contiguous
    return flat.unfold(0, span * ck, ck).movedim(-1, 1)  # (stop - start, w, *rest), overlapping strides


def chunk_scores(q: torch.Tensor, k: torch.Tensor, q_pos: torch.Tensor | None, k_pos: torch.Tensor | None,
                 key_valid: torch.Tensor | None, causal: bool, self_offset: int | None = None) -> torch.Tensor:
    """Masked logits of a block: q (n, c, e), k (n, w, e), positions (n, c) / (n, w) -> (n, c, w), >= float32.

    `self_offset`: when every query's own key sits at column (query index + offset) of its window, as in LSH
    and local windows, the self penalty is added on that diagonal without comparing positions; None compares
    positions. Positions are needed only for `causal` or `self_offset=None`.
    """
    dots = torch.bmm(q, k.transpose(1, 2))  # (n, c, w)
    dots = dots.to(torch.promote_types(dots.dtype, torch.float32))
    if self_offset is None:
        assert q_pos is not None and k_pos is not None
        is_self = q_pos.unsqueeze(-1) == k_pos.unsqueeze(-2)  # (n, c, w)
        dots.add_(is_self.to(dots.dtype), alpha=SELF_PENALTY)
    else:
        dots.diagonal(offset=self_offset, dim1=1, dim2=2).add_(SELF_PENALTY)
    if causal:
        assert q_pos is not None and k_pos is not None
        future = k_pos.unsqueeze(-2) > q_pos.unsqueeze(-1)  # (n, c, w)
        dots.masked_fill_(future, MASKED)
    if key_valid is not None and dots.device.type != "cpu":  # where checking would make the host wait
        dots.masked_fill_(~key_valid.unsqueeze(-2), MASKED)
    elif key_valid is not None:
        # padding is rare (the tail of a sequence): mask only the windows that hold any
        padded = ~key_valid.all(dim=-1)  # (n,)
        if bool(padded.all()):
            dots.masked_fill_(~key_valid.unsqueeze(-2), MASKED)
        elif bool(padded.any()):
            rows = padded.nonzero().squeeze(1)
            dots[rows] = dots[rows].masked_fill(~key_valid[rows].unsqueeze(-2), MASKED)
    return dots


def _exp_shifted_(scores: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """exp(scores - shift) in place: scores (n, c, w), shift (n, c, 1).

    On the CPU, e^(x - m) = 2^(x log2 e - m log2 e): PyTorch's `exp2` runs 3.5x faster than its `exp` there (per
    2^20 float32 elements, 1 thread: 0.13 against 0.63 ms), and `torch.add(a, b, alpha)` forms the argument in
    one pass over the scores. `exp2` has no slow path for arguments past float32 underflow (masked and
    self-penalised logits: 0.13 ms either way), so they need no clamp. Rounding costs ~|x| 1e-7 in the exponent,
    i.e. relative in the weight: ~1e-6 for logits of size 10, the size of the rounding in the matrix product that
    made x.

    On a GPU both exponentials are one fast instruction, so `exp` stays there, on arguments clamped at
    `_EXP_FLOOR` (e^-80 ~ 2e-35 of the row's largest weight, 1: far below float32 resolution) to keep it off any
    slow path for arguments past underflow.
    """
    if scores.device.type == "cpu":
        return torch.add(shift * -_LOG2E, scores, alpha=_LOG2E, out=scores).exp2_()  # 2^(x log2 e - m log2 e)
    return scores.sub_(shift).clamp_(min=_EXP_FLOOR).exp_()


def _blocks(start: int, stop: int, c: int, w: int, device: torch.device) -> list[tuple[int, int]]:
    size = max(1, block_elements(device) // (c * w))
    return [(j, min(stop, j + size)) for j in range(start, stop, size)]


def _window(t: torch.Tensor | None, j0: int, j1: int, before: int, after: int) -> torch.Tensor | None:
    return None if t is None else window_view(t, j0, j1, before, after)


def _rows(t: torch.Tensor | None, j0: int, j1: int) -> torch.Tensor | None:
    return None if t is None else t[j0:j1]


def _scatter_windows(grad: torch.Tensor, window_grad: torch.Tensor, j0: int, j1: int, before: int,
                     after: int) -> None:
    """grad (M, ck, e) += each window's gradient (j1 - j0, w, e), slice by slice, at the key chunks it covers."""
    span = before + 1 + after
    parts = window_grad.view(j1 - j0, span, grad.shape[1], grad.shape[2])  # (n, span, ck, e)
    for s in range(span):
        grad[j0 - before + s:j1 - before + s] += parts[:, s]


class _WindowAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_pos: torch.Tensor | None,
                k_pos: torch.Tensor | None, key_valid: torch.Tensor | None, before: int, after: int,
                causal: bool, self_offset: int | None) -> Any:
        m, c, _ = q.shape
        w = (before + 1 + after) * k.shape[1]
        out = torch.empty(m, c, v.shape[-1], dtype=v.dtype, device=v.device)  # (M, c, e)
        lse = torch.empty(m, c, dtype=torch.promote_types(q.dtype, torch.float32), device=q.device)  # (M, c)
        for edge in (slice(0, before), slice(m - after, m)):  # the chunks without a full window
            out[edge] = 0.0
            lse[edge] = 0.0
        kept: dict[int, torch.Tensor] = {}  # first chunk of a block -> its normalised probabilities
        keep = _KEEP_BUDGET.get() > 0 and any(ctx.needs_input_grad[:3])
        for j0, j1 in _blocks(before, m - after, c, w, q.device):
            probs = chunk_scores(q[j0:j1], window_view(k, j0, j1, before, after), _rows(q_pos, j0, j1),
                                 _window(k_pos, j0, j1, before, after), _window(key_valid, j0, j1, before, after),
                                 causal, self_offset)  # (n, c, w)
            top = probs.amax(dim=-1, keepdim=True)  # (n, c, 1)
            _exp_shifted_(probs, top)
            total = probs.sum(dim=-1, keepdim=True)  # (n, c, 1)
            lse[j0:j1] = (top + total.log()).squeeze(-1)
            block_out = out[j0:j1]
            size = probs.numel() * probs.element_size()
            keep_block = keep and size <= _KEEP_BUDGET.get()
            if keep_block:
                _KEEP_BUDGET.set(_KEEP_BUDGET.get() - size)
                kept[j0] = probs.div_(total)  # P = exp(S - lse), for the backward
            torch.bmm(probs.to(v.dtype), window_view(v, j0, j1, before, after), out=block_out)
            if not keep_block:
                # normalise the (n, c, e) output rather than the (n, c, w) probabilities: w / e times fewer divisions
                block_out.div_(total.to(v.dtype))
        ctx.kept = kept
        ctx.window = (before, after, causal, self_offset)
        ctx.save_for_backward(q, k, v, out, lse, q_pos, k_pos, key_valid)
        return out, lse

    @staticmethod
    def backward(ctx: Any, d_out: torch.Tensor, d_lse: torch.Tensor) -> Any:
        q, k, v, out, lse, q_pos, k_pos, key_valid = ctx.saved_tensors
        before, after, causal, self_offset = ctx.window
        # the kept blocks are released as they are used (a second backward through this graph recomputes them)
        kept: dict[int, torch.Tensor] = ctx.kept
        ctx.kept = {}
        m, c, _ = q.shape
        w = (before + 1 + after) * k.shape[1]
        dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
        # rowsum(dO * O) - d_lse: the per-query shift of the softmax backward, (M, c)
        shift = (d_out * out).sum(dim=-1).to(lse.dtype) - d_lse
        for j0, j1 in _blocks(before, m - after, c, w, q.device):
            k_win, v_win = window_view(k, j0, j1, before, after), window_view(v, j0, j1, before, after)
            probs = kept.pop(j0, None)  # (n, c, w), if the forward kept it
            if probs is None:
                probs = chunk_scores(q[j0:j1], k_win, _rows(q_pos, j0, j1), _window(k_pos, j0, j1, before, after),
                                     _window(key_valid, j0, j1, before, after), causal, self_offset)
                _exp_shifted_(probs, lse[j0:j1].unsqueeze(-1))  # (n, c, w)
            d_o = d_out[j0:j1]
            d_v_win = torch.bmm(probs.transpose(1, 2).to(v.dtype), d_o)  # (n, w, e)
            d_scores = torch.bmm(d_o, v_win.transpose(1, 2)).to(probs.dtype)  # (n, c, w)
            d_scores.sub_(shift[j0:j1].unsqueeze(-1)).mul_(probs)
            d_scores = d_scores.to(q.dtype)
            torch.bmm(d_scores, k_win, out=dq[j0:j1])
            d_k_win = torch.bmm(d_scores.transpose(1, 2), q[j0:j1])  # (n, w, e)
            _scatter_windows(dk, d_k_win, j0, j1, before, after)
            _scatter_windows(dv, d_v_win, j0, j1, before, after)
        return dq, dk, dv, None, None, None, None, None, None, None


def compute_dtype(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.dtype:
    """The one dtype window attention computes q, k and v in.

    One dtype, because the backward runs without autocast. Under autocast they can differ: CUDA's runs F.normalize
    in float32, so the unit keys arrive in float32 beside bfloat16 queries. Under autocast the three take its
    dtype, as its matrix products would; otherwise the widest of the three.
    """
    if torch.is_autocast_enabled(q.device.type) and q.dtype in (torch.float32, torch.bfloat16, torch.float16):
        return torch.get_autocast_dtype(q.device.type)
    return torch.promote_types(torch.promote_types(q.dtype, k.dtype), v.dtype)


def window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_pos: torch.Tensor | None,
                     k_pos: torch.Tensor | None, key_valid: torch.Tensor | None, before: int, after: int,
                     causal: bool = False, self_offset: int | None = None, fused: bool = False
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention of each query chunk j to key chunks j - before .. j + after, memory linear in M.

    Args:
        q: queries (M, c, e); k: keys (M, ck, e) (already unit-normalised); v: values (M, ck, e).
        q_pos, k_pos: original positions (M, c), (M, ck) int64, for the causal mask and `self_offset=None`;
            None when neither is needed.
        key_valid: (M, ck) bool, False for padding keys; None = all valid.
        before, after: key chunks before and after the query's own chunk in its window (w = (before+1+after)*ck).
        causal: mask keys whose position is after the query's.
        self_offset: column of each query's own key in its window relative to the query index, if fixed (see
            `chunk_scores`); None compares positions.
        fused: run the fused Triton kernels (`fused.py`) instead of the blocked PyTorch ones (not for float64).
    Returns:
        out (M, c, e) and lse (M, c) (float32 or wider), both differentiable; zero for the first `before` and
        last `after` chunks, whose windows would leave the buffer.
    """
    def ready(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.contiguous()

    dtype = compute_dtype(q, k, v)
    q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
    if fused and dtype != torch.float64:  # the fused kernels accumulate in float32: float64 stays exact here
        return window_attention_fused(q, k, v, q_pos, k_pos, key_valid, before, after, causal, self_offset)
    out, lse = _WindowAttention.apply(q.contiguous(), k.contiguous(), v.contiguous(), ready(q_pos), ready(k_pos),
                                      ready(key_valid), before, after, causal, self_offset)
    return out, lse


def chunk_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_pos: torch.Tensor, k_pos: torch.Tensor,
                    key_valid: torch.Tensor | None = None, causal: bool = False, self_offset: int | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention within each of N chunks, each with its own keys: `window_attention` with w = ck.

    Args:
        q: queries (N, c, e); k: keys (N, w, e) (already unit-normalised); v: values (N, w, e).
        q_pos, k_pos: original positions (N, c), (N, w) int64, for the self penalty and the causal mask.
        key_valid: (N, w) bool, False for padding keys; None = all valid.
        causal: mask keys whose position is after the query's.
        self_offset: column offset of each query's own key in its chunk, if fixed (see `chunk_scores`).
    Returns:
        out (N, c, e) and lse (N, c) (float32 or wider), both differentiable.
    """
    return window_attention(q, k, v, q_pos, k_pos, key_valid, 0, 0, causal, self_offset)

"""LSH attention after the sort, as fused Triton kernels (`_fused_lsh_kernels.py`): gather, window attention,
unsort and the rounds' combination.

Shape legend: b batch, h heads, r rounds, l length, e head dim, c chunk size, n = l / c chunks per round.

`lsh._lsh_heads` gathers qk and v into each round's sorted order, with a copy of the look-back chunk in front
((b, h, r, c + l, e) buffers, three of them with the unit keys), attends window by window, gathers the outputs
back and combines the rounds in a few more passes over (b, h, r, l, e). Here the kernels read the rows straight
from (b, h, l, e) through the sorted order and write each round's output at its original positions, and one
more pass combines the rounds, so none of the sorted buffers exists, and the backward keeps only qk, v, the
order, the combined output and per-position statistics.

Forward, one program per (chunk j of a round's sorted order, batch, head, round): its c queries x (unnormalised
shared query-key vectors) attend to the keys of chunk j and of the chunk before it (chunk 0: the round's last
chunk, or `lsh.wrap_chunks`' chunk for a padded row), the keys unit-normalised in the kernel, k = x / max(||x||,
eps), by the online softmax of `fused.py` (self penalty, causal and padding masks on original positions):

    o_r[p] = sum_w softmax(S)_w V_w,   z_r[p] = m + ln l   for each position p of chunk j, in round r

then the combination (Reformer sec. 2, multi-round), per position:  out = sum_r w_r o_r,  w_r = softmax_r(z_r).

Backward. With g = dL/d out, the combination's gradient gives each round dO_r = w_r g and d z_r = w_r (<g, o_r> -
<g, out>), so the softmax backward's D_r = rowsum(dO_r * o_r) - d z_r is simply w_r <g, out>: neither the rounds'
outputs nor their gradients need to be stored or written, only <g, out> per position, and the kernel scales g
and <g, out> by w_r as it loads them. One program per chunk i owns its positions' gradients in its round (each
round is a permutation, so no two programs write one place: no atomics, bit-reproducible):

    P = exp((S - m) - ln l),  dS = P * (dO V^T - D)
    dQ_i = sum over i's window of dS K;   dK_i, dV_i = sums over the query chunks whose windows hold i
    (i itself, i + 1, and 0 when i is chunk 0's look-back) of dS^T Q and P^T dO
    dx_i = dQ_i + (dK_i - k_i <dK_i, k_i>) / max(||x_i||, eps)          (through the key normalisation)

and the rounds' gradients, each (b, h, l, e) at original positions, are summed.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace
from typing import Any

import torch

from .fused import _placeholder, _tile, f32_dot, tuned

__all__ = ["hash_fused", "lsh_attention_fused"]


# offsets within one (batch, head) below this are computed in int32
_NARROW_LIMIT = 2**31
# positions per program of the hashing, the rounds' combination and <g, out>, and their warps: at 4 warps the
# hashing's (128, u) projections spill registers (`benchmarks/gpu/compile_check.py`), at 8 none of the three does
_ROWS = 128
_WARPS = 8


@functools.cache
def _kernels() -> SimpleNamespace:
    from . import _fused_lsh_kernels as kernels  # imports Triton

    # the length is in the key: a configuration timed on a test's few chunks need not suit 32,768 positions
    key = ["L", "c", "e", "LOOK_BACK", "CAUSAL", "HAS_VALID", "F32_DOT"]
    return SimpleNamespace(forward=tuned(kernels.lsh_forward, key), backward=tuned(kernels.lsh_backward, key),
                           combine=kernels.lsh_combine, row_dot=kernels.row_dot, hash=kernels.lsh_hash)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


class _FusedLSH(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, qk: torch.Tensor, v: torch.Tensor, order: torch.Tensor, wrap: torch.Tensor | None,
                valid: torch.Tensor | None, chunk: int, causal: bool) -> Any:
        b, h, l, e = qk.shape
        r = order.shape[2]
        n = l // chunk
        out_r = torch.empty(b, h, r, l, e, dtype=v.dtype, device=qk.device)  # each round's, until combined
        row_max = torch.empty(b, h, r, l, dtype=torch.float32, device=qk.device)
        log_sum = torch.empty_like(row_max)
        wrap_t = _placeholder(wrap, qk, torch.int64)
        valid_t = _placeholder(valid, qk, torch.bool)  # Triton reads a bool tensor as bytes: no conversion
        meta = {"LOOK_BACK": n > 1, "HAS_WRAP": wrap is not None, "CAUSAL": causal, "HAS_VALID": valid is not None,
                "F32_DOT": f32_dot(qk.dtype, qk.device), "BLOCK_C": _tile(chunk), "BLOCK_E": _tile(e)}
        sizes = (l, n, h, r, chunk, e, *qk.stride()[:3], *v.stride()[:3])
        kernels = _kernels()
        kernels.forward[(n * b * h * r,)](qk, v, order, wrap_t, valid_t, out_r, row_max, log_sum, *sizes, **meta)
        out = torch.empty(b, h, l, e, dtype=v.dtype, device=qk.device)
        top = torch.empty(b, h, l, dtype=torch.float32, device=qk.device)  # max_r m_r
        log_total = torch.empty_like(top)  # ln sum_r l_r e^(m_r - top); the rounds' logsumexp is their sum
        kernels.combine[(_cdiv(l, _ROWS) * b * h,)](out_r, row_max, log_sum, out, top, log_total, l, r, e,
                                                     BLOCK_P=_ROWS, BLOCK_E=_tile(e), num_warps=_WARPS)
        # the backward needs the combined output, not the rounds' (see `backward`)
        ctx.save_for_backward(qk, v, order, wrap_t, valid_t, out, top, log_total, row_max, log_sum)
        ctx.meta, ctx.sizes, ctx.grid = meta, sizes, (n * b * h * r,)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:
        qk, v, order, wrap_t, valid_t, out, top, log_total, row_max, log_sum = ctx.saved_tensors
        b, h, r, l = row_max.shape
        e = out.shape[-1]
        grad = grad.contiguous().to(out.dtype)
        # the rounds' dO_r = w_r g and D_r = rowsum(dO_r * O_r) - d z_r = w_r <g, out> (see the module docstring):
        # only <g, out> is computed here, the weights inside the kernel
        g_dot = torch.empty(b, h, l, dtype=torch.float32, device=out.device)
        kernels = _kernels()
        kernels.row_dot[(_cdiv(b * h * l, _ROWS),)](grad, out, g_dot, b * h * l, e, BLOCK_P=_ROWS, BLOCK_E=_tile(e),
                                                     num_warps=_WARPS)
        d_qk = torch.empty(b, h, r, l, e, dtype=qk.dtype, device=qk.device)  # one (l, e) gradient per round
        d_v = torch.empty(b, h, r, l, e, dtype=v.dtype, device=v.device)
        kernels.backward[ctx.grid](qk, v, order, wrap_t, valid_t, grad, g_dot, top, log_total, row_max, log_sum,
                                   d_qk, d_v, *ctx.sizes, **ctx.meta)
        return d_qk.sum(dim=2), d_v.sum(dim=2), None, None, None, None, None


def lsh_attention_fused(qk: torch.Tensor, v: torch.Tensor, sorted_idx: torch.Tensor, wrap: torch.Tensor | None,
                        valid: torch.Tensor | None, chunk_size: int, causal: bool) -> torch.Tensor:
    """LSH attention after the sort: every round's attention within its sorted chunks and their look-back,
    combined over the rounds, in original order.

    Args:
        qk: shared query-key vectors (b, h, l, e), any strides with a contiguous last dimension; v: values, alike.
            One dtype (float32, bfloat16 or float16; accumulation is float32 throughout).
        sorted_idx: each round's sorted order as flat positions row * l + position, row = (batch * h + head) * r
            + round, (b, h, r, l) integer (`bucket_sort.sort_by_bucket(flat=True)`).
        wrap: (b,) int64, the chunk each row's chunk 0 looks back at (`lsh.wrap_chunks`); None = the last chunk.
        valid: (b, l) bool, True for real positions; None = all real.
        chunk_size: c, a divisor of l.
        causal: mask keys whose original position is after the query's.
    Returns:
        out (b, h, l, e) in v's dtype, differentiable in qk and v.
    """
    def rows_contiguous(t: torch.Tensor) -> torch.Tensor:
        return t if t.stride(-1) == 1 else t.contiguous()

    qk, v = rows_contiguous(qk), rows_contiguous(v)
    l, e = qk.shape[2], qk.shape[3]
    # the kernels compute offsets within one (batch, head) in the positions' dtype: int32 (fewer registers, half
    # the order's reads) while position x row stride and the flat positions fit, else int64
    narrow = l * max(qk.stride(2), v.stride(2), e) < _NARROW_LIMIT and sorted_idx.numel() < _NARROW_LIMIT
    order = sorted_idx.to(torch.int32 if narrow else torch.int64).contiguous()
    wrap = None if wrap is None else wrap.to(torch.int64).contiguous()
    valid = None if valid is None else valid.contiguous()
    out: torch.Tensor = _FusedLSH.apply(qk, v, order, wrap, valid, chunk_size, causal)
    return out


def hash_fused(qk: torch.Tensor, rotations: torch.Tensor, factors: tuple[int, ...], n_buckets: int,
               valid: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    """`lsh.hash_vectors` in one kernel: (b, h, l, e) -> buckets (b, h, r, l) in `dtype`.

    The reference writes the (b, h, r, u, l) float32 projections and reads them back in about ten passes (max,
    min, comparisons, the columns); here each program projects its positions in registers and writes only the ids.
    `rotations` (h, e, r, u) float32 with u = sum of f / 2 over `factors` (one or two, from `lsh.bucket_factors`).
    """
    b, h, l, e = qk.shape
    r, u = rotations.shape[2], rotations.shape[3]
    if qk.stride(-1) != 1:
        qk = qk.contiguous()
    rotations = rotations.float().contiguous()
    buckets = torch.empty(b, h, r, l, dtype=dtype, device=qk.device)
    valid_t = _placeholder(None if valid is None else valid.contiguous(), qk, torch.bool)
    half_a, half_b = factors[0] // 2, (factors[1] // 2 if len(factors) > 1 else 0)
    # (positions, columns) projection tiles of at most 2^13 values: at 128 x 128 they spill registers
    rows = max(16, min(_ROWS, 2**13 // _tile(u)))
    _kernels().hash[(_cdiv(l, rows) * b * h,)](qk, rotations, valid_t, buckets, l, h, r, u, e, *qk.stride()[:3],
                                               n_buckets, HALF_A=half_a, HALF_B=half_b, HAS_VALID=valid is not None,
                                               BLOCK_P=rows, BLOCK_E=_tile(e), BLOCK_U=_tile(u), num_warps=_WARPS)
    return buckets

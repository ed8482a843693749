"""LSH attention (Reformer sec. 2): hash, sort, chunk, attend within chunks, unsort, combine rounds.

Shape legend: b batch, h heads, l length (a multiple of the chunk size), e head dim, r hash rounds,
n chunks per round, c chunk size, w keys per chunk (c, or 2c with the look-back), u buckets / 2.

No (l, l) tensor is ever built: the largest intermediates are the (b, h, r, n, c, w) logits, linear in l.
"""

from __future__ import annotations

from typing import Any

import torch

from .chunked import chunk_attention, chunk_scores
from .masking import AttentionMap, normalize_keys

__all__ = ["bucket_dtype", "hash_vectors", "lsh_attention"]


def bucket_dtype(n_buckets: int) -> torch.dtype:
    """Smallest integer dtype that holds bucket ids 0..n_buckets (n_buckets itself is the padding bucket)."""
    return torch.uint8 if n_buckets < 256 else torch.int16


def hash_vectors(
    qk: torch.Tensor, rotations: torch.Tensor, n_buckets: int, valid: torch.Tensor | None
) -> torch.Tensor:
    """Angular LSH buckets, one set per round.

    Args:
        qk: shared query-key vectors, (b, h, l, e). Detached: hashing is not differentiated.
        rotations: random Gaussian projections, (h, e, r, u) with u = n_buckets / 2.
        n_buckets: buckets per round; padded positions get the extra bucket `n_buckets` (sorted last).
        valid: (b, l) bool, True for real positions; None = all real.
    Returns:
        buckets: (b, h, r, l), in `bucket_dtype(n_buckets)`.
    """
    # angular LSH: h(x) = argmax([xR; -xR])  (Reformer eq. 3; Andoni et al. 2015)
    b, h, l, _ = qk.shape
    r, u = rotations.shape[2], rotations.shape[3]
    rotations = rotations.to(qk.dtype)
    buckets = torch.empty(b, h, r, l, dtype=torch.long, device=qk.device)
    # slices of positions keep the (b, h, r, positions, u) projections small: u grows with l when the bucket
    # count is scaled with the length, and one unsliced projection would be quadratic in l
    step = max(1, 2**22 // max(1, b * h * r * u))
    for start in range(0, l, step):
        part = slice(start, start + step)
        rotated = torch.einsum("bhle,heru->bhrlu", qk[:, :, part].detach(), rotations)  # (b, h, r, s, u)
        # the largest of max(xR) and -min(xR) is the argmax over [xR; -xR], without building it
        top, top_idx = rotated.max(dim=-1)  # (b, h, r, s)
        bottom, bottom_idx = rotated.min(dim=-1)  # (b, h, r, s)
        buckets[..., part] = torch.where(top >= -bottom, top_idx, bottom_idx + u)
    if valid is not None:
        buckets = buckets.masked_fill(~valid[:, None, None, :], n_buckets)
    return buckets.to(bucket_dtype(n_buckets))


def lsh_attention(
    qk: torch.Tensor,
    v: torch.Tensor,
    buckets: torch.Tensor,
    chunk_size: int,
    valid: torch.Tensor | None = None,
    causal: bool = False,
    return_map: bool = False,
) -> tuple[torch.Tensor, AttentionMap | None]:
    """Attention within hash-sorted chunks, combined over rounds.

    Args:
        qk: shared query-key vectors, (b, h, l, e); l a multiple of `chunk_size`.
        v: values, (b, h, l, e).
        buckets: from `hash_vectors`, (b, h, r, l).
        chunk_size: c; each chunk attends to itself and the previous chunk of the same round (circularly).
        valid: (b, l) bool, True for real positions; None = all real.
        causal: mask keys whose original position is after the query's.
        return_map: also return the sparse `AttentionMap` (original order, round weights folded in).
    Returns:
        out (b, h, l, e) and the map or None.
    """
    b, h, l, e = qk.shape
    r = buckets.shape[2]
    c = chunk_size
    n = l // c
    assert n * c == l, "length must be padded to a multiple of the chunk size"

    # A stable sort by bucket within each round = sort by (round, bucket, position); int64 indices throughout.
    positions = torch.arange(l, device=qk.device)
    sorted_idx = torch.argsort(buckets.long(), dim=-1, stable=True)  # (b, h, r, l)
    undo_sort = torch.empty_like(sorted_idx).scatter_(-1, sorted_idx, positions.expand_as(sorted_idx))

    # Gather straight from (b, h, l, e) with the sorted positions: no r-fold copy of qk and v.
    s_qk = sort_gather(qk, sorted_idx, undo_sort)  # (b, h, r, l, e)
    s_v = sort_gather(v, sorted_idx, undo_sort)  # (b, h, r, l, e)
    s_pos = sorted_idx.view(b, h, r, n, c)
    s_k = normalize_keys(s_qk).view(b, h, r, n, c, e)
    s_qk, s_v = s_qk.view(b, h, r, n, c, e), s_v.view(b, h, r, n, c, e)

    if n > 1:
        # look one chunk back within the round (chunk 0 looks at the round's last chunk)
        k_win = torch.cat([s_k, s_k.roll(1, dims=3)], dim=4)  # (b, h, r, n, 2c, e)
        v_win = torch.cat([s_v, s_v.roll(1, dims=3)], dim=4)  # (b, h, r, n, 2c, e)
        k_pos = torch.cat([s_pos, s_pos.roll(1, dims=3)], dim=4)  # (b, h, r, n, 2c)
    else:
        k_win, v_win, k_pos = s_k, s_v, s_pos
    w = k_pos.shape[-1]

    key_valid = None
    if valid is not None:
        flat_pos = k_pos.reshape(b, h, -1)  # (b, h, r*n*w)
        key_valid = valid[:, None, :].expand(b, h, l).gather(2, flat_pos).view_as(k_pos)  # (b, h, r, n, w)

    # b*h*r*n independent (c x w) problems; memory linear in l, computed block by block (chunked.py)
    flat_out, flat_lse = chunk_attention(
        s_qk.reshape(-1, c, e), k_win.reshape(-1, w, e), v_win.reshape(-1, w, e), s_pos.reshape(-1, c),
        k_pos.reshape(-1, w), None if key_valid is None else key_valid.reshape(-1, w), causal,
        self_offset=0)  # each position occurs once per round: its own key is the diagonal of its own chunk

    # undo the sort, then combine rounds: out = sum_r softmax_r(lse_r) * out_r  (Reformer sec. 2, multi-round)
    out = unsort(flat_out.view(b, h, r, l, e), sorted_idx, undo_sort)  # (b, h, r, l, e)
    lse_rounds = flat_lse.view(b, h, r, l).gather(3, undo_sort)  # (b, h, r, l)
    round_weights = torch.softmax(lse_rounds, dim=2)  # (b, h, r, l)
    out = (out * round_weights.unsqueeze(-1).to(out.dtype)).sum(dim=2)  # (b, h, l, e)

    if not return_map:
        return out, None
    with torch.no_grad():
        dots = chunk_scores(s_qk.reshape(-1, c, e), k_win.reshape(-1, w, e), s_pos.reshape(-1, c),
                            k_pos.reshape(-1, w), None if key_valid is None else key_valid.reshape(-1, w), causal,
                            self_offset=0)
        probs = torch.exp(dots - flat_lse.unsqueeze(-1)).view(b, h, r, n, c, w)
        weights = probs * round_weights.gather(3, sorted_idx).view(b, h, r, n, c, 1)  # (b, h, r, n, c, w)
        weights = weights.view(b, h, r, l, w).gather(3, undo_sort.unsqueeze(-1).expand(-1, -1, -1, -1, w))
        indices = k_pos.unsqueeze(4).expand(-1, -1, -1, -1, c, -1).reshape(b, h, r, l, w)
        indices = indices.gather(3, undo_sort.unsqueeze(-1).expand(-1, -1, -1, -1, w))  # (b, h, r, l, w)
    amap = AttentionMap(
        indices=indices.permute(0, 1, 3, 2, 4).reshape(b, h, l, r * w),
        weights=weights.permute(0, 1, 3, 2, 4).reshape(b, h, l, r * w),
        length=l,
    )
    return out, amap


def _row_index(idx: torch.Tensor, rounds_in_source: bool) -> torch.Tensor:
    """Flat row numbers for `index_select` (row copies, much faster on CPU than an element-wise gather).

    idx: (b, h, r, l) positions within a length-l row block. The source is (b, h, l, e) when
    `rounds_in_source` is False (one block per (b, h)), else (b, h, r, l, e) (one block per (b, h, r)).
    """
    b, h, r, l = idx.shape
    if rounds_in_source:
        base = torch.arange(b * h * r, device=idx.device).view(b, h, r, 1) * l
    else:
        base = torch.arange(b * h, device=idx.device).view(b, h, 1, 1) * l
    return (idx + base).reshape(-1)  # (b*h*r*l,)


class _SortGather(torch.autograd.Function):
    """x (b, h, l, e) -> x in each round's sorted order (b, h, r, l, e).

    Each round is a permutation, so the backward is a gather by the inverse permutation summed over rounds,
    not a scatter-add (deterministic, and cheaper on CPU).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, sorted_idx: torch.Tensor, undo_sort: torch.Tensor) -> torch.Tensor:
        b, h, r, l = sorted_idx.shape
        e = x.shape[-1]
        ctx.save_for_backward(undo_sort)
        rows = x.reshape(b * h * l, e).index_select(0, _row_index(sorted_idx, rounds_in_source=False))
        return rows.view(b, h, r, l, e)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:
        (undo_sort,) = ctx.saved_tensors
        b, h, r, l, e = grad.shape
        rows = grad.reshape(-1, e).index_select(0, _row_index(undo_sort, rounds_in_source=True))
        return rows.view(b, h, r, l, e).sum(dim=2), None, None


class _Unsort(torch.autograd.Function):
    """y (b, h, r, l, e) in sorted order -> original order; the backward gathers with the forward permutation."""

    @staticmethod
    def forward(ctx: Any, y: torch.Tensor, sorted_idx: torch.Tensor, undo_sort: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(sorted_idx)
        e = y.shape[-1]
        return y.reshape(-1, e).index_select(0, _row_index(undo_sort, rounds_in_source=True)).view_as(y)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:
        (sorted_idx,) = ctx.saved_tensors
        e = grad.shape[-1]
        rows = grad.reshape(-1, e).index_select(0, _row_index(sorted_idx, rounds_in_source=True))
        return rows.view_as(grad), None, None


def sort_gather(x: torch.Tensor, sorted_idx: torch.Tensor, undo_sort: torch.Tensor) -> torch.Tensor:
    """(b, h, l, e) -> (b, h, r, l, e) in each round's sorted order; differentiable."""
    out: torch.Tensor = _SortGather.apply(x, sorted_idx, undo_sort)
    return out


def unsort(y: torch.Tensor, sorted_idx: torch.Tensor, undo_sort: torch.Tensor) -> torch.Tensor:
    """(b, h, r, l, e) sorted -> original order; differentiable."""
    out: torch.Tensor = _Unsort.apply(y, sorted_idx, undo_sort)
    return out

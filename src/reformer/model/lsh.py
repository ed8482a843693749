"""LSH attention (Reformer sec. 2): hash, sort, chunk, attend within chunks, unsort, combine rounds.

Shape legend: b batch, h heads, l length (a multiple of the chunk size), e head dim, r hash rounds,
n chunks per round, c chunk size, w keys per chunk (c, or 2c with the look-back), u buckets / 2.

No (l, l) tensor is ever built and no look-back window is copied: the largest intermediates are the
(b, h, r, c + l, e) sorted copies of qk and v (one extra chunk per round), linear in l.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .bucket_sort import sort_by_bucket
from .chunked import block_elements, chunk_scores, compute_dtype, window_attention, window_view
from .fused_lsh import hash_fused, lsh_attention_fused
from .masking import AttentionMap, normalize_keys

__all__ = ["FACTOR_ABOVE", "bucket_dtype", "bucket_factors", "hash_vectors", "lsh_attention", "rotation_columns",
           "sort_by_bucket", "wrap_chunks", "wrap_targets"]

# elements of one head group's (b, g, r, l, e) tensors: 2**20 float32 = 4 MiB on the CPU (at least one head per
# group); on a GPU, where every group repeats the whole pipeline's kernel launches, `chunked.block_elements`'
# 2**25 (every head of the bench-compare shape in one group up to L = 32,768)
_GROUP_ELEMENTS = 2**20


def _group_elements(device: torch.device) -> int:
    return _GROUP_ELEMENTS if device.type == "cpu" else block_elements(device)


def bucket_dtype(n_buckets: int) -> torch.dtype:
    """Smallest integer dtype that holds bucket ids 0..n_buckets (n_buckets itself is the padding bucket)."""
    return torch.uint8 if n_buckets < 256 else torch.int16


FACTOR_ABOVE = 128
"""Bucket counts above this (and divisible by 4) are hashed as two independent angular hashes."""


def bucket_factors(n_buckets: int) -> tuple[int, ...]:
    """How `n_buckets` is hashed: (n_buckets,), or (a, b) with a * b = n_buckets, both even, a <= b, a as
    close to sqrt(n_buckets) as possible.

    One angular hash into n buckets needs n/2 projection columns per round, so hashing costs O(l * e * n) and,
    with the usual n ~ 2l / chunk, grows as l^2 (unfactorised, at l = 131,072 it takes a third of an attention
    layer's time).
    Two independent hashes into a and b buckets, combined as a + a * b', need (a + b) / 2 columns: the
    factorisation HF transformers offers as `num_buckets=[a, b]`. Each factor is an angular LSH, so their
    product is one as well (two vectors share a bucket only if they share both).
    """
    if n_buckets <= FACTOR_ABOVE or n_buckets % 4:
        return (n_buckets,)
    for a in range(2 * (math.isqrt(n_buckets) // 2), 1, -2):
        if n_buckets % a == 0 and (n_buckets // a) % 2 == 0:
            return (a, n_buckets // a)
    return (n_buckets,)  # pragma: no cover - a = 2 always divides an n_buckets divisible by 4


def rotation_columns(n_buckets: int) -> int:
    """Projection columns per head and round that `hash_vectors` needs: the sum of f / 2 over the factors."""
    return sum(f // 2 for f in bucket_factors(n_buckets))


def _signed_argmax(cols: torch.Tensor, half: int) -> torch.Tensor:
    """argmax over [xR; -xR] along dim -2 without building it: (..., half, s) -> (..., s) int64 in [0, 2*half).

    The larger of max(xR) and -min(xR) wins; its column is found by comparing against it (index-free reductions
    only; a tie, possible in bfloat16, goes to the higher column, deterministically): the largest of
    hit x column, with the columns in the narrowest integer type (a product of a bool and int8 is ~1.7x faster on
    CPU than `torch.where` into int16).
    """
    top, bottom = cols.amax(dim=-2, keepdim=True), cols.amin(dim=-2, keepdim=True)  # (..., 1, s)
    positive = top >= -bottom  # (..., 1, s)
    kind = torch.int8 if half <= 127 else torch.int16  # half <= 16383
    column = torch.arange(half, dtype=kind, device=cols.device).view(half, 1)  # (half, 1)
    index = ((cols == torch.where(positive, top, bottom)) * column).amax(dim=-2)  # (..., s)
    return index.long() + (~positive.squeeze(-2)).long() * half


def hash_vectors(
    qk: torch.Tensor, rotations: torch.Tensor, n_buckets: int, valid: torch.Tensor | None, fused: bool = False
) -> torch.Tensor:
    """Angular LSH buckets, one set per round.

    Args:
        qk: shared query-key vectors, (b, h, l, e). Detached: hashing is not differentiated.
        rotations: random Gaussian projections, (h, e, r, u) with u = `rotation_columns(n_buckets)`
            (n_buckets / 2 unless the count is factorised: `bucket_factors`).
        n_buckets: buckets per round; padded positions get the extra bucket `n_buckets` (sorted last).
        valid: (b, l) bool, True for real positions; None = all real.
        fused: hash in one Triton kernel (`fused_lsh.hash_fused`): the same ids, except where two projections are
            within float32 rounding of each other (the products sum in another order).
    Returns:
        buckets: (b, h, r, l), in `bucket_dtype(n_buckets)`.
    """
    # angular LSH: h(x) = argmax([xR; -xR])  (Reformer eq. 3; Andoni et al. 2015); with factors (a, b):
    # h(x) = h_a(x) + a * h_b(x), h_a and h_b on disjoint columns of R
    b, h, l, _ = qk.shape
    r, u = rotations.shape[2], rotations.shape[3]
    factors = bucket_factors(n_buckets)
    assert u == rotation_columns(n_buckets), "rotations must have rotation_columns(n_buckets) columns"
    if fused:
        return hash_fused(qk.detach(), rotations, factors, n_buckets, valid, bucket_dtype(n_buckets))
    # hashing is never differentiated and runs in float32 even under autocast: bfloat16 projections tie often
    # (8-bit mantissa). The vectors hashed are the compute dtype's, though: under bfloat16 autocast `qk` comes
    # out of a bfloat16 projection, so a few buckets differ from a float32 run (14 of 4,096 in one check)
    rotations = rotations.float()
    buckets = torch.empty(b, h, r, l, dtype=torch.long, device=qk.device)
    # slices of positions keep the (b, h, r, u, positions) projections small: u grows with l when the bucket
    # count is scaled with the length, and one unsliced projection would be quadratic in l
    flat_rotations = rotations.reshape(h, -1, r * u).transpose(1, 2)  # (h, r*u, e): one matmul for all rounds
    step = max(1, block_elements(qk.device) // max(1, b * h * r * u))
    for start in range(0, l, step):
        part = slice(start, start + step)
        # positions innermost: the reductions over columns below then run across contiguous positions, which
        # is ~2x faster on CPU than max/min with indices along a short last dimension
        with torch.autocast(qk.device.type, enabled=False):
            rotated = torch.matmul(flat_rotations, qk[:, :, part].detach().float().transpose(2, 3))  # (b,h,r*u,s)
        rotated = rotated.view(b, h, r, u, rotated.shape[-1])  # (b, h, r, u, s)
        ids, column, scale = None, 0, 1
        for f in factors:
            half = f // 2
            cols = rotated[:, :, :, column:column + half]  # (b, h, r, f/2, s), a view
            factor_id = _signed_argmax(cols, half)  # (b, h, r, s) in [0, f)
            ids = factor_id if ids is None else ids + scale * factor_id
            column, scale = column + half, scale * f
        assert ids is not None
        buckets[..., part] = ids
    if valid is not None:
        buckets = buckets.masked_fill(~valid[:, None, None, :], n_buckets)
    return buckets.to(bucket_dtype(n_buckets))


def wrap_chunks(valid: torch.Tensor | None, length: int, chunk_size: int) -> torch.Tensor | None:
    """The chunk that each round's first sorted chunk looks back at, per batch row: (b,) int64, or None for the
    round's last chunk in every row.

    Padded positions hash to the extra bucket and sort last, so a row padded by a chunk or more ends its rounds
    in chunks of padding only. Looking back at the last chunk that holds a real key instead makes a sequence's
    output independent of how far its batch pads it (a 40-step sequence padded to 48 and to 64 differed by up
    to 0.37 before). Padding within one chunk (rounding up to a multiple of the chunk size) leaves that chunk the
    last one, so unpadded and internally padded inputs keep the usual circular look-back. A row with one chunk
    of real keys keeps looking back at padding (masked): alone it would be a single chunk, with no look-back.
    """
    wrap = wrap_targets(valid, length, chunk_size)
    return None if wrap is None or bool((wrap == length // chunk_size - 1).all()) else wrap


def wrap_targets(valid: torch.Tensor | None, length: int, chunk_size: int) -> torch.Tensor | None:
    """`wrap_chunks` without its check that some row differs from the default, which makes the host wait for the
    device: (b,) int64, or None without padding or with one chunk a round."""
    n = length // chunk_size
    if valid is None or n < 2:
        return None
    # every layer of a forward (and its recomputation) asks with the same mask: computed once and kept on the
    # mask itself, for as long as the mask lives unchanged (its version counts in-place writes; an inference-mode
    # tensor counts none, so it is not kept). Seven kernel launches a layer otherwise, where a GPU's batch-1
    # forecast is bound by launches.
    key = None if valid.is_inference() else (length, chunk_size, valid._version)
    kept = getattr(valid, "_reformer_wrap", None)
    if key is not None and kept is not None and kept[0] == key:
        return kept[1]
    last_real = (valid.sum(dim=1) + chunk_size - 1) // chunk_size - 1  # (b,)
    wrap = torch.where(last_real >= 1, last_real, n - 1)
    if key is not None:
        valid._reformer_wrap = (key, wrap)  # type: ignore[attr-defined]
    return wrap


def lsh_attention(
    qk: torch.Tensor,
    v: torch.Tensor,
    buckets: torch.Tensor,
    chunk_size: int,
    valid: torch.Tensor | None = None,
    causal: bool = False,
    return_map: bool = False,
    fused: bool = False,
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
        fused: attend with the fused Triton kernels (`fused_lsh.py`); with `return_map`, or in float64, the
            reference kernels run instead.
    Returns:
        out (b, h, l, e) and the map or None.
    """
    b, h, l, e = qk.shape
    r = buckets.shape[2]
    assert l % chunk_size == 0, "length must be padded to a multiple of the chunk size"
    # Heads are independent: a few at a time keeps every (b, g, r, l, e) intermediate a few MiB. Large fresh
    # tensors cost page faults on every allocation (glibc returns them to the OS on free), which measured
    # ~40 % of a long forward pass; small ones are recycled from the heap. Each group is its own graph node.
    # the fused kernels (every head at once; float32 accumulation, so float64 and maps stay on the reference) take
    # the wrap targets as they are: a row at the default costs nothing there, and no check makes the host wait
    if fused and not return_map and (dtype := compute_dtype(qk, qk, v)) != torch.float64:
        return lsh_attention_fused(qk.to(dtype), v.to(dtype), sort_by_bucket(buckets, flat=True),
                                   wrap_targets(valid, l, chunk_size), valid, chunk_size, causal), None
    wrap = wrap_chunks(valid, l, chunk_size)  # once per call: the same for every head group
    group = max(1, _group_elements(qk.device) // max(1, b * r * l * e))
    if group >= h:
        return _lsh_heads(qk, v, buckets, chunk_size, valid, wrap, causal, return_map)
    outs, maps = [], []
    for start in range(0, h, group):
        heads = slice(start, start + group)
        out, amap = _lsh_heads(qk[:, heads], v[:, heads], buckets[:, heads], chunk_size, valid, wrap, causal,
                               return_map)
        outs.append(out)
        maps.append(amap)
    if not return_map:
        return torch.cat(outs, dim=1), None  # (b, h, l, e)
    merged = AttentionMap(indices=torch.cat([m.indices for m in maps if m is not None], dim=1),
                          weights=torch.cat([m.weights for m in maps if m is not None], dim=1), length=l)
    return torch.cat(outs, dim=1), merged


def _lsh_heads(qk: torch.Tensor, v: torch.Tensor, buckets: torch.Tensor, chunk_size: int,
               valid: torch.Tensor | None, wrap: torch.Tensor | None, causal: bool, return_map: bool
               ) -> tuple[torch.Tensor, AttentionMap | None]:
    """`lsh_attention` on a group of heads: (b, g, l, e) -> (b, g, l, e); `wrap` from `wrap_chunks`."""
    b, h, l, e = qk.shape
    r = buckets.shape[2]
    c = chunk_size
    n = l // c

    # the look-back: chunk i attends to itself and chunk i - 1 of its round, chunk 0 to the round's last chunk;
    # laid out as [last chunk, chunk 0 .. chunk n-1] per round, every window is a view (chunked.py)
    before = 1 if n > 1 else 0
    lead = before * c

    # A stable sort by bucket within each round = sort by (round, bucket, position); int64 indices throughout.
    positions = torch.arange(l, device=qk.device)
    sorted_idx = sort_by_bucket(buckets)  # (b, h, r, l)
    undo_sort = torch.empty_like(sorted_idx).scatter_(-1, sorted_idx, positions.expand_as(sorted_idx))
    if wrap is None:  # each round's last chunk, in every row (always with one chunk a round: no look-back)
        wrap_start = None
        buffer_idx = torch.cat([sorted_idx[..., l - lead:], sorted_idx], dim=-1)  # (b, h, r, lead + l)
    else:
        wrap_start = wrap * c  # (b,)
        cols = (wrap_start.view(b, 1, 1, 1) + torch.arange(c, device=qk.device)).expand(b, h, r, c)
        buffer_idx = torch.cat([sorted_idx.gather(-1, cols), sorted_idx], dim=-1)  # (b, h, r, lead + l)

    # Gather straight from (b, h, l, e) with the sorted positions: no r-fold copy of qk and v.
    s_qk = sort_gather(qk, buffer_idx, undo_sort, lead, wrap_start)  # (b, h, r, lead + l, e)
    s_v = sort_gather(v, buffer_idx, undo_sort, lead, wrap_start)  # (b, h, r, lead + l, e)
    s_k = normalize_keys(s_qk)  # (b, h, r, lead + l, e)
    key_valid = None
    if valid is not None and not bool(valid.all()):
        flat_idx = buffer_idx.reshape(b, h, -1)  # (b, h, r*(lead + l))
        key_valid = valid[:, None, :].expand(b, h, l).gather(2, flat_idx).view(-1, c)  # (M, c)
    buffer_pos = buffer_idx.view(-1, c) if causal else None  # (M, c), M = b*h*r*(n + before) chunks

    # M small (c x 2c) problems; memory linear in l, computed block by block. Each position occurs once per
    # round, so its own key sits at column `lead` + its index in the chunk.
    flat_out, flat_lse = window_attention(s_qk.view(-1, c, e), s_k.view(-1, c, e), s_v.view(-1, c, e), buffer_pos,
                                          buffer_pos, key_valid, before, 0, causal, self_offset=lead)

    # undo the sort, then combine rounds: out = sum_r softmax_r(lse_r) * out_r  (Reformer sec. 2, multi-round)
    out = unsort(flat_out.view(b, h, r, lead + l, e), sorted_idx, undo_sort, lead)  # (b, h, r, l, e)
    lse_rounds = flat_lse.view(b, h, r, lead + l)[..., lead:].gather(3, undo_sort)  # (b, h, r, l)
    round_weights = torch.softmax(lse_rounds, dim=2)  # (b, h, r, l)
    out = (out * round_weights.unsqueeze(-1).to(out.dtype)).sum(dim=2)  # (b, h, l, e)

    if not return_map:
        return out, None
    with torch.no_grad():
        w = (before + 1) * c
        rows = torch.arange(b * h * r * (n + before), device=qk.device).view(b, h, r, n + before)[..., before:]
        rows = rows.reshape(-1)  # the real query chunks of the buffer, in order: (b*h*r*n,)
        m = rows.numel() + b * h * r * before

        def windows(t: torch.Tensor) -> torch.Tensor:  # (M, c, ...) -> the real chunks' windows (b*h*r*n, w, ...)
            return window_view(t, before, m, before, 0)[rows - before]

        k_pos = windows(buffer_idx.view(-1, c))  # (b*h*r*n, w)
        dots = chunk_scores(s_qk.view(-1, c, e)[rows], windows(s_k.view(-1, c, e)), buffer_idx.view(-1, c)[rows],
                            k_pos, None if key_valid is None else windows(key_valid), causal,
                            self_offset=lead)  # (b*h*r*n, c, w)
        probs = torch.exp(dots - flat_lse[rows].unsqueeze(-1)).view(b, h, r, n, c, w)
        weights = probs * round_weights.gather(3, sorted_idx).view(b, h, r, n, c, 1)  # (b, h, r, n, c, w)
        weights = weights.view(b, h, r, l, w).gather(3, undo_sort.unsqueeze(-1).expand(-1, -1, -1, -1, w))
        indices = k_pos.view(b, h, r, n, 1, w).expand(-1, -1, -1, -1, c, -1).reshape(b, h, r, l, w)
        indices = indices.gather(3, undo_sort.unsqueeze(-1).expand(-1, -1, -1, -1, w))  # (b, h, r, l, w)
    amap = AttentionMap(
        indices=indices.permute(0, 1, 3, 2, 4).reshape(b, h, l, r * w),
        weights=weights.permute(0, 1, 3, 2, 4).reshape(b, h, l, r * w),
        length=l,
    )
    return out, amap


def _row_index(idx: torch.Tensor, block_len: int, rounds_in_source: bool) -> torch.Tensor:
    """Flat row numbers for `index_select` (row copies, much faster on CPU than an element-wise gather).

    idx: (b, h, r, k) positions within a row block of `block_len` rows. The source is (b, h, block_len, e) when
    `rounds_in_source` is False (one block per (b, h)), else (b, h, r, block_len, e) (one block per (b, h, r)).
    """
    b, h, r, _ = idx.shape
    if rounds_in_source:
        base = torch.arange(b * h * r, device=idx.device).view(b, h, r, 1) * block_len
    else:
        base = torch.arange(b * h, device=idx.device).view(b, h, 1, 1) * block_len
    return (idx + base).reshape(-1)  # (b*h*r*k,)


class _SortGather(torch.autograd.Function):
    """x (b, h, l, e) -> the rows `buffer_idx` (b, h, r, lead + l) of each round, (b, h, r, lead + l, e).

    `buffer_idx` is each round's sorted order with `lead` of its entries copied in front: the last ones, or per
    batch row those from `wrap_start` (b,) on. Each round is a permutation plus that copy, so the backward folds
    the copy's gradient into the rows it copied and gathers by the inverse permutation, summed over rounds.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, buffer_idx: torch.Tensor, undo_sort: torch.Tensor, lead: int,
                wrap_start: torch.Tensor | None) -> Any:
        b, h, r, m = buffer_idx.shape
        l, e = x.shape[-2:]
        ctx.save_for_backward(undo_sort, wrap_start)
        ctx.lead = lead
        rows = x.reshape(b * h * l, e).index_select(0, _row_index(buffer_idx, l, rounds_in_source=False))
        return rows.view(b, h, r, m, e)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:
        undo_sort, wrap_start = ctx.saved_tensors
        lead = ctx.lead
        b, h, r, m, e = grad.shape
        if lead:
            folded = grad[:, :, :, lead:].clone()  # (b, h, r, l, e)
            if wrap_start is None:
                folded[:, :, :, m - 2 * lead:] += grad[:, :, :, :lead]
            else:  # row by row, the copied sorted positions wrap_start .. wrap_start + lead - 1
                rows_at = (wrap_start.view(b, 1, 1, 1) + torch.arange(lead, device=grad.device)).expand(b, h, r, lead)
                folded.scatter_add_(3, rows_at.unsqueeze(-1).expand(-1, -1, -1, -1, e), grad[:, :, :, :lead])
            grad = folded
        rows = grad.reshape(-1, e).index_select(0, _row_index(undo_sort, m - lead, rounds_in_source=True))
        return rows.view(b, h, r, m - lead, e).sum(dim=2), None, None, None, None


class _Unsort(torch.autograd.Function):
    """y (b, h, r, lead + l, e) in buffer order -> (b, h, r, l, e) original order; the backward gathers with the
    forward permutation (and gives the `lead` copied rows, which no output reads, zero gradient)."""

    @staticmethod
    def forward(ctx: Any, y: torch.Tensor, sorted_idx: torch.Tensor, undo_sort: torch.Tensor, lead: int) -> Any:
        ctx.save_for_backward(sorted_idx)
        ctx.lead = lead
        b, h, r, m, e = y.shape
        rows = _row_index(undo_sort + lead, m, rounds_in_source=True)
        return y.reshape(-1, e).index_select(0, rows).view(b, h, r, m - lead, e)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:
        (sorted_idx,) = ctx.saved_tensors
        lead = ctx.lead
        b, h, r, l, e = grad.shape
        rows = grad.reshape(-1, e).index_select(0, _row_index(sorted_idx, l, rounds_in_source=True))
        d_y = rows.view(b, h, r, l, e)
        if lead:
            d_y = torch.cat([d_y.new_zeros(b, h, r, lead, e), d_y], dim=3)  # (b, h, r, lead + l, e)
        return d_y, None, None, None


def sort_gather(x: torch.Tensor, buffer_idx: torch.Tensor, undo_sort: torch.Tensor, lead: int = 0,
                wrap_start: torch.Tensor | None = None) -> torch.Tensor:
    """(b, h, l, e) -> (b, h, r, lead + l, e): `lead` sorted rows of each round (its last ones, or per batch row
    those from `wrap_start` on), then all; differentiable."""
    out: torch.Tensor = _SortGather.apply(x, buffer_idx, undo_sort, lead, wrap_start)
    return out


def unsort(y: torch.Tensor, sorted_idx: torch.Tensor, undo_sort: torch.Tensor, lead: int = 0) -> torch.Tensor:
    """(b, h, r, lead + l, e) in buffer order -> (b, h, r, l, e) original order; differentiable."""
    out: torch.Tensor = _Unsort.apply(y, sorted_idx, undo_sort, lead)
    return out

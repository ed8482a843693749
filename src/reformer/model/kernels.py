"""Full and local shared-QK attention kernels, with the same scoring and masking rule as LSH.

Shape legend: b batch, h heads, l length, e head dim, n chunks, c chunk size, w keys per window.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .chunked import chunk_attention, chunk_scores, window_attention
from .masking import MASKED, SELF_PENALTY, AttentionMap, mask_logits, normalize_keys, promote_logits

__all__ = ["full_attention", "local_attention"]


def _sdpa_mask(l: int, valid: torch.Tensor | None, causal: bool, dtype: torch.dtype,
               device: torch.device) -> torch.Tensor:
    """Additive mask for SDPA implementing `mask_logits`: (1 or b, 1, l, l)."""
    masked = MASKED if dtype in (torch.float32, torch.float64) else torch.finfo(dtype).min / 2
    positions = torch.arange(l, device=device)
    bias = torch.zeros(l, l, dtype=dtype, device=device)
    bias.fill_diagonal_(SELF_PENALTY)
    allowed = torch.ones(1, l, l, dtype=torch.bool, device=device)
    if causal:
        allowed = allowed & (positions[None, :] <= positions[:, None])
    if valid is not None:
        allowed = allowed & valid[:, None, :]  # (b, l, l)
    return bias.masked_fill(~allowed, masked).unsqueeze(1)  # (b, 1, l, l)


def full_attention(
    qk: torch.Tensor,
    v: torch.Tensor,
    valid: torch.Tensor | None = None,
    causal: bool = False,
    return_map: bool = False,
) -> tuple[torch.Tensor, AttentionMap | None]:
    """O(l^2) softmax attention over the shared QK (Reformer sec. 2 baseline), via SDPA when no map is wanted.

    Args:
        qk: (b, h, l, e); v: (b, h, l, e); valid: (b, l) bool or None; causal: mask later keys.
    Returns:
        out (b, h, l, e) and, when `return_map`, a dense-indexed `AttentionMap` (k = l).
    """
    b, h, l, _ = qk.shape
    keys = normalize_keys(qk)
    if not return_map:
        mask = _sdpa_mask(l, valid, causal, qk.dtype, qk.device)
        out = F.scaled_dot_product_attention(qk, keys, v, attn_mask=mask, scale=1.0)
        return out, None
    positions = torch.arange(l, device=qk.device)
    dots = promote_logits(qk @ keys.transpose(-1, -2))  # (b, h, l, l)
    key_valid = None if valid is None else valid[:, None, :]  # (b, 1, l)
    dots = mask_logits(dots, positions, positions, key_valid, causal)
    probs = torch.softmax(dots, dim=-1)  # (b, h, l, l)
    out = probs.to(v.dtype) @ v  # (b, h, l, e)
    indices = positions.expand(b, h, l, l)
    return out, AttentionMap(indices=indices, weights=probs, length=l)


def local_attention(
    qk: torch.Tensor,
    v: torch.Tensor,
    chunk_size: int,
    valid: torch.Tensor | None = None,
    causal: bool = False,
    return_map: bool = False,
    fused: bool = False,
) -> tuple[torch.Tensor, AttentionMap | None]:
    """Chunked window attention, O(l * w): each chunk attends to itself and its neighbours.

    The window is the previous chunk, the chunk itself and (unless causal) the next chunk; no wrap-around.

    Args:
        qk: (b, h, l, e) with l a multiple of `chunk_size`; v: (b, h, l, e); valid: (b, l) bool or None.
        fused: run the fused Triton kernels (`fused.py`); the map, when asked for, still comes from this path.
    Returns:
        out (b, h, l, e) and, when `return_map`, an `AttentionMap` with k = w.
    """
    if fused and not return_map:
        return _local_fused(qk, v, chunk_size, valid, causal), None
    b, h, l, e = qk.shape
    c = chunk_size
    n = l // c
    assert n * c == l, "length must be padded to a multiple of the chunk size"
    q = qk.view(b, h, n, c, e)
    keys = F.pad(normalize_keys(q), (0, 0, 0, 0, 1, 1))  # (b, h, n+2, c, e)
    values = F.pad(v.view(b, h, n, c, e), (0, 0, 0, 0, 1, 1))  # (b, h, n+2, c, e)
    # original position of every padded-window slot; -1 marks the out-of-range chunks at both ends
    pos = F.pad(torch.arange(l, device=qk.device).view(n, c), (0, 0, 1, 1), value=-1)  # (n+2, c)
    offsets = (0, 1) if causal else (0, 1, 2)
    k_win = torch.cat([keys[:, :, o:o + n] for o in offsets], dim=3)  # (b, h, n, w, e)
    v_win = torch.cat([values[:, :, o:o + n] for o in offsets], dim=3)  # (b, h, n, w, e)
    k_pos = torch.cat([pos[o:o + n] for o in offsets], dim=1)  # (n, w)
    in_range = k_pos >= 0
    key_valid = in_range.expand(b, h, n, -1)  # (b, h, n, w)
    if valid is not None:
        gathered = valid[:, k_pos.clamp(min=0)]  # (b, n, w)
        key_valid = key_valid & gathered[:, None]
    q_pos = torch.arange(l, device=qk.device).view(n, c)
    w = k_pos.shape[-1]
    # b*h*n independent (c x w) problems; the chunk's own keys start at column c (after the previous chunk)
    flat_q, flat_k = q.reshape(-1, c, e), k_win.reshape(-1, w, e)
    flat_q_pos, flat_k_pos = q_pos.expand(b * h, n, c).reshape(-1, c), k_pos.expand(b * h, n, w).reshape(-1, w)
    flat_valid = key_valid.reshape(-1, w)
    flat_out, flat_lse = chunk_attention(flat_q, flat_k, v_win.reshape(-1, w, e), flat_q_pos, flat_k_pos,
                                         flat_valid, causal, self_offset=c)
    out = flat_out.view(b, h, l, e)
    if not return_map:
        return out, None
    with torch.no_grad():
        dots = chunk_scores(flat_q, flat_k, flat_q_pos, flat_k_pos, flat_valid, causal, self_offset=c)
        probs = torch.exp(dots - flat_lse.unsqueeze(-1))  # (b*h*n, c, w)
    indices = k_pos.clamp(min=0).unsqueeze(1).expand(n, c, w).reshape(1, 1, l, w).expand(b, h, l, w)
    weights = probs.view(b, h, l, w) * in_range.unsqueeze(1).expand(n, c, w).reshape(1, 1, l, w)
    return out, AttentionMap(indices=indices, weights=weights, length=l)


def _local_fused(qk: torch.Tensor, v: torch.Tensor, c: int, valid: torch.Tensor | None, causal: bool) -> torch.Tensor:
    """`local_attention`'s output through the fused window kernels: (b, h, l, e) -> (b, h, l, e).

    Every head's chunks are laid out with one padding chunk at each end, (b*h*(n+2), c, e), so that each real
    chunk's window (the chunk before, itself, and unless causal the chunk after) is a run of neighbouring chunks
    of one buffer; the padding chunks are masked keys, and the queries among them are discarded.
    """
    b, h, l, e = qk.shape
    n = l // c
    assert n * c == l, "length must be padded to a multiple of the chunk size"

    def padded(t: torch.Tensor) -> torch.Tensor:  # (b, h, l, e) -> (b*h*(n+2), c, e)
        return F.pad(t.reshape(b, h, n, c, e), (0, 0, 0, 0, 1, 1)).reshape(-1, c, e)

    in_range = F.pad(torch.ones(n, c, dtype=torch.bool, device=qk.device), (0, 0, 1, 1), value=False)  # (n+2, c)
    key_valid = in_range.expand(b, h, n + 2, c)
    if valid is not None:
        key_valid = key_valid & F.pad(valid.view(b, n, c), (0, 0, 1, 1), value=False)[:, None]  # (b, h, n+2, c)
    pos = None
    if causal:
        pos = F.pad(torch.arange(l, device=qk.device).view(n, c), (0, 0, 1, 1), value=-1)  # (n+2, c)
        pos = pos.expand(b * h, n + 2, c).reshape(-1, c)
    # own key at window column c + its index: the window starts one chunk before the query's
    out, _ = window_attention(padded(qk), padded(normalize_keys(qk)), padded(v), pos, pos,
                              key_valid.reshape(-1, c), 1, 0 if causal else 1, causal, self_offset=c, fused=True)
    return out.view(b, h, n + 2, c, e)[:, :, 1:n + 1].reshape(b, h, l, e)

"""Attention at a few query positions only: what a prediction read from one position needs of the last layer.

Shape legend: b batch, h heads, l length, e head dim, r hash rounds (1 for full and local attention), w keys each
query position sees per round, c chunk size.

A model that pools the last position (`pooling="last"`) reads one output position of its last layer, and only
the attention and feed-forward of that position depend on nothing else: the keys are every position's (already
computed by the layers below). HF transformers' `logits_to_keep` makes the same cut for language models. For each
kernel the function below builds the keys a query position sees in the full computation, in original positions:

* full: every position;
* local: the chunk holding the query and its neighbours (-1 marks a neighbour outside the sequence);
* LSH: per round, the query's sorted chunk and the one before it (circularly), exactly as `lsh_attention` lays
  them out after its stable sort by bucket;

and `attend_at` scores the query against them with the same rule as the full kernels (`masking.py`: self penalty,
then padding and causal masks on original positions), combining LSH rounds by their logsumexp:

    out = sum_r softmax_r(lse_r) * softmax(q K_r^T / 1) V_r      (Reformer sec. 2, multi-round LSH)

The result equals the full computation's row at that position to rounding.
"""

from __future__ import annotations

import torch

from .chunked import chunk_attention
from .lsh import sort_by_bucket, wrap_targets
from .masking import normalize_keys

__all__ = ["attend_at", "full_keys_at", "local_keys_at", "lsh_keys_at"]


def full_keys_at(b: int, h: int, l: int, device: torch.device) -> torch.Tensor:
    """Full attention: every position, (b, h, 1, l)."""
    return torch.arange(l, device=device).expand(b, h, 1, l)


def local_keys_at(queries: torch.Tensor, h: int, l: int, chunk_size: int, causal: bool) -> torch.Tensor:
    """Local attention: the query's chunk, the one before and (unless causal) the one after; -1 outside.

    queries (b,) -> (b, h, 1, w), w = 2c or 3c.
    """
    c, n = chunk_size, l // chunk_size
    chunk = queries // c  # (b,)
    offsets = (-1, 0) if causal else (-1, 0, 1)
    within = torch.arange(c, device=queries.device)
    parts = []
    for offset in offsets:
        neighbour = (chunk + offset).unsqueeze(-1)  # (b, 1)
        positions = neighbour * c + within  # (b, c)
        parts.append(torch.where((neighbour >= 0) & (neighbour < n), positions, -1))
    keys = torch.cat(parts, dim=-1)  # (b, w)
    return keys.view(-1, 1, 1, keys.shape[-1]).expand(-1, h, 1, -1)


def lsh_keys_at(buckets: torch.Tensor, queries: torch.Tensor, chunk_size: int,
                valid: torch.Tensor | None = None) -> torch.Tensor:
    """LSH: per round, the positions of the query's sorted chunk and the previous one, (b, h, r, w), w = 2c
    (c when a round is a single chunk); the first chunk's previous one is `lsh.wrap_chunks`'.

    buckets (b, h, r, l) from `hash_vectors`; queries (b,); valid (b, l) bool or None.
    """
    b, l = buckets.shape[0], buckets.shape[-1]
    c, n = chunk_size, l // chunk_size
    sorted_idx = sort_by_bucket(buckets)  # (b, h, r, l), the order lsh_attention chunks
    slot = (sorted_idx == queries.view(b, 1, 1, 1)).int().argmax(dim=-1)  # (b, h, r): the query's sorted slot
    chunk = slot // c
    wrap = wrap_targets(valid, l, c)  # as `lsh.wrap_chunks`, without making the host wait for the device
    before = (chunk - 1) % n if wrap is None else torch.where(chunk == 0, wrap.view(b, 1, 1), chunk - 1)
    chunks = [before, chunk] if n > 1 else [chunk]
    within = torch.arange(c, device=buckets.device)
    slots = torch.cat([(part.unsqueeze(-1) * c + within) for part in chunks], dim=-1)  # (b, h, r, w)
    return sorted_idx.gather(-1, slots)


def attend_at(qk: torch.Tensor, v: torch.Tensor, queries: torch.Tensor, key_index: torch.Tensor,
              valid: torch.Tensor | None, causal: bool) -> torch.Tensor:
    """Shared-QK attention of the positions `queries` to the keys `key_index`, rounds combined.

    Args:
        qk, v: (b, h, l, e); queries: (b,) int64, one query position per batch row.
        key_index: (b, h, r, w) int64 original key positions per round; -1 = no key (masked).
        valid: (b, l) bool, True for real positions; None = all real.
        causal: mask keys after the query.
    Returns:
        (b, h, 1, e).
    """
    b, h, _, e = qk.shape
    r, w = key_index.shape[2:]
    present = key_index >= 0
    index = key_index.clamp(min=0)
    rows = index.reshape(b, h, r * w, 1).expand(-1, -1, -1, e)
    keys = normalize_keys(qk.gather(2, rows)).view(b * h * r, w, e)
    values = v.gather(2, rows).view(b * h * r, w, e)
    query = qk.gather(2, queries.view(b, 1, 1, 1).expand(-1, h, 1, e))  # (b, h, 1, e)
    query = query.unsqueeze(2).expand(-1, -1, r, -1, -1).reshape(b * h * r, 1, e)
    key_valid: torch.Tensor | None = present
    if valid is not None:
        key_valid = present & valid.view(b, 1, 1, -1).expand(-1, h, r, -1).gather(3, index)
    # no mask where every key is real: a shortcut on the CPU; on a GPU the check would make the host wait
    if key_valid is not None and key_valid.device.type == "cpu" and bool(key_valid.all()):
        key_valid = None
    q_pos = queries.view(b, 1, 1, 1).expand(-1, h, r, 1).reshape(-1, 1)  # (b*h*r, 1)
    out, lse = chunk_attention(query, keys, values, q_pos, key_index.reshape(-1, w),
                               None if key_valid is None else key_valid.reshape(-1, w), causal)
    weights = torch.softmax(lse.view(b, h, r), dim=-1)  # (b, h, r)
    out = (out.view(b, h, r, e) * weights.unsqueeze(-1).to(out.dtype)).sum(dim=2)  # (b, h, e)
    return out.unsqueeze(2)

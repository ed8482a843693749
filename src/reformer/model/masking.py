"""Logit masking shared by the full, LSH and local kernels, and the sparse attention map they return.

Shape legend: b batch, h heads, l length, q queries, k keys (per query block), e head dim.

Every kernel scores queries against keys with the same rule, which is what makes their outputs comparable and a
checkpoint portable between them:

* keys are the unit-normalised shared query-key vectors (Reformer sec. 2, "shared-QK Transformer");
* a position attends to itself only when nothing else is available: its own logit gets `SELF_PENALTY` added,
  so it wins only against masked keys (Reformer sec. 2);
* masked keys (padding, the future under `causal`) are filled with a very negative finite value after the self
  penalty, so a fully masked row stays finite (no NaN) under float16 / bfloat16 autocast too.

Logits are promoted to at least float32 before masking and the logsumexp, whatever the autocast dtype.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["MASKED", "SELF_PENALTY", "AttentionMap", "mask_logits", "normalize_keys", "promote_logits"]

# Added to a position's logit for itself. Finite and representable in float16 (max 65504).
SELF_PENALTY = -1.0e4
# Filled into masked logits; applied in float32 or wider, after SELF_PENALTY.
MASKED = -1.0e9


_KEY_EPS = 1e-6


def normalize_keys(qk: torch.Tensor) -> torch.Tensor:
    """Unit-length keys from shared query-key vectors: k = qk / max(||qk||, eps), as `F.normalize`.

    Shapes: (..., e) -> (..., e). With gradients it runs as `_NormalizeKeys`, whose backward is one fused pass
    instead of the dozen autograd makes through `F.normalize` (divisions, a negation, products, sums), each over an
    (r, l, e) key tensor that at long L does not fit in cache.
    """
    if torch.is_grad_enabled() and qk.requires_grad:
        return _NormalizeKeys.apply(qk)
    return F.normalize(qk, p=2.0, dim=-1, eps=_KEY_EPS)


class _NormalizeKeys(torch.autograd.Function):
    """k = x / n with n = max(||x||, eps); backward dx = (g - k <g, k>) / n where ||x|| > eps, else g / eps.

    (d k / d x = (I - k k^T) / ||x|| for ||x|| > eps; where the norm is clamped, n is a constant.)
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)  # (..., 1)
        clamped = norm <= _KEY_EPS
        norm = norm.clamp_min(_KEY_EPS)
        k = x / norm
        ctx.save_for_backward(k, norm, clamped)
        return k

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        k, norm, clamped = ctx.saved_tensors
        dot = (grad * k).sum(dim=-1, keepdim=True).masked_fill_(clamped, 0.0)  # (..., 1): <g, k>
        return torch.addcmul(grad, k, dot, value=-1.0).div_(norm)


def promote_logits(dots: torch.Tensor) -> torch.Tensor:
    """Logits in at least float32 (float64 stays float64), so masking and logsumexp are exact enough."""
    return dots.to(torch.promote_types(dots.dtype, torch.float32))


def mask_logits(
    dots: torch.Tensor,
    q_pos: torch.Tensor,
    k_pos: torch.Tensor,
    key_valid: torch.Tensor | None,
    causal: bool,
) -> torch.Tensor:
    """Apply the self penalty, then the padding and causal masks, on original positions.

    Args:
        dots: logits, (..., q, k), float32 or wider.
        q_pos: original position of each query, broadcastable to (..., q).
        k_pos: original position of each key, broadcastable to (..., k).
        key_valid: True where the key is a real (unpadded) position, broadcastable to (..., k); None = all valid.
        causal: mask keys after the query.
    Returns:
        Masked logits, same shape as `dots`.
    """
    is_self = q_pos.unsqueeze(-1) == k_pos.unsqueeze(-2)  # (..., q, k)
    dots = dots + is_self.to(dots.dtype) * SELF_PENALTY
    allowed: torch.Tensor | None = None
    if key_valid is not None:
        allowed = key_valid.unsqueeze(-2)  # (..., 1, k)
    if causal:
        not_future = k_pos.unsqueeze(-2) <= q_pos.unsqueeze(-1)  # (..., q, k)
        allowed = not_future if allowed is None else allowed & not_future
    if allowed is not None:
        dots = dots.masked_fill(~allowed, MASKED)
    return dots


@dataclass
class AttentionMap:
    """Which keys each query attended to, with what weight, in original (unsorted) order.

    Sparse: each query lists `k` (key index, weight) pairs. For LSH, `k = n_hash_rounds * keys per chunk` and a
    key found in several rounds appears several times (its weights add up); for full attention `k = length`.

    Shapes: `indices` and `weights` are (b, h, l, k); `indices` int64 in [0, length); weights sum to 1 per query.
    """

    indices: torch.Tensor
    weights: torch.Tensor
    length: int

    def to_dense(self) -> torch.Tensor:
        """Dense (b, h, l, l) attention matrix (sums duplicate entries). Use at small l only: O(l^2) memory."""
        b, h, l, _ = self.indices.shape
        dense = torch.zeros(b, h, l, self.length, dtype=self.weights.dtype, device=self.weights.device)
        return dense.scatter_add_(-1, self.indices, self.weights)

    def crop(self, length: int) -> AttentionMap:
        """Drop padded query positions (>= length); weights on padded keys are zero and are dropped as well."""
        indices = self.indices[:, :, :length]
        weights = self.weights[:, :, :length]
        keep = indices < length
        return AttentionMap(
            indices=torch.where(keep, indices, torch.zeros_like(indices)),
            weights=torch.where(keep, weights, torch.zeros_like(weights)),
            length=length,
        )

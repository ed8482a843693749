"""One attention layer, three kernels: full, LSH and local attention over a shared query-key projection.

Shape legend: b batch, l length, d model width, h heads, e head dim, r hash rounds, u buckets / 2.

All three types have exactly the same parameters (`norm`, `to_qk`, `to_v`, `to_out`), so a checkpoint trained
with one type loads and runs with another, as the paper's comparisons do (Reformer sec. 5, Table 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn

from .config import AttentionType, ReformerConfig
from .dropout import Dropout
from .fused import use_fused
from .kernels import full_attention, local_attention
from .linear import Linear, linear
from .lsh import hash_vectors, lsh_attention, rotation_columns
from .masking import AttentionMap
from .queries import attend_at, full_keys_at, local_keys_at, lsh_keys_at

__all__ = ["AttentionOutput", "SharedQKAttention", "kernel_in_use"]

_TRAIN_STREAM = 1
_EVAL_STREAM = 2


@dataclass
class AttentionOutput:
    """What a `SharedQKAttention` call returns.

    Shapes: `out` (b, l, d); `buckets` (b, h, r, l) for LSH, else None; `attention` per head or None.
    """

    out: torch.Tensor
    buckets: torch.Tensor | None = None
    attention: AttentionMap | None = None


def kernel_in_use(config: ReformerConfig, device: torch.device | str, length: int) -> str:
    """Which kernel an attention layer of `config` runs on `length` positions on `device`: "full/sdpa",
    "lsh/fused", "lsh/reference", "local/fused" or "local/reference" (what benchmarks report)."""
    kind = config.kernel_for(length)
    if kind is AttentionType.FULL:
        return "full/sdpa"
    fused = use_fused(config.attention_kernel, torch.device(device), config.head_dim, config.chunk_size)
    return f"{kind.value}/{'fused' if fused else 'reference'}"


def _to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    if device.type == "cuda":  # from pinned memory the copy does not make the host wait for the device
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def _stream_seed(seed: int, layer_index: int, stream: int) -> int:
    # distinct, reproducible seeds per (model seed, layer, stream); kept below 2**63
    return (seed * 1_000_003 + layer_index * 7_919 + stream * 104_729) % (2**62)


class SharedQKAttention(nn.Module):
    """Pre-norm self-attention with a shared query-key projection (Reformer sec. 2).

    Args:
        config: the model configuration (heads, kernel, chunking, hashing, causal, dropout).
        layer_index: position in the stack; seeds this layer's private LSH rotation generator.
    Shapes:
        forward: x (b, l, d) with l a multiple of `chunk_size` for local, and for LSH above
            `config.full_attention_below` (at or below it LSH runs full attention) -> AttentionOutput.out (b, l, d).
    """

    def __init__(self, config: ReformerConfig, layer_index: int) -> None:
        super().__init__()
        d = config.d_model
        self.config = config
        self.attention_type = config.attention_type  # switchable (`ReformerModel.set_attention_type`)
        self.layer_index = layer_index
        self.norm = nn.LayerNorm(d)
        self.to_qk = Linear(d, d, bias=False)
        self.to_v = Linear(d, d, bias=False)
        self.to_out = Linear(d, d)
        self.dropout = Dropout(config.dropout)
        # The layer's own generator: training draws fresh rotations from it, never from (or reseeding) the
        # global RNG; eval uses fixed rotations derived from the config's seed alone, so the same input gives the
        # same output, and a model evaluated during training (validation) is the model its checkpoint rebuilds.
        self._eval_seed = config.seed
        self._eval_rotations: torch.Tensor | None = None  # drawn on first use, per device
        self.generator = torch.Generator(device="cpu")
        self.reseed(config.seed)

    def reseed(self, seed: int) -> None:
        """Restart this layer's training-time rotation stream (each epoch, and when resuming). The eval
        rotations do not change: they depend on `config.seed` only."""
        self.generator.manual_seed(_stream_seed(seed, self.layer_index, _TRAIN_STREAM))

    def rotations(self, device: torch.device) -> torch.Tensor:
        """Random rotations for one forward pass: (h, e, r, u). Fresh in training, fixed in eval.

        The eval rotations are drawn once per device and kept (a batch-1 forecast would otherwise draw and copy
        them in every layer of every call). A training step captured in a CUDA graph draws from the device's own
        generator: a capture cannot copy from the host, and each replay then draws afresh.
        """
        cfg = self.config
        shape = (cfg.n_heads, cfg.head_dim, cfg.n_hash_rounds, rotation_columns(cfg.n_buckets))
        if not self.training:
            kept = self._eval_rotations
            if kept is None or kept.device != device or kept.shape != shape:
                generator = torch.Generator(device="cpu")
                generator.manual_seed(_stream_seed(self._eval_seed, self.layer_index, _EVAL_STREAM))
                with torch.inference_mode(False):  # kept past an inference-mode call: an ordinary tensor
                    kept = self._eval_rotations = _to_device(torch.randn(shape, generator=generator), device)
            return kept
        if device.type == "cuda" and torch.cuda.is_current_stream_capturing():
            return torch.randn(shape, device=device)
        return _to_device(torch.randn(shape, generator=self.generator), device)

    def forward(
        self,
        x: torch.Tensor,
        valid: torch.Tensor | None = None,
        buckets: torch.Tensor | None = None,
        return_map: bool = False,
        queries: torch.Tensor | None = None,
    ) -> AttentionOutput:
        """Attend.

        Args:
            x: (b, l, d); for LSH and local attention l must be a multiple of `chunk_size`.
            valid: (b, l) bool, True for real positions; None = all real.
            buckets: LSH buckets to reuse (the reversible backward passes the forward's); None = hash now.
            return_map: also return the per-head `AttentionMap` (original order).
            queries: (b,) int64: attend from these positions only (one per row; every position is still a key),
                see `queries.py`; the output is then (b, 1, d). Not with `return_map`.
        Returns:
            `AttentionOutput` with out (b, l, d) (or (b, 1, d)), the LSH buckets used, and the map if asked.
        """
        normed = self.norm(x)
        cfg = self.config
        # the shared query-keys and the values in one product, (b, l, 2d): on a GPU two kernel launches fewer each
        # way than two products (and under autocast one cast of the input fewer)
        both = linear(normed, torch.cat([self.to_qk.weight, self.to_v.weight]))
        qk, v = rearrange(both, "b l (two h e) -> two b h l e", two=2, h=cfg.n_heads)
        kind = cfg.kernel_for(x.shape[1], AttentionType(self.attention_type))  # short LSH runs FULL
        fused = kind is not AttentionType.FULL and use_fused(cfg.attention_kernel, x.device, cfg.head_dim,
                                                            cfg.chunk_size)
        amap: AttentionMap | None = None
        if kind is AttentionType.LSH and buckets is None:
            buckets = hash_vectors(qk, self.rotations(x.device), cfg.n_buckets, valid, fused=fused)
        if queries is not None:
            assert not return_map, "attention maps need every query position"
            b, h, l = qk.shape[0], cfg.n_heads, x.shape[1]
            if buckets is not None and kind is AttentionType.LSH:
                keys = lsh_keys_at(buckets, queries, cfg.chunk_size, valid)
            elif kind is AttentionType.LOCAL:
                keys = local_keys_at(queries, h, l, cfg.chunk_size, cfg.causal)
            else:
                keys = full_keys_at(b, h, l, x.device)
            out = attend_at(qk, v, queries, keys, valid, cfg.causal)  # (b, h, 1, e)
        elif buckets is not None and kind is AttentionType.LSH:
            out, amap = lsh_attention(qk, v, buckets, cfg.chunk_size, valid, cfg.causal, return_map, fused)
        elif kind is AttentionType.LOCAL:
            out, amap = local_attention(qk, v, cfg.chunk_size, valid, cfg.causal, return_map, fused)
        else:
            out, amap = full_attention(qk, v, valid, cfg.causal, return_map)
        out = rearrange(out, "b h l e -> b l (h e)")
        return AttentionOutput(out=self.dropout(self.to_out(out)), buckets=buckets, attention=amap)

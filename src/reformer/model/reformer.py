"""`ReformerModel`: embedding -> reversible (or plain) encoder layers -> pooled regression/classification head.

Shape legend: b batch, l length (input), p padded length, f input features, d model width, o outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, UserInputError
from .attention import SharedQKAttention
from .config import AttentionType, ReformerConfig
from .embedding import InputEmbedding
from .feedforward import ChunkedFeedForward
from .linear import Linear
from .masking import AttentionMap
from .reversible import ReformerLayer, run_at, run_plain, run_reversible

__all__ = ["LayerAttention", "ReformerModel"]


@dataclass
class LayerAttention:
    """Attention of one layer for every head, in original order: `map.indices/weights` are (b, h, l, k)."""

    layer: int
    map: AttentionMap

    def to_dense(self) -> torch.Tensor:
        """(b, h, l, l) weights; row i = how much position i attended to each input position."""
        return self.map.to_dense()


class ReformerModel(nn.Module):
    """The Reformer encoder for time series (Kitaev, Kaiser, Levskaya, ICLR 2020).

    Args:
        config: a validated `ReformerConfig`.
    Shapes:
        forward: x (b, l, f) [, mask (b, l) bool, True = real] -> (b, o), o = `config.output_dim`.
    Raises:
        UserInputError: on an input of the wrong rank or feature count (a `ValueError`).
    """

    def __init__(self, config: ReformerConfig) -> None:
        super().__init__()
        self.config = config
        # initialise from the config's seed without touching the caller's global RNG
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.embed = InputEmbedding(config)
            self.layers = nn.ModuleList(
                ReformerLayer(SharedQKAttention(config, i), ChunkedFeedForward(config))
                for i in range(config.n_layers)
            )
            self.norm = nn.LayerNorm(2 * config.d_model)
            head_in = 2 * config.d_model * (config.seq_len if config.pooling == "flatten" else 1)
            self.head = Linear(head_in, config.output_dim)
        self.use_reversible_layers = config.use_reversible_layers

    @property
    def blocks(self) -> list[ReformerLayer]:
        """The encoder layers, typed."""
        return cast(list[ReformerLayer], list(self.layers))

    @property
    def attention_type(self) -> AttentionType:
        """The kernel the layers currently use."""
        return AttentionType(self.blocks[0].attn.attention_type)

    def set_attention_type(self, attention_type: AttentionType | str) -> None:
        """Switch every layer to another kernel (same weights), e.g. evaluate an LSH-trained model with FULL.
        `config.attention_type` stays the kernel the model was built with; `attention_type` is the one in use.

        Raises:
            ConfigError: not one of "full", "lsh", "local".
        """
        try:
            kind = AttentionType(attention_type)
        except ValueError:
            raise ConfigError(f"attention type {attention_type!r} is invalid: use \"full\", \"lsh\" or \"local\"") \
                from None
        for layer in self.blocks:
            layer.attn.attention_type = kind

    def reseed(self, seed: int) -> None:
        """Restart every layer's training-time LSH rotation stream from `seed`."""
        for layer in self.blocks:
            layer.attn.reseed(seed)

    def _pad(self, h: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Pad (b, l, d) to a multiple of the chunk size where the kernel needs it; returns (b, p, d), (b, p)."""
        b, l, _ = h.shape
        chunk = self.config.chunk_size
        kind = self.config.kernel_for(l, self.attention_type)
        padded = l if kind is AttentionType.FULL else -(-l // chunk) * chunk
        if padded == l:
            return h, mask
        valid = torch.zeros(b, padded, dtype=torch.bool, device=h.device)
        valid[:, :l] = True if mask is None else mask
        return F.pad(h, (0, 0, 0, padded - l)), valid

    def _encode(self, x: torch.Tensor, mask: torch.Tensor | None,
                return_maps: bool) -> tuple[torch.Tensor, list[AttentionMap | None]]:
        """Shared body of forward and predict_with_attention: returns (b, o) and per-layer maps."""
        if mask is not None and (mask.shape != x.shape[:2] or mask.dtype != torch.bool):
            raise UserInputError(f"mask has shape {tuple(mask.shape)} and dtype {mask.dtype}: expected a bool "
                                 f"tensor of shape {tuple(x.shape[:2])} (True = real position)")
        l = x.shape[1]
        h = self.embed(x)  # (b, l, d)
        h, valid = self._pad(h, mask)  # (b, p, d), (b, p)
        needs_grad = torch.is_grad_enabled() and (h.requires_grad or any(p.requires_grad for p in
                                                                         self.parameters()))
        if self.use_reversible_layers and needs_grad and not return_maps:
            # bottom layers recompute in the backward; the top ones that fit the activation budget store
            stored = self.config.layers_to_store(h.shape[0], h.shape[1], self.attention_type)
            split = len(self.layers) - stored
            # what the stored layers leave of the budget, the recomputed ones may spend (one at a time) on keeping
            # their attention probabilities for their backward
            keep = self.config.activation_budget_mb * 2**20 - stored * self.config.stored_layer_bytes(
                h.shape[0], h.shape[1], self.attention_type)
            y1, y2 = run_reversible(self.blocks[:split], h, valid, int(max(keep, 0))) if split else (h, h)
            y1, y2, _ = run_plain(self.blocks[split:], y1, y2, valid)
            maps: list[AttentionMap | None] = [None] * len(self.layers)
        elif self.config.pooling == "last" and not needs_grad and not return_maps and not self.training:
            # inference reads one position: the last layer computes only that one (`model/queries.py`)
            y1, y2, maps = run_plain(self.blocks[:-1], h, h, valid)
            y1, y2 = run_at(self.blocks[-1], y1, y2, valid, self._last_positions(mask, h.shape[0], l, h.device))
            return self.head(self.norm(torch.cat([y1, y2], dim=-1))[:, 0]), [*maps, None]  # (b, o)
        else:
            y1, y2, maps = run_plain(self.blocks, h, h, valid, return_maps)
        hidden = self.norm(torch.cat([y1, y2], dim=-1)[:, :l])  # (b, l, 2d)
        return self.head(self._pool(hidden, mask)), maps  # (b, o)

    @staticmethod
    def _last_positions(mask: torch.Tensor | None, b: int, l: int, device: torch.device) -> torch.Tensor:
        """(b,) index of each row's last real position (the last one when there is no mask)."""
        if mask is None:
            return torch.full((b,), l - 1, dtype=torch.long, device=device)
        positions = torch.arange(mask.shape[1], device=mask.device)
        return torch.where(mask, positions, torch.full_like(positions, -1)).amax(dim=1).clamp(min=0)

    def _pool(self, hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """(b, l, 2d) -> (b, 2d): the last real position, or the mean over real positions; or (b, l*2d)."""
        if self.config.pooling == "flatten":
            if hidden.shape[1] != self.config.seq_len:
                raise UserInputError(f"pooling='flatten' needs inputs of exactly seq_len={self.config.seq_len} "
                                     f"steps, got {hidden.shape[1]}: pad or crop the input, or use pooling='last'")
            return hidden.flatten(1)  # (b, l*2d)
        if self.config.pooling == "mean":
            if mask is None:
                return hidden.mean(dim=1)
            weights = mask.to(hidden.dtype).unsqueeze(-1)  # (b, l, 1)
            return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        last = self._last_positions(mask, hidden.shape[0], hidden.shape[1], hidden.device)  # (b,)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Predict: x (b, l, f) -> (b, o) regression values or class logits."""
        out, _ = self._encode(x, mask, return_maps=False)
        return out

    @torch.no_grad()
    def predict_with_attention(
        self, x: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, list[LayerAttention]]:
        """Predict and report attention: which input positions each position attended to, per layer and head.

        Returns:
            (prediction (b, o), one `LayerAttention` per layer), maps in original order with padding removed;
            sparse for LSH (`k = rounds x keys per chunk`), call `.to_dense()` for a (b, h, l, l) matrix.
        """
        out, maps = self._encode(x, mask, return_maps=True)
        length = x.shape[1]
        return out, [LayerAttention(layer=i, map=m.crop(length)) for i, m in enumerate(maps) if m is not None]

"""The model shape and implementation names of `reformer bench compare` (no torch import: the CLI reads these)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["IMPLS", "ModelShape"]

IMPLS = ("ours", "hf", "lucidrains", "sdpa")
"""Implementation names, in the default (first-repeat) order."""

_PACKAGES = {"hf": "transformers", "lucidrains": "reformer-pytorch"}


@dataclass(frozen=True)
class ModelShape:
    """The one model shape every implementation is built at (float32, CPU)."""

    d_model: int = 256
    n_heads: int = 8
    n_layers: int = 6
    n_hash_rounds: int = 4
    chunk_size: int = 64
    ff_chunk_len: int = 1024
    """Positions per feed-forward slice (the Reformers run their FFN over the sequence in slices)."""
    batch: int = 1

    def ff_chunks(self, length: int) -> int:
        """Number of feed-forward slices at this length (at least 1)."""
        return max(1, length // self.ff_chunk_len)

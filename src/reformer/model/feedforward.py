"""Chunked position-wise feed-forward network (Reformer sec. 3, "Chunking").

Shape legend: b batch, l length, d model width, f hidden width.

The network is applied to `ff_chunks` slices of the sequence one after another (in training on a GPU, neighbouring
slices merge up to a constant size, `training_chunks`; in eval without autograd, cache-sized slices). In the
forward pass only one slice's (b, l/ff_chunks, f) hidden activations exist at a time. The backward is bounded
too: the reversible stack recomputes and back-propagates slice by slice (see `reversible.py`), and the plain
stack checkpoints each slice, so its backward also rebuilds one slice's activations at a time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .chunked import block_elements
from .config import ReformerConfig
from .dropout import Dropout
from .linear import Linear, linear_gelu

__all__ = ["ChunkedFeedForward"]

# hidden activations per slice in a forward without autograd: 2**21 float32 = 8 MiB. A single slice of the
# seq_len-8760 eval forward (36 MB) is mapped afresh every layer and stalls 4-37 ms on page faults; in 4-16 slices
# that forward is 6-7% faster (2 threads, `reformer bench targets`)
_INFERENCE_HIDDEN = 2**21
_MIN_SLICE = 64


class ChunkedFeedForward(nn.Module):
    """Pre-norm FFN: x -> Dropout(W2 Dropout(GELU(W1 LN(x)))), run over sequence chunks.

    Shapes: forward x (b, l, d) -> (b, l, d).
    """

    def __init__(self, config: ReformerConfig) -> None:
        super().__init__()
        self.ff_chunks = config.ff_chunks
        self.norm = nn.LayerNorm(config.d_model)
        self.w_in = Linear(config.d_model, config.ff_hidden)
        self.w_out = Linear(config.ff_hidden, config.d_model)
        self.dropout = Dropout(config.dropout)

    def chunk_slices(self, length: int, chunks: int | None = None) -> list[slice]:
        """The sequence slices the FFN runs over, in order (at most `chunks`, default `ff_chunks`, each non-empty)."""
        n = min(self.ff_chunks if chunks is None else chunks, length)
        bounds = [round(i * length / n) for i in range(n + 1)]
        return [slice(bounds[i], bounds[i + 1]) for i in range(n)]

    def training_chunks(self, batch: int, length: int, device: torch.device) -> int:
        """Slices for a forward that may be back-propagated: `ff_chunks` on the CPU; on a GPU neighbouring slices
        merge while one slice's (b, c, f) hidden activations hold at most `chunked.block_elements` (2**25) values.
        There each slice costs a few dozen kernel launches (forward, recomputation, backward) whatever its size,
        and at L = 32,768 with ff_chunks 32 the launches set the step time (`benchmarks/gpu/profile_step.py`
        shows it); the bound is a constant, so memory stays linear in length. The reversible backward
        recomputes with the same slices, so the dropout masks replay exactly."""
        if device.type != "cuda":
            return self.ff_chunks
        wanted = -(-batch * length * self.w_in.out_features // block_elements(device))
        return max(1, min(self.ff_chunks, wanted))

    def inference_chunks(self, batch: int, length: int, device: torch.device) -> int:
        """Slices for an eval-mode forward without autograd, with at least `_MIN_SLICE` positions a slice. On the
        CPU enough that one slice's (b, c, f) hidden activations hold at most `_INFERENCE_HIDDEN` elements (they
        then stay in cache, and no multi-MiB block is allocated afresh per layer), and at least `ff_chunks`. On a
        GPU, which has no such cache to fit and pays a few kernel launches per slice, at most
        `chunked.block_elements` (2**25) values a slice, whatever `ff_chunks`: the one-year batch-1 forecast's FFN
        takes 1 slice a layer instead of 5, and the whole forward launches a quarter fewer kernels
        (`benchmarks/gpu/launch_count.py`). Same result."""
        gpu = device.type == "cuda"
        wanted = -(-batch * length * self.w_in.out_features // (block_elements(device) if gpu else _INFERENCE_HIDDEN))
        return max(1 if gpu else self.ff_chunks, min(wanted, length // _MIN_SLICE))

    def apply_chunk(self, x: torch.Tensor) -> torch.Tensor:
        """The FFN on one slice, (b, c, d) -> (b, c, d)."""
        normed = self.norm(x)
        # fused in eval only: in training the reversible forward (no grad) and its recomputation must match
        hidden = linear_gelu(self.w_in, normed) if not self.training else F.gelu(self.w_in(normed))  # (b, c, f)
        hidden = self.dropout(hidden)
        return self.dropout(self.w_out(hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # checkpoint per slice when autograd would otherwise keep every slice's hidden activations
        use_checkpoint = torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in
                                                                             self.parameters()))
        # in eval without autograd the slicing is free to follow the cache (no dropout masks to replay)
        chunks = (self.training_chunks(x.shape[0], x.shape[1], x.device) if use_checkpoint or self.training
                  else self.inference_chunks(x.shape[0], x.shape[1], x.device))
        slices = self.chunk_slices(x.shape[1], chunks)
        if len(slices) == 1:
            return self.apply_chunk(x)
        outputs = []
        for part in slices:
            chunk = x[:, part]
            if use_checkpoint:
                outputs.append(checkpoint(self.apply_chunk, chunk, use_reentrant=False))
            else:
                outputs.append(self.apply_chunk(chunk))
        return torch.cat(outputs, dim=1)

"""Reversible residual stack (RevNet, Gomez et al. 2017; Reformer sec. 3).

Shape legend: b batch, l length, d model width.

    Y1 = X1 + Attention(X2)        Y2 = X2 + FFN(Y1)                       (forward)
    X2 = Y2 - FFN(Y1)              X1 = Y1 - Attention(X2)                 (inverse, in the backward pass)

The forward keeps only the last block's outputs (plus each LSH layer's buckets, one byte per position, head and
round). The backward walks the blocks in reverse, rebuilding each block's inputs from its outputs, replaying the
forward's dropout masks (the RNG state captured before each sub-layer) and hash buckets, and computes input and
parameter gradients with `torch.autograd.grad`. Parameter gradients are *returned* from the Function (the
parameters are its inputs), not accumulated by a nested `.backward()`, so `torch.autograd.grad`, gradient
accumulation and DistributedDataParallel see one ordinary graph node.

The plain stack (`run_plain`) computes the same coupling with ordinary autograd, on the same modules: the two
are interchangeable and give the same gradients. `ReformerModel` runs the bottom layers reversibly and the top
`config.layers_to_store(b, l)` layers plainly, so short inputs spend a bounded amount of memory
(`activation_budget_mb`) instead of recomputation; the reversible part's outputs are the plain part's inputs.
What the stored layers leave of the budget bounds the attention probabilities a recomputed layer keeps for its own
backward (`keep_bytes`), which lives only while that layer is back-propagated.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .attention import SharedQKAttention
from .chunked import keep_probabilities
from .feedforward import ChunkedFeedForward
from .masking import AttentionMap

__all__ = ["ReformerLayer", "run_at", "run_plain", "run_reversible"]


class ReformerLayer(nn.Module):
    """One encoder layer: f = attention, g = chunked feed-forward (both pre-norm, inside the modules)."""

    def __init__(self, attn: SharedQKAttention, ff: ChunkedFeedForward) -> None:
        super().__init__()
        self.attn = attn
        self.ff = ff


@dataclass
class _RngState:
    cpu: torch.Tensor
    cuda: list[tuple[int, torch.Tensor]] = field(default_factory=list)


def _capture_rng(device: torch.device) -> _RngState:
    state = _RngState(cpu=torch.get_rng_state())
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        state.cuda.append((index, torch.cuda.get_rng_state(index)))
    return state


@contextlib.contextmanager
def _replay_rng(state: _RngState | None) -> Iterator[None]:
    """Run a block with the RNG state it saw in the forward, without disturbing the caller's RNG."""
    if state is None:
        yield
        return
    with torch.random.fork_rng(devices=[index for index, _ in state.cuda]):
        torch.set_rng_state(state.cpu)
        for index, cuda_state in state.cuda:
            torch.cuda.set_rng_state(cuda_state, index)
        yield


@dataclass
class _Run:
    """Non-tensor context of one reversible forward, handed to the autograd Function."""

    layers: Sequence[ReformerLayer]
    valid: torch.Tensor | None
    replay: bool
    autocast: dict[str, Any]
    keep_bytes: int = 0
    """Attention probabilities a layer may keep while it is recomputed and back-propagated (`keep_probabilities`)."""
    rng_f: list[_RngState | None] = field(default_factory=list)
    rng_g: list[_RngState | None] = field(default_factory=list)
    has_buckets: list[bool] = field(default_factory=list)


def _autocast_state(device: torch.device) -> dict[str, Any]:
    kind = device.type if device.type in ("cuda", "cpu") else "cpu"
    return {"device_type": kind, "enabled": torch.is_autocast_enabled(kind),
            "dtype": torch.get_autocast_dtype(kind)}


class _ReversibleStack(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x1: torch.Tensor, x2: torch.Tensor, run: _Run, *params: torch.Tensor) -> Any:
        buckets: list[torch.Tensor] = []
        with torch.autocast(**run.autocast):
            for layer in run.layers:
                run.rng_f.append(_capture_rng(x2.device) if run.replay else None)
                attended = layer.attn(x2, run.valid)
                y1 = x1 + attended.out  # Y1 = X1 + Attention(X2)
                run.rng_g.append(_capture_rng(y1.device) if run.replay else None)
                y2 = x2 + layer.ff(y1)  # Y2 = X2 + FFN(Y1)
                run.has_buckets.append(attended.buckets is not None)
                if attended.buckets is not None:
                    buckets.append(attended.buckets)
                x1, x2 = y1, y2
        ctx.run = run
        ctx.n_params = len(params)
        ctx.save_for_backward(x1, x2, *buckets)
        return x1, x2

    @staticmethod
    def backward(ctx: Any, dy1: torch.Tensor, dy2: torch.Tensor) -> Any:
        run: _Run = ctx.run
        y1, y2, *saved_buckets = ctx.saved_tensors
        y1, y2 = y1.detach(), y2.detach()
        dy1, dy2 = dy1.clone(), dy2.clone()
        grads: list[torch.Tensor | None] = []
        bucket_iter = iter(reversed(saved_buckets))
        for i in reversed(range(len(run.layers))):
            layer = run.layers[i]
            buckets = next(bucket_iter) if run.has_buckets[i] else None
            with torch.enable_grad(), torch.autocast(**run.autocast):
                # g, slice by slice: X2 = Y2 - FFN(Y1); only one slice's FFN activations exist at a time
                g_params = [p for p in layer.ff.parameters() if p.requires_grad]
                g_grads: list[torch.Tensor | None] = [None] * len(g_params)
                x2 = torch.empty_like(y2)
                with _replay_rng(run.rng_g[i]):
                    chunks = layer.ff.training_chunks(y1.shape[0], y1.shape[1], y1.device)
                    for part in layer.ff.chunk_slices(y1.shape[1], chunks):
                        y1_part = y1[:, part].detach().requires_grad_(True)
                        g_out = layer.ff.apply_chunk(y1_part)
                        d_y1_part, *d_g = torch.autograd.grad(g_out, [y1_part, *g_params], dy2[:, part],
                                                              allow_unused=True)
                        dy1[:, part] += d_y1_part
                        g_grads = [_add(a, b) for a, b in zip(g_grads, d_g, strict=True)]
                        x2[:, part] = y2[:, part] - g_out.detach()
                # f: X1 = Y1 - Attention(X2), with the forward's buckets and dropout masks
                f_params = [p for p in layer.attn.parameters() if p.requires_grad]
                x2_leaf = x2.detach().requires_grad_(True)
                with _replay_rng(run.rng_f[i]), keep_probabilities(run.keep_bytes):
                    f_out = layer.attn(x2_leaf, run.valid, buckets=buckets).out
                d_x2, *f_grads = torch.autograd.grad(f_out, [x2_leaf, *f_params], dy1, allow_unused=True)
                x1 = y1 - f_out.detach()
            dy2 = dy2 + d_x2  # dX2 = dY2 + (dAttention/dX2)^T dX1 ; dX1 = dY1 (accumulated above)
            y1, y2 = x1, x2
            grads = _layer_grads(layer, f_params, f_grads, g_params, g_grads) + grads
        assert len(grads) == ctx.n_params
        return (dy1, dy2, None, *grads)


def _add(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    if a is None:
        return b
    return a if b is None else a + b


def _layer_grads(layer: ReformerLayer, f_params: Sequence[torch.Tensor], f_grads: Sequence[torch.Tensor | None],
                 g_params: Sequence[torch.Tensor], g_grads: Sequence[torch.Tensor | None]) -> list[torch.Tensor | None]:
    """Gradients in the order of `layer.parameters()` (None for frozen parameters)."""
    by_id = {id(p): g for p, g in zip(f_params, f_grads, strict=True)}
    by_id.update({id(p): g for p, g in zip(g_params, g_grads, strict=True)})
    return [by_id.get(id(p)) for p in layer.parameters()]


def run_reversible(
    layers: Sequence[ReformerLayer], x: torch.Tensor, valid: torch.Tensor | None, keep_bytes: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """The stack on x (b, l, d) with activation recomputation; returns (Y1, Y2), each (b, l, d).

    `keep_bytes`: attention probabilities each layer may keep while it is recomputed in the backward, so that its
    own backward need not recompute its scores (`chunked.keep_probabilities`); transient, one layer at a time.
    """
    replay = any(m.training and isinstance(m, nn.Dropout) and m.p > 0 for layer in layers
                 for m in layer.modules())
    run = _Run(layers=layers, valid=valid, replay=replay, autocast=_autocast_state(x.device), keep_bytes=keep_bytes)
    params = [p for layer in layers for p in layer.parameters()]
    y1, y2 = _ReversibleStack.apply(x, x, run, *params)
    return y1, y2


def run_plain(
    layers: Sequence[ReformerLayer], x1: torch.Tensor, x2: torch.Tensor, valid: torch.Tensor | None,
    return_maps: bool = False
) -> tuple[torch.Tensor, torch.Tensor, list[AttentionMap | None]]:
    """The same coupling on the halves (X1, X2), each (b, l, d), with ordinary autograd (activations stored);
    returns (Y1, Y2) and per-layer attention maps."""
    maps: list[AttentionMap | None] = []
    for layer in layers:
        attended = layer.attn(x2, valid, return_map=return_maps)
        x1 = x1 + attended.out  # Y1 = X1 + Attention(X2)
        x2 = x2 + layer.ff(x1)  # Y2 = X2 + FFN(Y1)
        maps.append(attended.attention)
    return x1, x2, maps


def run_at(layer: ReformerLayer, x1: torch.Tensor, x2: torch.Tensor, valid: torch.Tensor | None,
           queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One layer's coupling at the positions `queries` (b,) only: halves (b, l, d) -> (b, 1, d) each.

    The attention still reads every position of X2 as keys; the rest of the layer is per position."""
    rows = torch.arange(x1.shape[0], device=x1.device)
    y1 = x1[rows, queries].unsqueeze(1) + layer.attn(x2, valid, queries=queries).out  # Y1 = X1 + Attention(X2)
    y2 = x2[rows, queries].unsqueeze(1) + layer.ff(y1)  # Y2 = X2 + FFN(Y1)
    return y1, y2


"""The models `reformer bench compare` pits against each other, all at one shape, as one training step each.

Four implementations of the same encoder shape (width, heads, layers, hash rounds, chunk):

- ``ours``: `reformer.ReformerModel` with LSH attention and reversible layers;
- ``hf``: HuggingFace transformers' `ReformerModel`, every layer LSH (optional `bench` extra);
- ``lucidrains``: lucidrains' reformer-pytorch `Reformer` (optional `bench` extra);
- ``sdpa``: `SDPAEncoder` below, a plain pre-norm Transformer on `F.scaled_dot_product_attention` (full
  attention, activations stored: no reversible layers, no chunking) as the non-Reformer reference.

Bucket counts: ours and HF hash into ``2 * L / chunk`` buckets per round (always even, as angular LSH's
argmax over [xR; -xR] needs; an average bucket is half a chunk, the paper's and trax's setting);
reformer-pytorch fixes ``L / bucket_size`` buckets and chunks of ``bucket_size``, so with
``bucket_size = chunk`` its average bucket fills a whole chunk. All three attend within a chunk and to the
chunk before it. The feed-forward runs over sequence slices of ``ff_chunk_len`` positions in all three
Reformers (ours: ``ff_chunks = L / ff_chunk_len``; HF: ``chunk_size_feed_forward``; reformer-pytorch:
``ff_chunks``).

Shape legend: b batch, l length, d model width, h heads, e head dim.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..model.dropout import Dropout
from .attention import n_buckets_for
from .shape import _PACKAGES, IMPLS, ModelShape

__all__ = ["IMPLS", "ModelShape", "SDPAEncoder", "build_step", "peer_versions"]

class _SDPABlock(nn.Module):
    """Pre-norm block: x + Drop(Out(SDPA(QKV(LN(x))))), then x + Drop(FFN(LN(x))) with a 4*d GELU hidden layer."""

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.drop = Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), Dropout(dropout),
                                nn.Linear(4 * d_model, d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, l, d = x.shape
        qkv = self.qkv(self.norm1(x)).view(b, l, 3, self.n_heads, d // self.n_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (b, h, l, e)
        attn = F.scaled_dot_product_attention(q, k, v)  # (b, h, l, e)
        x = x + self.drop(self.out(attn.transpose(1, 2).reshape(b, l, d)))
        return x + self.drop(self.ff(self.norm2(x)))


class SDPAEncoder(nn.Module):
    """A plain pre-norm Transformer encoder (full attention via torch SDPA): (b, l, d) -> (b, l, d).

    `dropout` (default 0, as `bench compare` runs every model) sits where `ReformerModel` has it, and is the same
    `Dropout` module: after the attention output, inside the feed-forward and after it.
    """

    def __init__(self, d_model: int, n_heads: int, n_layers: int, dropout: float = 0.0) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ConfigError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        self.blocks = nn.ModuleList(_SDPABlock(d_model, n_heads, dropout) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


def _ours(shape: ModelShape, length: int) -> tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]]:
    from ..model import AttentionType, ReformerConfig, ReformerModel

    config = ReformerConfig(
        seq_len=length, d_model=shape.d_model, n_heads=shape.n_heads, n_layers=shape.n_layers,
        n_hash_rounds=shape.n_hash_rounds, chunk_size=shape.chunk_size,
        n_buckets=n_buckets_for(length, shape.chunk_size), attention_type=AttentionType.LSH, use_reversible_layers=True,
        dropout=0.0, n_features=shape.d_model, ff_chunks=shape.ff_chunks(length))
    model = ReformerModel(config)
    return model, model


def _hf(shape: ModelShape, length: int) -> tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]]:
    from transformers import ReformerConfig as HFConfig
    from transformers import ReformerModel as HFModel

    from ..model.lsh import bucket_factors

    # the same bucket count hashed the same way as ours: HF takes a factorised count as a list [a, b]
    factors = bucket_factors(n_buckets_for(length, shape.chunk_size))
    config = HFConfig(
        attn_layers=["lsh"] * shape.n_layers, hidden_size=shape.d_model, num_attention_heads=shape.n_heads,
        attention_head_size=shape.d_model // shape.n_heads, feed_forward_size=4 * shape.d_model,
        hidden_act="gelu", lsh_attn_chunk_length=shape.chunk_size, num_hashes=shape.n_hash_rounds,
        num_buckets=factors[0] if len(factors) == 1 else list(factors), lsh_num_chunks_before=1, lsh_num_chunks_after=0,
        chunk_size_feed_forward=min(shape.ff_chunk_len, length), axial_pos_embds=False,
        max_position_embeddings=length, hidden_dropout_prob=0.0, lsh_attention_probs_dropout_prob=0.0,
        local_attention_probs_dropout_prob=0.0, is_decoder=False, vocab_size=2)
    model = HFModel(config)

    def forward(x: torch.Tensor) -> torch.Tensor:
        return model(inputs_embeds=x).last_hidden_state  # (b, l, 2d): the two reversible halves

    return model, forward


def _lucidrains(shape: ModelShape, length: int) -> tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]]:
    from reformer_pytorch import Reformer

    model = Reformer(dim=shape.d_model, depth=shape.n_layers, heads=shape.n_heads, bucket_size=shape.chunk_size,
                     n_hashes=shape.n_hash_rounds, ff_chunks=shape.ff_chunks(length), causal=False,
                     lsh_dropout=0.0, ff_dropout=0.0, post_attn_dropout=0.0, layer_dropout=0.0)
    return model, model


def _sdpa(shape: ModelShape, length: int) -> tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]]:
    model = SDPAEncoder(shape.d_model, shape.n_heads, shape.n_layers)
    return model, model


_BUILDERS = {"ours": _ours, "hf": _hf, "lucidrains": _lucidrains, "sdpa": _sdpa}


def build_step(impl: str, shape: ModelShape, length: int, seed: int = 0,
               device: str | torch.device = "cpu") -> Callable[[], None]:
    """Build `impl` at `length` in train mode and return one training step: forward, loss = output.sum(), backward.

    The model and input live on `device` (CPU for `bench compare`; `benchmarks/gpu/cuda_check.py` passes CUDA).

    The input (b, l, d) requires grad. Gradients are dropped after each step (set to None), so every step
    allocates them afresh, as the first one does.
    Raises:
        ConfigError: on an unknown implementation name.
        ImportError: when a peer's package (the `bench` extra) is not installed.
    """
    if impl not in _BUILDERS:
        raise ConfigError(f"unknown implementation {impl!r}: choose from {', '.join(IMPLS)}")
    torch.manual_seed(seed)
    model, forward = _BUILDERS[impl](shape, length)
    model.to(device).train()
    # the input requires grad, as if it came from an embedding (reformer-pytorch's reversible function
    # only tracks its tensor inputs, so without it the parameters would get no gradient)
    x = torch.randn(shape.batch, length, shape.d_model, generator=torch.Generator().manual_seed(seed)).to(device)
    x.requires_grad_(True)
    params = list(model.parameters())

    def step() -> None:
        forward(x).sum().backward()
        x.grad = None
        for p in params:
            p.grad = None

    return step


def peer_versions() -> dict[str, str | None]:
    """Installed versions of torch and of the peers' packages (None where not installed)."""
    versions: dict[str, str | None] = {"torch": torch.__version__}
    for impl, package in _PACKAGES.items():
        try:
            versions[impl] = f"{package} {importlib.metadata.version(package)}"
        except importlib.metadata.PackageNotFoundError:
            versions[impl] = None
    return versions

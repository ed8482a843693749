"""Model configuration: `AttentionType` and the validated `ReformerConfig` dataclass."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from reformer.errors import ConfigError, from_fields

__all__ = ["KERNELS", "AttentionType", "ReformerConfig"]


class AttentionType(StrEnum):
    """Which attention kernel the encoder layers use; all share one parameterisation.

    Accepts the strings ``"full"``, ``"lsh"`` and ``"local"`` (any case).
    """

    FULL = "full"
    LSH = "lsh"
    LOCAL = "local"

    @classmethod
    def _missing_(cls, value: object) -> AttentionType | None:
        if isinstance(value, str):
            lowered = value.strip().lower()
            for member in cls:
                if member.value == lowered:
                    return member
        return None


_TASKS = ("regression", "classification")
_POSITIONAL = ("sinusoidal", "learned")
KERNELS = ("auto", "fused", "reference")
"""The `attention_kernel` settings."""
_POOLING = ("last", "mean", "flatten")


def _fail(name: str, value: object, fix: str) -> ConfigError:
    """The error of an invalid field: a `ConfigError`, so also a `ValueError` naming the field."""
    return ConfigError(f"ReformerConfig.{name}={value!r} is invalid: {fix}")


@dataclass(frozen=True)
class ReformerConfig:
    """Everything a `ReformerModel` needs, validated at construction.

    Lengths are in time steps (bars); fractions are in [0, 1).
    A `seq_len` that is not a multiple of `chunk_size` is fine: the model pads internally and masks the padding.
    """

    seq_len: int = 168
    """Input window length in bars (168 = one week of hourly candles)."""
    d_model: int = 128
    """Width of the residual stream (each of the two reversible halves)."""
    n_heads: int = 8
    """Attention heads; must divide `d_model`."""
    n_layers: int = 6
    """Encoder layers (attention + feed-forward each)."""
    n_hash_rounds: int = 4
    """Independent LSH hashing rounds, combined by their logsumexp weights."""
    n_buckets: int = 32
    """Hash buckets per round (even: angular LSH uses argmax over [xR; -xR])."""
    chunk_size: int = 32
    """Positions per attention chunk (LSH sorted chunks, local windows)."""
    attention_type: AttentionType = AttentionType.LSH
    """`AttentionType.FULL`, `.LSH` or `.LOCAL` (or the strings "full", "lsh", "local")."""
    full_attention_threshold: int = -1
    """LSH layers attend exactly over all positions when the input has at most this many (HF's Reformer does the
    same up to one chunk, reformer-pytorch with `full_attn_thres`). -1 (default) = 2 * chunk_size * n_hash_rounds,
    the key slots LSH scores per query: at or below that length full attention is exact and does no more
    arithmetic (and skips the hashing, sorting and padding). 0 = always hash."""
    use_reversible_layers: bool = True
    """Reversible residuals: activations are recomputed in the backward pass instead of stored."""
    activation_budget_mb: float = 256.0
    """Training memory (MB) the reversible stack may spend on stored activations to run faster. Recomputing a
    layer in the backward pass costs one more forward of it, about a quarter of a training step, which is not
    worth paying where activations are small (short windows). The top `layers_to_store(batch, length)` layers, as
    many as fit this budget by `stored_layer_bytes`, keep their activations (ordinary autograd, the same
    gradients); the others recompute. Long inputs exceed it and recompute throughout. What the stored layers
    leave of the budget, each recomputed layer may spend, one at a time in the backward, on keeping its attention
    probabilities for its own backward (`chunked.keep_probabilities`: no recomputation of the scores there).
    0 = every layer recomputes everything (memory independent of depth). Ignored when `use_reversible_layers` is
    False (every layer stores)."""
    dropout: float = 0.1
    """Dropout probability on embeddings, attention output and feed-forward, in [0, 1)."""
    n_features: int = 1
    """Input features per time step."""
    n_outputs: int = 1
    """Regression outputs (e.g. horizons); ignored for classification, which outputs `n_classes` logits."""
    d_ff: int = 0
    """Feed-forward hidden width; 0 means 4 * d_model."""
    ff_chunks: int = 1
    """The feed-forward runs over the sequence in this many chunks, in forward and backward (bounds memory)."""
    causal: bool = False
    """Mask attention to later positions (on the original, unsorted positions)."""
    attention_kernel: str = "auto"
    """How LSH and local attention compute their chunk windows: "fused" (Triton kernels, `model/fused.py`),
    "reference" (blocked PyTorch, `model/chunked.py`) or "auto" (fused on CUDA where Triton is installed, else
    reference). The environment variable `REFORMER_ATTENTION_KERNEL` overrides it. Both give the same outputs
    and gradients to float32 rounding; full attention runs PyTorch's SDPA either way."""
    task: str = "regression"
    """"regression" (MSE-style outputs) or "classification" (logits over `n_classes`)."""
    n_classes: int = 3
    """Classes for classification (e.g. down / flat / up)."""
    positional: str = "sinusoidal"
    """Positional encoding: "sinusoidal" (any length) or "learned" (at most `seq_len` positions)."""
    pooling: str = "last"
    """Representation for the head: "last" (last real position), "mean" (over real positions), or "flatten"
    (all positions concatenated, as PatchTST's head; inputs must then be exactly `seq_len` long)."""
    seed: int = 0
    """Seeds weight initialisation and the per-layer LSH rotation generators."""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """Free-form metadata carried with checkpoints (not used by the model)."""

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "attention_type", AttentionType(self.attention_type))
        except ValueError:
            raise _fail("attention_type", self.attention_type, 'use "full", "lsh" or "local"') from None
        for name in ("seq_len", "d_model", "n_heads", "n_layers", "n_hash_rounds", "chunk_size", "ff_chunks",
                     "n_features", "n_outputs"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise _fail(name, value, "use a positive integer (>= 1)")
        if self.d_model % self.n_heads:
            raise _fail("d_model", self.d_model,
                        f"d_model must be divisible by n_heads={self.n_heads}; "
                        f"e.g. d_model={self.n_heads * max(1, round(self.d_model / self.n_heads))}")
        if (not isinstance(self.full_attention_threshold, int) or isinstance(self.full_attention_threshold, bool)
                or self.full_attention_threshold < -1):
            raise _fail("full_attention_threshold", self.full_attention_threshold,
                        "use a length (>= 1), 0 to always hash, or -1 for 2 * chunk_size * n_hash_rounds")
        if (not isinstance(self.activation_budget_mb, int | float) or isinstance(self.activation_budget_mb, bool)
                or not 0.0 <= float(self.activation_budget_mb) < float("inf")):
            raise _fail("activation_budget_mb", self.activation_budget_mb,
                        "use a memory budget in MB (>= 0; 0 = always recompute, e.g. 256)")
        if not isinstance(self.n_buckets, int) or self.n_buckets < 2 or self.n_buckets % 2:
            raise _fail("n_buckets", self.n_buckets, "use a positive even integer (e.g. 32)")
        if self.n_buckets > 32766:
            raise _fail("n_buckets", self.n_buckets, "use at most 32766 buckets")
        if not isinstance(self.dropout, int | float) or not 0.0 <= float(self.dropout) < 1.0:
            raise _fail("dropout", self.dropout, "use a probability in [0, 1), e.g. 0.1")
        if not isinstance(self.d_ff, int) or self.d_ff < 0:
            raise _fail("d_ff", self.d_ff, "use a positive integer, or 0 for 4 * d_model")
        if self.task not in _TASKS:
            raise _fail("task", self.task, 'use "regression" or "classification"')
        if self.task == "classification" and (not isinstance(self.n_classes, int) or self.n_classes < 2):
            raise _fail("n_classes", self.n_classes, "use at least 2 classes for classification")
        if self.attention_kernel not in KERNELS:
            raise _fail("attention_kernel", self.attention_kernel, 'use "auto", "fused" or "reference"')
        if self.positional not in _POSITIONAL:
            raise _fail("positional", self.positional, 'use "sinusoidal" or "learned"')
        if self.pooling not in _POOLING:
            raise _fail("pooling", self.pooling, 'use "last", "mean" or "flatten"')
        if not isinstance(self.seed, int):
            raise _fail("seed", self.seed, "use an integer seed")

    @property
    def head_dim(self) -> int:
        """Width of one attention head (d_model / n_heads)."""
        return self.d_model // self.n_heads

    @property
    def full_attention_below(self) -> int:
        """Resolved `full_attention_threshold`: LSH layers run full attention at lengths <= this (0 = never)."""
        if self.full_attention_threshold < 0:
            return 2 * self.chunk_size * self.n_hash_rounds
        return self.full_attention_threshold

    def kernel_for(self, length: int, kind: AttentionType | None = None) -> AttentionType:
        """The kernel run on `length` positions for `kind` (default: the config's): LSH becomes FULL when short."""
        kind = self.attention_type if kind is None else kind
        if kind is AttentionType.LSH and length <= self.full_attention_below:
            return AttentionType.FULL
        return kind

    def stored_layer_bytes(self, batch: int, length: int, kind: AttentionType | None = None) -> int:
        """Estimated bytes one layer's ordinary autograd keeps for the backward (float32), on (batch, length).

        Per position, in float32 words: about 9 per model-width unit (projections, normalised keys, attention
        output, norms, residual inputs), 2.5 per feed-forward unit (pre- and post-activation, dropout mask) and 1.3
        per attention score slot: heads x rounds x 2 chunk for LSH, heads x 3 chunk for local (2 chunk causal),
        none for full attention (SDPA keeps its output and log-sum-exp, not the l x l matrix). Calibrated against
        the tensors autograd saves (tests/model/test_reversible.py checks it within 25%). With `ff_chunks` > 1 the
        plain stack checkpoints the FFN slices, so this overestimates and the budget keeps fewer layers than it
        could (never more).
        """
        kind = self.kernel_for(length, kind)
        chunk, heads = self.chunk_size, self.n_heads
        slots = {AttentionType.LSH: heads * self.n_hash_rounds * 2 * chunk,
                 AttentionType.LOCAL: heads * (2 if self.causal else 3) * chunk,
                 AttentionType.FULL: 0}[kind]
        words = 9.0 * self.d_model + 2.5 * self.ff_hidden + 1.3 * slots
        return int(4 * words * batch * length)

    def layers_to_store(self, batch: int, length: int, kind: AttentionType | None = None) -> int:
        """How many of the top layers keep their activations in a reversible training pass (see
        `activation_budget_mb`): as many as fit the budget, from 0 (all recompute) to `n_layers`."""
        per_layer = self.stored_layer_bytes(batch, length, kind)
        budget = float(self.activation_budget_mb) * 2**20
        return min(self.n_layers, int(budget // per_layer)) if per_layer > 0 else self.n_layers

    @property
    def ff_hidden(self) -> int:
        """Resolved feed-forward hidden width."""
        return self.d_ff or 4 * self.d_model

    @property
    def output_dim(self) -> int:
        """Width of the model's output: `n_classes` logits or `n_outputs` values."""
        return self.n_classes if self.task == "classification" else self.n_outputs

    def replace(self, **changes: Any) -> ReformerConfig:
        """A copy with `changes` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (enum as its string value)."""
        out = dataclasses.asdict(self)
        out["attention_type"] = self.attention_type.value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReformerConfig:
        """Build from a dict (e.g. a TOML table or a checkpoint's JSON); unknown keys are an error."""
        return from_fields(cls, data)

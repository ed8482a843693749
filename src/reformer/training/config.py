"""`TrainConfig`: how `reformer.training.loop.fit` trains, validated on construction, JSON-compatible (stored in
checkpoints, read from a TOML `[train]` table)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reformer.errors import ConfigError, from_fields

__all__ = ["TrainConfig"]

_LOSSES = ("mse", "l1", "huber", "cross_entropy")


@dataclass(frozen=True)
class TrainConfig:
    """How `fit` trains; JSON-compatible via `to_dict` / `from_dict` (stored in checkpoints)."""

    epochs: int = 100
    """Maximum passes (or window samples, see `max_batches_per_epoch`) over the training windows."""
    batch_size: int = 32
    """Windows per optimiser step."""
    lr: float = 1e-3
    """Peak AdamW learning rate (reached after the warmup)."""
    weight_decay: float = 0.01
    """AdamW decoupled weight decay."""
    warmup_fraction: float = 0.05
    """Share of all steps spent warming the learning rate up linearly from ~0; then cosine decay to 0."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this; 0 disables clipping."""
    patience: int = 10
    """Stop after this many epochs without a lower validation loss; 0 disables early stopping."""
    max_batches_per_epoch: int | None = None
    """If set, each epoch trains on a fresh random sample of at most this many batches (keeps CPU epochs cheap)."""
    eval_batch_size: int = 256
    """Windows per forward pass when evaluating."""
    seed: int = 0
    """Seeds window order/sampling, dropout and the LSH rotation stream (per epoch)."""
    device: str = "auto"
    """"auto" (CUDA with bfloat16 autocast when available, else CPU), "cpu", "cuda" or "cuda:N"."""
    loss: str = "mse"
    """"mse", "l1", "huber" (delta `huber_delta`) or "cross_entropy" (classification logits)."""
    huber_delta: float = 1.0
    """Huber transition point, in target units."""
    max_seconds: float | None = None
    """If set, stop after the first epoch that ends this many seconds after training began (a wall-time guard;
    the learning-rate schedule is not shortened, and the best epoch's weights are kept as with early stopping)."""

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"TrainConfig.{name}={value!r} must be an integer >= 1")
        if not isinstance(self.patience, int) or self.patience < 0:
            raise ConfigError(f"TrainConfig.patience={self.patience!r} must be an integer >= 0 (0 = no early stop)")
        mb = self.max_batches_per_epoch
        if mb is not None and (not isinstance(mb, int) or isinstance(mb, bool) or mb < 1):
            raise ConfigError(f"TrainConfig.max_batches_per_epoch={mb!r} must be an integer >= 1 or None")
        if not (isinstance(self.lr, int | float) and self.lr > 0):
            raise ConfigError(f"TrainConfig.lr={self.lr!r} must be > 0, e.g. 1e-3")
        if not self.weight_decay >= 0:
            raise ConfigError(f"TrainConfig.weight_decay={self.weight_decay!r} must be >= 0, e.g. 0.01")
        if not 0 <= self.warmup_fraction < 1:
            raise ConfigError(f"TrainConfig.warmup_fraction={self.warmup_fraction!r} must be in [0, 1), e.g. 0.05")
        if not self.grad_clip >= 0:
            raise ConfigError(f"TrainConfig.grad_clip={self.grad_clip!r} must be >= 0 (0 disables clipping)")
        if not self.huber_delta > 0:
            raise ConfigError(f"TrainConfig.huber_delta={self.huber_delta!r} must be > 0")
        if self.loss not in _LOSSES:
            raise ConfigError(f"TrainConfig.loss={self.loss!r} must be one of {list(_LOSSES)}")
        if not isinstance(self.seed, int):
            raise ConfigError(f"TrainConfig.seed={self.seed!r} must be an integer")
        ms = self.max_seconds
        if ms is not None and (not isinstance(ms, int | float) or isinstance(ms, bool) or not ms > 0):
            raise ConfigError(f"TrainConfig.max_seconds={ms!r} must be a number > 0 or None (no time limit)")
        if not (self.device in ("auto", "cpu", "cuda") or str(self.device).startswith("cuda:")):
            raise ConfigError(f"TrainConfig.device={self.device!r} must be 'auto', 'cpu', 'cuda' or 'cuda:N'")

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with `changes` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Build from a dict (a TOML `[train]` table or a checkpoint); unknown keys are an error."""
        return from_fields(cls, data)

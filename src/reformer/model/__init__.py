"""The Reformer model: config, attention kernels (full / LSH / local), reversible layers, `ReformerModel`."""

from .attention import AttentionOutput, SharedQKAttention
from .config import AttentionType, ReformerConfig
from .masking import AttentionMap
from .reformer import LayerAttention, ReformerModel

__all__ = [
    "AttentionMap",
    "AttentionOutput",
    "AttentionType",
    "LayerAttention",
    "ReformerConfig",
    "ReformerModel",
    "SharedQKAttention",
]

"""The Reformer model: config, attention kernels (full / LSH / local), reversible layers, `ReformerModel`, and the
patched series forecaster around it (`PatchReformerForecaster`: RevIN, patches, channel independence)."""

from .attention import AttentionOutput, SharedQKAttention
from .config import AttentionType, ReformerConfig
from .forecaster import ForecastConfig, PatchReformerForecaster, RevIN, n_patches, patchify
from .masking import AttentionMap
from .reformer import LayerAttention, ReformerModel

__all__ = [
    "AttentionMap",
    "AttentionOutput",
    "AttentionType",
    "ForecastConfig",
    "LayerAttention",
    "PatchReformerForecaster",
    "ReformerConfig",
    "ReformerModel",
    "RevIN",
    "SharedQKAttention",
    "n_patches",
    "patchify",
]

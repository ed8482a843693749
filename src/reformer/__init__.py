"""reformer-crypto: a Reformer (LSH attention, reversible layers) for long-sequence crypto forecasting."""

from .model import AttentionType, ReformerConfig, ReformerModel

__all__ = ["AttentionType", "ReformerConfig", "ReformerModel", "__version__"]
__version__ = "0.1.0"

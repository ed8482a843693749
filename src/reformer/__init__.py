"""reformer-crypto: a Reformer (LSH attention, reversible layers) for long-sequence crypto forecasting.

The public API, imported lazily so that `import reformer.strategy` (which never needs torch) stays light:

    from reformer import ReformerConfig, ReformerModel, BybitClient, DataLoader, BacktestConfig, run_backtest
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "AttentionType": "reformer.model",
    "ReformerConfig": "reformer.model",
    "ReformerModel": "reformer.model",
    "BybitClient": "reformer.api",
    "BybitStream": "reformer.api",
    "SyncBybitClient": "reformer.api",
    "FakeExchange": "reformer.api",
    "Kline": "reformer.api",
    "DataLoader": "reformer.data.dataset",
    "KlineStore": "reformer.data.store",
    "BacktestConfig": "reformer.strategy",
    "BacktestResult": "reformer.strategy",
    "run_backtest": "reformer.pipelines",  # walks a model forward; predictions go on to reformer.strategy
}

__all__ = [
    "AttentionType",
    "BacktestConfig",
    "BacktestResult",
    "BybitClient",
    "BybitStream",
    "DataLoader",
    "FakeExchange",
    "Kline",
    "KlineStore",
    "ReformerConfig",
    "ReformerModel",
    "SyncBybitClient",
    "__version__",
    "run_backtest",
]

if TYPE_CHECKING:
    from .api import BybitClient, BybitStream, FakeExchange, Kline, SyncBybitClient
    from .data.dataset import DataLoader
    from .data.store import KlineStore
    from .model import AttentionType, ReformerConfig, ReformerModel
    from .pipelines import run_backtest
    from .strategy import BacktestConfig, BacktestResult


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'reformer' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

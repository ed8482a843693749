"""Data: the kline store (with the perpetuals' funding, mark prices and risk limits), CSV/Parquet import and
export, features, windows and splits, the synthetic market.

Names are imported lazily, so the store and CSV tools (used by the CLI's fetch/import/export) do not pull in
torch, which only the window datasets need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "EXPORT_COLUMNS": "csv_io",
    "FUNDING_COLUMNS": "csv_io",
    "MARK_COLUMNS": "csv_io",
    "read_klines": "csv_io",
    "read_klines_frame": "csv_io",
    "write_funding": "csv_io",
    "write_klines": "csv_io",
    "write_mark_klines": "csv_io",
    "DataLoader": "dataset",
    "DatasetConfig": "dataset",
    "PreparedDataset": "dataset",
    "klines_to_frame": "dataset",
    "ConflictingRowsError": "derivatives_store",
    "DerivativesStore": "derivatives_store",
    "FeatureSpec": "features",
    "compute_features": "features",
    "CalendarSplit": "multi",
    "MultiSymbolDataset": "multi",
    "prepare_symbols": "multi",
    "StandardScaler": "scaling",
    "ConflictingCandlesError": "store",
    "Inserted": "store",
    "KlineStore": "store",
    "require_series": "stored",
    "SyntheticMarketConfig": "synthetic",
    "correlated_frames": "synthetic",
    "generate_market": "synthetic",
    "synthetic_frame": "synthetic",
    "synthetic_klines": "synthetic",
    "load_timeseries_csv": "timeseries",
    "lstf_splits": "timeseries",
    "chronological_split": "windows",
    "walk_forward_folds": "windows",
}

__all__ = [
    "EXPORT_COLUMNS",
    "FUNDING_COLUMNS",
    "MARK_COLUMNS",
    "CalendarSplit",
    "ConflictingCandlesError",
    "ConflictingRowsError",
    "DataLoader",
    "DatasetConfig",
    "DerivativesStore",
    "FeatureSpec",
    "Inserted",
    "KlineStore",
    "MultiSymbolDataset",
    "PreparedDataset",
    "StandardScaler",
    "SyntheticMarketConfig",
    "chronological_split",
    "compute_features",
    "correlated_frames",
    "generate_market",
    "klines_to_frame",
    "load_timeseries_csv",
    "lstf_splits",
    "prepare_symbols",
    "read_klines",
    "read_klines_frame",
    "require_series",
    "synthetic_frame",
    "synthetic_klines",
    "walk_forward_folds",
    "write_funding",
    "write_klines",
    "write_mark_klines",
]

if TYPE_CHECKING:
    from .csv_io import (
        EXPORT_COLUMNS,
        FUNDING_COLUMNS,
        MARK_COLUMNS,
        read_klines,
        read_klines_frame,
        write_funding,
        write_klines,
        write_mark_klines,
    )
    from .dataset import DataLoader, DatasetConfig, PreparedDataset, klines_to_frame
    from .derivatives_store import ConflictingRowsError, DerivativesStore
    from .features import FeatureSpec, compute_features
    from .multi import CalendarSplit, MultiSymbolDataset, prepare_symbols
    from .scaling import StandardScaler
    from .store import ConflictingCandlesError, Inserted, KlineStore
    from .stored import require_series
    from .synthetic import SyntheticMarketConfig, correlated_frames, generate_market, synthetic_frame, synthetic_klines
    from .timeseries import load_timeseries_csv, lstf_splits
    from .windows import chronological_split, walk_forward_folds


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'reformer.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value

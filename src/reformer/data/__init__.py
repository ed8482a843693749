"""Data: the kline store, CSV/Parquet import and export, features, windows and splits, the synthetic market."""

from .csv_io import EXPORT_COLUMNS, read_klines, read_klines_frame, write_klines
from .dataset import DataLoader, DatasetConfig, PreparedDataset, klines_to_frame
from .features import FeatureSpec, compute_features
from .scaling import StandardScaler
from .store import KlineStore
from .synthetic import SyntheticMarketConfig, generate_market, synthetic_frame, synthetic_klines
from .timeseries import load_timeseries_csv, lstf_splits
from .windows import chronological_split, walk_forward_folds

__all__ = [
    "EXPORT_COLUMNS",
    "DataLoader",
    "DatasetConfig",
    "FeatureSpec",
    "KlineStore",
    "PreparedDataset",
    "StandardScaler",
    "SyntheticMarketConfig",
    "chronological_split",
    "compute_features",
    "generate_market",
    "klines_to_frame",
    "load_timeseries_csv",
    "lstf_splits",
    "read_klines",
    "read_klines_frame",
    "synthetic_frame",
    "synthetic_klines",
    "walk_forward_folds",
    "write_klines",
]

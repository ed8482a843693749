"""A stored series that a command needs: its frame, or one error naming the series and the fetch that fills it.

The CLI (train, predict, backtest) and the examples all read a series this way, so an empty one is
reported alike everywhere (the model code would otherwise fail later on "no candles given").
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UserInputError
from ._store_access import resolve_path
from .store import DEFAULT_DB_PATH, KlineStore

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["existing_store", "missing_series", "read_series", "require_series"]


def missing_series(store: KlineStore | Path, category: str, symbol: str, interval: str, why: str = "",
                   alternative: str = "") -> UserInputError:
    """The error for a series `store` (or the store file at a path) does not hold; `why` (e.g. "predict never
    fetches") and `alternative` (e.g. "or pass --csv") are added when given."""
    path = store if isinstance(store, Path) else store.path
    because = f" ({why})" if why else ""
    fetch = (f"`reformer fetch --symbol {symbol} --interval {interval} --category {category} --db {path}`")
    return UserInputError(f"{path} holds no {category} {symbol} {interval} candles{because}: fetch them "
                          f"first, e.g. {fetch}{' ' + alternative if alternative else ''}")


def existing_store(db: str | os.PathLike[str] | None, category: str, symbol: str, interval: str, why: str = "",
                   alternative: str = "") -> KlineStore:
    """The store at `db` (`KlineStore`'s path rules) for a command that only reads it: a missing file is
    `missing_series`' error, not a new empty store left behind (in the home folder, by default).

    Raises:
        UserInputError: no store file there.
    """
    path = resolve_path(db, DEFAULT_DB_PATH)
    if not path.exists():
        raise missing_series(path, category, symbol, interval, why, alternative)
    return KlineStore(path)


def require_series(store: KlineStore, category: str, symbol: str, interval: str, why: str = "",
                   alternative: str = "") -> pd.DataFrame:
    """`store.load_frame` of a whole series that must hold candles.

    Raises:
        UserInputError: the store holds none of this series (`missing_series`).
    """
    frame = store.load_frame(category, symbol, interval)
    if frame.empty:
        raise missing_series(store, category, symbol, interval, why, alternative)
    return frame


def read_series(db: str | os.PathLike[str] | None, category: str, symbol: str, interval: str, why: str = "",
                alternative: str = "") -> pd.DataFrame:
    """`require_series` of the store at `db` for a command that only reads it (`existing_store`: no store file is
    the same error as no series in one)."""
    with existing_store(db, category, symbol, interval, why, alternative) as store:
        return require_series(store, category, symbol, interval, why, alternative)

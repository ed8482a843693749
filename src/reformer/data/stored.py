"""A stored series that a command needs: its frame, or one error naming the series and the fetch that fills it.

The CLI (train, predict, backtest) and the examples all read a series this way, so an empty one is
reported alike everywhere (the model code would otherwise fail later on "no candles given").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import UserInputError
from .store import KlineStore

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["missing_series", "require_series"]


def missing_series(store: KlineStore, category: str, symbol: str, interval: str, why: str = "",
                   alternative: str = "") -> UserInputError:
    """The error for a series `store` does not hold; `why` (e.g. "predict never fetches") and `alternative`
    (e.g. "or pass --csv") are added when given."""
    because = f" ({why})" if why else ""
    fetch = (f"`reformer fetch --symbol {symbol} --interval {interval} --category {category} --db {store.path}`")
    return UserInputError(f"{store.path} holds no {category} {symbol} {interval} candles{because}: fetch them "
                          f"first, e.g. {fetch}{' ' + alternative if alternative else ''}")


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

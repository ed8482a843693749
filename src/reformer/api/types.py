"""Wire types shared by the exchange client, the store and the data layer."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Kline"]


class Kline(NamedTuple):
    """One closed candle.

    Attributes:
        start_time: candle open time, epoch milliseconds UTC.
        open, high, low, close: prices in quote currency.
        volume: traded base quantity.
        turnover: traded quote value.
    """

    start_time: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    turnover: float

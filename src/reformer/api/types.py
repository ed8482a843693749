"""Wire types shared by the exchange client, the store and the data layer."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["FundingRate", "Kline", "MarkKline", "RiskLimitTier"]


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


class MarkKline(NamedTuple):
    """One closed mark-price candle: the price liquidations and funding are computed from, not a traded one, so
    it has no volume.

    Attributes:
        start_time: candle open time, epoch milliseconds UTC.
        open, high, low, close: mark prices in quote currency.
    """

    start_time: int
    open: float
    high: float
    low: float
    close: float


class FundingRate(NamedTuple):
    """One funding settlement. Positive rate: longs pay shorts.

    Attributes:
        time_ms: settlement time, epoch ms UTC.
        rate: funding rate as a fraction (0.0001 = 0.01 %).
    """

    time_ms: int
    rate: float


class RiskLimitTier(NamedTuple):
    """One tier of a perpetual's risk-limit table: a position worth up to `risk_limit_value` needs these margin
    rates, and may use at most `max_leverage`.

    Attributes:
        tier_id: the exchange's id of the tier (1 = the lowest risk).
        risk_limit_value: the largest position value in this tier, in the settlement coin (USDT for linear,
            the base coin for inverse contracts).
        maintenance_margin_rate: maintenance margin as a fraction of the position value (0.005 = 0.5 %).
        initial_margin_rate: initial margin as a fraction of the position value.
        max_leverage: the highest leverage allowed in this tier.
    """

    tier_id: int
    risk_limit_value: float
    maintenance_margin_rate: float
    initial_margin_rate: float
    max_leverage: float

"""The exchange: Bybit V5 REST client, WebSocket stream, wire types and a local fake exchange.

Typical use::

    async with BybitClient() as client:
        candles = await client.get_klines("BTCUSDT", "60", start=..., end=...)
        marks = await client.get_mark_klines("BTCUSDT", "60", start=..., end=...)
        rates, tiers = await client.get_funding_history("BTCUSDT", start=...), await client.get_risk_limits("BTCUSDT")
    async for candle in BybitStream("BTCUSDT", "60", client=client): ...

`FakeExchange` (in `reformer.api.fake`, re-exported here) serves the same API on 127.0.0.1 for tests; its
`replay` (a `ReplayClock`) runs it as a live market at a multiple of real time.
"""

from ._sync import SyncBybitClient
from .client import BybitClient, InstrumentInfo
from .fake import FakeExchange, Fault, FaultPlan, ReplayClock, run_fake_exchange
from .intervals import VALID_INTERVALS, interval_ms, parse_interval
from .stream import BybitStream
from .types import FundingRate, Kline, MarkKline, RiskLimitTier

__all__ = [
    "VALID_INTERVALS",
    "BybitClient",
    "BybitStream",
    "FakeExchange",
    "Fault",
    "FaultPlan",
    "FundingRate",
    "InstrumentInfo",
    "Kline",
    "MarkKline",
    "ReplayClock",
    "RiskLimitTier",
    "SyncBybitClient",
    "interval_ms",
    "parse_interval",
    "run_fake_exchange",
]

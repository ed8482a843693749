"""The exchange: Bybit V5 REST client, WebSocket stream, wire types and a local fake exchange.

Typical use::

    async with BybitClient() as client:
        candles = await client.get_klines("BTCUSDT", "60", start=..., end=...)
    async for candle in BybitStream("BTCUSDT", "60", client=client): ...

`FakeExchange` (in `reformer.api.fake`, re-exported here) serves the same API on 127.0.0.1 for tests.
"""

from ._sync import SyncBybitClient
from .client import BybitClient, FundingRate, InstrumentInfo
from .fake import FakeExchange, Fault, FaultPlan, run_fake_exchange
from .intervals import VALID_INTERVALS, interval_ms, parse_interval
from .stream import BybitStream
from .types import Kline

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
    "SyncBybitClient",
    "interval_ms",
    "parse_interval",
    "run_fake_exchange",
]

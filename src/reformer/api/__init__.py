"""The exchange: Bybit V5 REST client, WebSocket stream, wire types and a local fake exchange."""

from .types import Kline

__all__ = ["Kline"]

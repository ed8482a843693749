"""The fake exchange's market: its series, its clock and the REST routes, free of sockets (the perpetuals' mark
prices, funding and risk limits are derived in `_fake_derivatives.py`).

Answers follow Bybit's V5 market-data API: the V5 envelope, newest-first lists of strings, inclusive
`start`/`end`, the candle containing a mid-bucket `start`, the still-open candle (partial values) when a range
reaches "now", strict parameter checks with retCode 10001. Nothing here is served before "now": the fake's clock decides
which candles exist yet.
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ..errors import UserInputError
from ._fake_derivatives import FUNDING_EVERY_MS, funding_series, mark_kline, mm_deductions, risk_tiers, split_symbol
from .intervals import VALID_INTERVALS, interval_ms, parse_interval
from .types import FundingRate, Kline

SeriesKey = tuple[str, str, str]  # (category, symbol, interval)
KLINE_CATEGORIES = ("spot", "linear", "inverse")
PERPETUAL_CATEGORIES = ("linear", "inverse")
RISK_LIMIT_PAGE = 15  # symbols per /v5/market/risk-limit page when no symbol is named
_HOUR_MS = 3_600_000
_DAY_MS = 24 * _HOUR_MS
_OI_INTERVALS = {"5min": 300_000, "15min": 900_000, "30min": 1_800_000, "1h": _HOUR_MS, "4h": 4 * _HOUR_MS,
                 "1d": _DAY_MS}
Answer = tuple[int, dict[str, str], bytes]  # HTTP status, extra headers, body


class _ParamError(Exception):
    """A request Bybit would answer with retCode 10001; args[0] is the retMsg."""


@dataclass
class Series:
    """One (category, symbol, interval) candle series, ascending."""

    klines: list[Kline]
    step: int
    starts: list[int] = field(init=False)

    def __post_init__(self) -> None:
        self.starts = [k.start_time for k in self.klines]


def fmt(value: float) -> str:
    """A number as Bybit writes it: the shortest round-trip digits in plain decimal notation (never "5e-05"), no
    trailing '.0'."""
    text = format(Decimal(repr(float(value))), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def partial(kline: Kline, step: int, now: int) -> Kline:
    """The candle as it looked at `now` while still open: prices move linearly from open towards the final
    values and volume accrues pro rata, so low <= open, close <= high always holds."""
    frac = min(1.0, max(0.0, (now - kline.start_time + 1) / step))
    open_ = kline.open
    return Kline(kline.start_time, open_, open_ + (kline.high - open_) * frac, open_ + (kline.low - open_) * frac,
                 open_ + (kline.close - open_) * frac, kline.volume * frac, kline.turnover * frac)


class Market:
    """Series, clock and route handlers of the fake exchange.

    Args:
        series: candles per (category, symbol, interval); interval in any spelling `parse_interval` takes.
        now_ms: the clock; default 1 s after the newest candle's open (so that candle is still open).
        overflow: which candles (or funding settlements) a range holding more than `limit` returns when both
            its bounds are given: "newest" or "oldest" (Bybit does not document it; the client must not care).
        funding: settlements per (category, symbol); default a deterministic series every 8 h.
    """

    def __init__(self, series: Mapping[SeriesKey, Sequence[Kline]], now_ms: int | None = None,
                 overflow: str = "newest",
                 funding: Mapping[tuple[str, str], Sequence[FundingRate]] | None = None) -> None:
        if overflow not in ("newest", "oldest"):
            raise UserInputError(f"invalid overflow {overflow!r}: use 'newest' or 'oldest'")
        if not series:
            raise UserInputError("FakeExchange needs at least one series: pass {(category, symbol, interval): klines}")
        self.series: dict[SeriesKey, Series] = {}
        for (category, symbol, interval), klines in series.items():
            code = parse_interval(interval)
            if category not in KLINE_CATEGORIES or not klines:
                raise UserInputError(f"bad series {(category, symbol, interval)}: use a category among "
                                     f"{KLINE_CATEGORIES} and at least one candle")
            unique = {k.start_time: k for k in klines}
            self.series[(category, symbol, code)] = Series([unique[t] for t in sorted(unique)], interval_ms(code))
        self.now = now_ms if now_ms is not None else max(s.starts[-1] for s in self.series.values()) + 1000
        self.overflow = overflow
        self._funding = {key: sorted(rates) for key, rates in (funding or {}).items()}
        self._day_volume: dict[SeriesKey, float] = {}

    # ---- helpers -------------------------------------------------------------------------------------

    def symbols(self, category: str) -> list[str]:
        return sorted({symbol for cat, symbol, _ in self.series if cat == category})

    def launch_time(self, category: str, symbol: str) -> int:
        return min(s.starts[0] for (cat, sym, _), s in self.series.items() if (cat, sym) == (category, symbol))

    def visible(self, key: SeriesKey, lo: int, hi: int) -> list[Kline]:
        """Candles overlapping [lo, hi] that exist at `now`, ascending, the open one with partial values."""
        series = self.series[key]
        first = bisect.bisect_left(series.starts, lo - series.step + 1)  # the candle containing `lo` too
        last = bisect.bisect_right(series.starts, min(hi, self.now))
        rows = series.klines[first:last]
        if rows and rows[-1].start_time + series.step > self.now:
            rows[-1] = partial(rows[-1], series.step, self.now)
        return rows

    def envelope(self, result: Mapping[str, Any] | None = None, code: int = 0, message: str = "OK") -> Answer:
        body = {"retCode": code, "retMsg": message, "result": dict(result or {}), "retExtInfo": {},
                "time": self.now}
        return 200, {}, json.dumps(body, separators=(",", ":")).encode()

    def error(self, message: str, code: int = 10001) -> Answer:
        return self.envelope({}, code, message)

    # ---- routes --------------------------------------------------------------------------------------

    def handle(self, method: str, path: str, params: Mapping[str, str]) -> Answer:
        """Answer one request (no faults: those are the server's business)."""
        if method != "GET":
            return 400, {"Content-Type": "text/plain"}, b"method must be GET for public market data"
        route = {
            "/v5/market/time": self._time,
            "/v5/market/kline": self._kline,
            "/v5/market/mark-price-kline": self._mark_kline,
            "/v5/market/index-price-kline": self._index_kline,
            "/v5/market/premium-index-price-kline": self._premium_kline,
            "/v5/market/instruments-info": self._instruments,
            "/v5/market/tickers": self._tickers,
            "/v5/market/funding/history": self._funding_history,
            "/v5/market/open-interest": self._open_interest,
            "/v5/market/risk-limit": self._risk_limit,
        }.get(path)
        if route is None:
            return 404, {"Content-Type": "text/plain"}, b"Not Found"
        try:
            return route(params)
        except _ParamError as exc:
            return self.error(str(exc.args[0]))

    def _time(self, params: Mapping[str, str]) -> Answer:
        return self.envelope({"timeSecond": str(self.now // 1000), "timeNano": str(self.now * 1_000_000)})

    def _select_klines(self, params: Mapping[str, str]) -> tuple[str, str, list[Kline]]:
        category = params.get("category", "linear")  # Bybit defaults to linear
        if category not in KLINE_CATEGORIES:
            raise _ParamError(f"params error: category {category!r} invalid")
        symbol = params.get("symbol", "")
        if not symbol:
            raise _ParamError("params error: symbol is required")
        interval = params.get("interval", "")
        if interval not in VALID_INTERVALS:
            raise _ParamError("Invalid period!")
        bounds: dict[str, int | None] = {}
        for name, default in (("limit", "200"), ("start", None), ("end", None)):
            raw = params.get(name, default)
            try:
                bounds[name] = int(raw) if raw is not None else None
            except ValueError:
                raise _ParamError(f"params error: {name} must be an integer") from None
        limit = bounds["limit"]
        assert limit is not None
        if not 1 <= limit <= 1000:
            raise _ParamError("params error: limit must be in [1, 1000]")
        if symbol not in self.symbols(category):  # also rejects lower case, as Bybit does
            raise _ParamError("Not supported symbols")
        key = (category, symbol, interval)
        if key not in self.series:
            return category, symbol, []  # listed symbol, interval not loaded into the fake: no data
        start, end = bounds["start"], bounds["end"]
        rows = self.visible(key, start if start is not None else 0, end if end is not None else self.now)
        if start is not None and end is not None and start > end:
            rows = []
        if len(rows) > limit:
            # Bybit's behaviour as users report it (undocumented): start only -> anchored at start; end only /
            # neither -> the newest.
            oldest = start is not None and (end is None or self.overflow == "oldest")
            rows = rows[:limit] if oldest else rows[-limit:]
        return category, symbol, rows

    def _kline(self, params: Mapping[str, str]) -> Answer:
        category, symbol, rows = self._select_klines(params)
        listed = []
        for k in reversed(rows):  # newest first
            volume, turnover = (k.turnover, k.volume) if category == "inverse" else (k.volume, k.turnover)
            listed.append([str(k.start_time), fmt(k.open), fmt(k.high), fmt(k.low), fmt(k.close), fmt(volume),
                           fmt(turnover)])
        return self.envelope({"category": category, "symbol": symbol, "list": listed})

    def _mark_kline(self, params: Mapping[str, str]) -> Answer:
        category, symbol, rows = self._perpetual_klines(params)
        step = interval_ms(params["interval"])
        listed = [[str(m.start_time), fmt(m.open), fmt(m.high), fmt(m.low), fmt(m.close)]
                  for m in (mark_kline(k, step, symbol) for k in reversed(rows))]
        return self.envelope({"category": category, "symbol": symbol, "list": listed})

    def _index_kline(self, params: Mapping[str, str]) -> Answer:
        # the fake's perpetuals trade at their index: the traded candles, 5 fields, no volume
        category, symbol, rows = self._perpetual_klines(params)
        listed = [[str(k.start_time), fmt(k.open), fmt(k.high), fmt(k.low), fmt(k.close)] for k in reversed(rows)]
        return self.envelope({"category": category, "symbol": symbol, "list": listed})

    def _perpetual_klines(self, params: Mapping[str, str]) -> tuple[str, str, list[Kline]]:
        if params.get("category", "linear") not in PERPETUAL_CATEGORIES:
            raise _ParamError("params error: category must be linear or inverse")
        return self._select_klines(params)

    def _premium_kline(self, params: Mapping[str, str]) -> Answer:
        # linear only; the fake's perpetuals trade at their index, so the premium is 0
        if params.get("category", "linear") != "linear":
            raise _ParamError("params error: category must be linear")
        category, symbol, rows = self._select_klines(params)
        listed = [[str(k.start_time), "0", "0", "0", "0"] for k in reversed(rows)]
        return self.envelope({"category": category, "symbol": symbol, "list": listed})

    def _tickers(self, params: Mapping[str, str]) -> Answer:
        """24-hour statistics from the finest loaded series, at the fake's `now` (the open candle partial)."""
        category = params.get("category", "")
        if category not in KLINE_CATEGORIES:
            raise _ParamError("params error: category is required (spot, linear or inverse)")
        wanted = params.get("symbol")
        if wanted is not None and wanted not in self.symbols(category):
            raise _ParamError("Not supported symbols")
        items = [self._ticker(category, s) for s in self.symbols(category) if wanted in (None, s)]
        return self.envelope({"category": category, "list": items})

    def _finest(self, category: str, symbol: str) -> SeriesKey:
        """The loaded series of a symbol with the shortest candles (what tickers and open interest derive from)."""
        return min((k for k in self.series if k[:2] == (category, symbol)), key=lambda k: self.series[k].step)

    def _ticker(self, category: str, symbol: str) -> dict[str, Any]:
        key = self._finest(category, symbol)
        day = self.visible(key, self.now - _DAY_MS, self.now)
        hour = self.visible(key, self.now - _HOUR_MS, self.now)
        last = day[-1].close if day else self.series[key].klines[0].open
        tick = 0.01 if category == "spot" else 0.1
        item: dict[str, Any] = {
            "symbol": symbol, "lastPrice": fmt(last), "bid1Price": fmt(round(last - tick, 2)), "bid1Size": "1",
            "ask1Price": fmt(round(last + tick, 2)), "ask1Size": "1",
            "prevPrice24h": fmt(day[0].open if day else last),
            "price24hPcnt": fmt(round(last / day[0].open - 1.0, 4) if day else 0.0),
            "highPrice24h": fmt(max((k.high for k in day), default=last)),
            "lowPrice24h": fmt(min((k.low for k in day), default=last)),
            "volume24h": fmt(round(sum(k.volume for k in day), 6)),
            "turnover24h": fmt(round(sum(k.turnover for k in day), 6)),
        }
        if category == "spot":
            return {**item, "usdIndexPrice": fmt(last)}
        rates = [r for r in self.funding(category, symbol) if r.time_ms <= self.now]
        oi = self._oi_at(category, symbol, self.now)
        mark = mark_kline(day[-1], self.series[key].step, symbol).close if day else last
        return {**item, "indexPrice": fmt(last), "markPrice": fmt(mark),
                "prevPrice1h": fmt(hour[0].open if hour else last), "openInterest": fmt(oi),
                "openInterestValue": fmt(round(oi * last, 2)), "fundingRate": fmt(rates[-1].rate if rates else 0.0),
                "nextFundingTime": str((self.now // FUNDING_EVERY_MS + 1) * FUNDING_EVERY_MS),
                "fundingIntervalHour": "8", "predictedDeliveryPrice": "", "basisRate": "", "basis": "",
                "deliveryFeeRate": "", "deliveryTime": "0"}

    def _oi_at(self, category: str, symbol: str, time_ms: int) -> float:
        """A deterministic open interest: a day's mean volume of the series, swinging +-10 % over a week."""
        key = self._finest(category, symbol)
        if key not in self._day_volume:  # once per series: a page of open interest asks up to 200 times
            series = self.series[key]
            self._day_volume[key] = sum(k.volume for k in series.klines) / len(series.klines) * (_DAY_MS / series.step)
        return round(self._day_volume[key] * (1.0 + 0.1 * math.sin(2 * math.pi * time_ms / (7 * _DAY_MS))), 3)

    def _open_interest(self, params: Mapping[str, str]) -> Answer:
        category, symbol = params.get("category", ""), params.get("symbol", "")
        if category not in ("linear", "inverse"):
            raise _ParamError("params error: category must be linear or inverse")
        if not symbol:
            raise _ParamError("params error: symbol is required")
        if symbol not in self.symbols(category):
            raise _ParamError("Not supported symbols")
        step = _OI_INTERVALS.get(params.get("intervalTime", ""))
        if step is None:
            raise _ParamError(f"params error: intervalTime must be one of {', '.join(_OI_INTERVALS)}")
        try:
            limit = int(params.get("limit", "50"))
            start = int(params.get("startTime") or self.launch_time(category, symbol))
            end = int(params.get("cursor") or params.get("endTime") or self.now)  # cursor: the next page's end
        except ValueError:
            raise _ParamError("params error: limit, startTime, endTime and cursor must be integers") from None
        if not 1 <= limit <= 200:
            raise _ParamError("params error: limit must be in [1, 200]")
        newest = min(end, self.now) // step * step  # newest first, on the intervalTime grid
        oldest = max(-(-start // step) * step, -(-self.launch_time(category, symbol) // step) * step)
        times = list(range(newest, oldest - 1, -step))
        page, rest = times[:limit], times[limit:]
        listed = [{"openInterest": fmt(self._oi_at(category, symbol, t)), "timestamp": str(t)} for t in page]
        return self.envelope({"category": category, "symbol": symbol, "list": listed,
                              "nextPageCursor": str(rest[0]) if rest else ""})

    def _instruments(self, params: Mapping[str, str]) -> Answer:
        category = params.get("category", "")
        if not category:
            raise _ParamError("params error: category is required")
        if category not in KLINE_CATEGORIES:
            raise _ParamError(f"params error: category {category!r} invalid")
        wanted = params.get("symbol")
        # An unlisted symbol gives an empty list, not an error; the client must handle that.
        items = [self._instrument(category, s) for s in self.symbols(category) if wanted in (None, s)]
        return self.envelope({"category": category, "list": items, "nextPageCursor": ""})

    def _instrument(self, category: str, symbol: str) -> dict[str, Any]:
        base, quote = split_symbol(symbol)
        if category == "spot":
            return {"symbol": symbol, "baseCoin": base, "quoteCoin": quote, "status": "Trading",
                    "marginTrading": "both", "priceFilter": {"tickSize": "0.01"},
                    "lotSizeFilter": {"basePrecision": "0.000001", "quotePrecision": "0.00000001",
                                      "minOrderQty": "0.000048", "maxOrderQty": "71.73956243",
                                      "minOrderAmt": "1", "maxOrderAmt": "2000000"}}
        return {
            "symbol": symbol, "contractType": "InversePerpetual" if category == "inverse" else "LinearPerpetual",
            "status": "Trading", "baseCoin": base, "quoteCoin": quote,
            "settleCoin": base if category == "inverse" else quote,
            "launchTime": str(self.launch_time(category, symbol)), "deliveryTime": "0", "priceScale": "2",
            "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00", "leverageStep": "0.01"},
            "priceFilter": {"minPrice": "0.10", "maxPrice": "1999999.80", "tickSize": "0.10"},
            "lotSizeFilter": {"minOrderQty": "0.001", "maxOrderQty": "1190.000", "maxMktOrderQty": "500.000",
                              "qtyStep": "0.001", "minNotionalValue": "5"},
            "fundingInterval": 480, "upperFundingRate": "0.005", "lowerFundingRate": "-0.005",
        }

    def _funding_history(self, params: Mapping[str, str]) -> Answer:
        category = params.get("category", "")
        if category not in ("linear", "inverse"):
            raise _ParamError("params error: category must be linear or inverse")
        symbol = params.get("symbol", "")
        if not symbol:
            raise _ParamError("params error: symbol is required")
        if symbol not in self.symbols(category):
            raise _ParamError("Not supported symbols")
        try:
            limit = int(params.get("limit", "200"))
            start = int(params["startTime"]) if "startTime" in params else None
            end = int(params["endTime"]) if "endTime" in params else None
        except ValueError:
            raise _ParamError("params error: limit, startTime and endTime must be integers") from None
        if not 1 <= limit <= 200:
            raise _ParamError("params error: limit must be in [1, 200]")
        if start is not None and end is None:
            raise _ParamError("params error: endTime is required when startTime is given")
        rates = self.funding(category, symbol)
        times = [r.time_ms for r in rates]
        lo = bisect.bisect_left(times, start) if start is not None else 0
        hi = bisect.bisect_right(times, min(end if end is not None else self.now, self.now))
        # endTime alone: the newest `limit` (documented); with startTime too, as `overflow` says (undocumented)
        chosen = rates[lo:hi][:limit] if start is not None and self.overflow == "oldest" else rates[lo:hi][-limit:]
        listed = [{"symbol": symbol, "fundingRate": fmt(r.rate), "fundingRateTimestamp": str(r.time_ms)}
                  for r in reversed(chosen)]
        return self.envelope({"category": category, "list": listed})

    def funding(self, category: str, symbol: str) -> list[FundingRate]:
        """Settlements of one symbol (given, or generated every 8 h from listing to the last candle's close,
        following its price: `_fake_derivatives.funding_series`)."""
        key = (category, symbol)
        if key not in self._funding:
            finest = self.series[self._finest(category, symbol)]
            last = max(s.starts[-1] + s.step for (c, sym, _), s in self.series.items() if (c, sym) == key)
            self._funding[key] = funding_series(finest.klines, finest.step, self.launch_time(category, symbol), last,
                                                f"{category}:{symbol}")
        return self._funding[key]

    def _risk_limit(self, params: Mapping[str, str]) -> Answer:
        """Risk-limit tables: one symbol's, or every symbol's, 15 symbols a page behind `nextPageCursor`."""
        category = params.get("category", "")
        if category not in PERPETUAL_CATEGORIES:
            raise _ParamError("params error: category must be linear or inverse")
        wanted = params.get("symbol")
        if wanted is not None and wanted not in self.symbols(category):
            raise _ParamError("Not supported symbols")
        symbols = [s for s in self.symbols(category) if wanted in (None, s)]
        try:
            first = int(params.get("cursor") or 0)
        except ValueError:
            raise _ParamError("params error: cursor is invalid") from None
        page = symbols[first:first + RISK_LIMIT_PAGE]
        items = []
        for symbol in page:
            tiers = risk_tiers(category, symbol, self.series[self._finest(category, symbol)].klines[0].open)
            items += [{"id": tier.tier_id, "symbol": symbol, "riskLimitValue": fmt(tier.risk_limit_value),
                       "maintenanceMargin": fmt(tier.maintenance_margin_rate),
                       "initialMargin": fmt(tier.initial_margin_rate), "isLowestRisk": int(n == 0),
                       "maxLeverage": f"{tier.max_leverage:.2f}", "mmDeduction": fmt(deduction) if n else ""}
                      for n, (tier, deduction) in enumerate(zip(tiers, mm_deductions(tiers), strict=True))]
        following = first + RISK_LIMIT_PAGE
        return self.envelope({"category": category, "list": items,
                              "nextPageCursor": str(following) if following < len(symbols) else ""})

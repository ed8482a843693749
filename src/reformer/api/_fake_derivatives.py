"""What the fake exchange derives for its perpetuals from the traded candles: mark prices, funding settlements and
risk-limit tables. Pure functions, deterministic per symbol, so a CSV or a synthetic market gets them alike.

* Mark price: the traded price times (1 + basis), the basis a smooth wave of at most +-0.04 % (a few hours and a
  few days long, phase set by the symbol). A mark candle opens and closes on the basis at its bounds, so one
  candle's close meets the next one's open wherever the traded candles do; its wicks sit a little inside the
  traded ones (a mark price is an average, its extremes are shallower), never more than 0.06 % from them.
* Funding: every 8 h on the UTC grid (00:00, 08:00, 16:00), Bybit's formula rate = P + clamp(0.01 % - P, +-0.05 %)
  on a premium P of 0.01 % plus 2 % of the last 24 hours' price change (a rising market: longs pay more) plus
  noise, capped at +-0.5 %, the instrument's funding bounds. Quiet markets settle at exactly 0.01 %, as real ones
  do; trends move the rate away from it.
* Risk limits: ten tiers; each raises the position limit by one step and the maintenance and initial margin
  rates by 0.5 %. BTC and ETH start at 0.5 % / 1 % (100x), other coins at 1 % / 2 % (50x).
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
import zlib
from collections.abc import Sequence

from .types import FundingRate, Kline, MarkKline, RiskLimitTier

FUNDING_EVERY_MS = 8 * 3_600_000
RISK_TIERS = 10
MAJORS = ("BTC", "ETH")
_DAY_MS = 24 * 3_600_000
_BASIS = ((0.0003, 3 * _DAY_MS), (0.0001, 7 * 3_600_000))  # (amplitude, period): the mark's deviation waves
_WICK_INSIDE = 0.0002  # how far inside the traded wicks the mark's extremes sit, as a fraction
_INTEREST = 0.0001  # Bybit's interest component: 0.01 % per 8 h
_CLAMP = 0.0005
_CAP = 0.005  # the instrument's upperFundingRate / lowerFundingRate
_QUOTES = ("USDT", "USDC", "USD")


def split_symbol(symbol: str) -> tuple[str, str]:
    """(base coin, quote coin) of a symbol such as "BTCUSDT"."""
    quote = next((q for q in _QUOTES if symbol.endswith(q)), "USDT")
    return symbol[: -len(quote)] or symbol, quote


def _phase(symbol: str) -> float:
    return zlib.crc32(symbol.encode()) / 2**32  # stable across runs, unlike hash()


def basis(symbol: str, time_ms: float) -> float:
    """The mark price's deviation from the traded price at `time_ms`, a fraction within +-0.04 %."""
    phase = _phase(symbol)
    return sum(amplitude * math.sin(2 * math.pi * (time_ms / period + phase * (n + 1)))
               for n, (amplitude, period) in enumerate(_BASIS))


def mark_kline(kline: Kline, step: int, symbol: str) -> MarkKline:
    """The mark-price candle over one traded candle (see the module's notes)."""
    start = kline.start_time
    open_ = _round(kline.open * (1 + basis(symbol, start)))
    close = _round(kline.close * (1 + basis(symbol, start + step)))
    middle = basis(symbol, start + step / 2)
    high = max(open_, close, _round(kline.high * (1 + middle - _WICK_INSIDE)))
    low = min(open_, close, _round(kline.low * (1 + middle + _WICK_INSIDE)))
    return MarkKline(start, open_, high, low, close)


def _round(price: float) -> float:
    # 8 significant digits, as an exchange's tick would; rounding is monotone, so high >= open, close >= low holds
    return float(f"{price:.8g}")


def funding_series(klines: Sequence[Kline], step: int, first: int, last: int, seed: str) -> list[FundingRate]:
    """Settlements every 8 h in [first, last] on the UTC grid, following the candles' price drift.

    Args:
        klines: the symbol's traded candles, ascending (its finest series).
        step: their length, ms.
        first, last: the span to settle, epoch ms.
        seed: makes the noise deterministic (e.g. "linear:BTCUSDT").
    """
    rng = random.Random(seed)  # str seeds are stable across runs
    starts = [k.start_time for k in klines]

    def price(time_ms: int) -> float:  # the last close known at `time_ms`
        index = bisect.bisect_right(starts, time_ms - step) - 1
        return klines[index].close if index >= 0 else klines[0].open

    rates = []
    for time_ms in range(-(-first // FUNDING_EVERY_MS) * FUNDING_EVERY_MS, last + 1, FUNDING_EVERY_MS):
        premium = _INTEREST + 0.02 * (price(time_ms) / price(time_ms - _DAY_MS) - 1.0) + rng.gauss(0.0, 0.0001)
        rate = premium + min(_CLAMP, max(-_CLAMP, _INTEREST - premium))
        rates.append(FundingRate(time_ms, round(min(_CAP, max(-_CAP, rate)), 8)))
    return rates


def risk_tiers(category: str, symbol: str, price: float) -> list[RiskLimitTier]:
    """The symbol's risk-limit table (see the module's notes); `price` converts the USDT steps into coins for
    inverse contracts, whose limits are in the base coin."""
    base, _ = split_symbol(symbol)
    major = base in MAJORS
    step = {"BTC": 2_000_000.0, "ETH": 1_000_000.0}.get(base, 200_000.0)
    if category == "inverse":
        step = float(f"{step / price:.3g}")
    first_mmr = 0.005 if major else 0.01
    tiers = []
    for n in range(RISK_TIERS):
        mmr, imr = round(first_mmr + 0.005 * n, 4), round(2 * first_mmr + 0.005 * n, 4)
        tiers.append(RiskLimitTier(n + 1, round(step * (n + 1), 6), mmr, imr, round(1 / imr, 2)))
    return tiers


def mm_deductions(tiers: Sequence[RiskLimitTier]) -> list[float]:
    """Each tier's maintenance-margin deduction: what keeps the maintenance margin continuous where one tier's
    rate steps up to the next (the sum of each lower tier's limit times the rate step above it)."""
    deductions = [0.0]
    for lower, upper in itertools.pairwise(tiers):
        step_up = upper.maintenance_margin_rate - lower.maintenance_margin_rate
        deductions.append(round(deductions[-1] + lower.risk_limit_value * step_up, 8))
    return deductions

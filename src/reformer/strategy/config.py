"""Backtest configuration: the validated, frozen `BacktestConfig` dataclass.

Units: money is in the settle currency: the quote coin (USDT) for linear perpetuals and spot, the base coin (BTC)
for inverse contracts. Every fraction is a plain fraction (0.02 = 2 %): of equity for sizing, of the entry fill
price for stops and targets, of the traded notional for fees, of the price for slippage.

Fees default to Bybit's base tier: 0.055 % taker and 0.02 % maker on perpetuals, 0.1 % both on spot. Market
orders (entries, signal exits, stops, liquidations) pay taker; a take-profit is a resting limit order and pays
maker. `commission` sets both rates at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import ConfigError

__all__ = ["CATEGORIES", "DEFAULT_MAINTENANCE_MARGIN_RATE", "BacktestConfig"]

CATEGORIES = ("linear", "inverse", "spot")
"""Bybit's product categories: USDT-settled perpetuals, coin-settled (inverse) contracts, spot."""
DEFAULT_MAINTENANCE_MARGIN_RATE = 0.005
"""BTCUSDT's first risk-limit tier; a symbol's own tier (`Instrument`) or `maintenance_margin_rate` replaces it."""
_FEES = {"linear": (0.00055, 0.0002), "inverse": (0.00055, 0.0002), "spot": (0.001, 0.001)}
_MAX_LEVERAGE = 125.0


def _fail(name: str, value: object, fix: str) -> ConfigError:
    return ConfigError(f"BacktestConfig.{name}={value!r} is invalid: {fix}")


def _finite(name: str, value: object) -> float:
    # bool is an int subclass: reject it so `stop_loss=True` does not silently mean 1.0
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(name, value, "pass a finite number")
    return float(value)


@dataclass(frozen=True)
class BacktestConfig:
    """Everything the signal mapping and the bar-by-bar engine need, validated at construction.

    A fraction of 0 disables a stop or a target. Fees and slippage apply on every fill; see
    `reformer.strategy.engine` for the exact fill rules.

    Raises:
        ConfigError: a field is out of range; the message names the field, the value and the fix.
    """

    initial_capital: float = 10_000.0
    """Starting equity in the settle currency (> 0)."""
    position_size: float = 0.1
    """Notional of a position at target +-1 as a multiple of current equity, in (0, leverage]."""
    leverage: float = 1.0
    """Isolated-margin leverage in [1, 125]: initial margin = notional / leverage; also the cap on the portfolio's
    gross notional over equity. Spot trades at 1."""
    category: str = "linear"
    """"linear" (USDT perpetual), "inverse" (coin-settled: profit and loss in the coin) or "spot"."""
    maintenance_margin_rate: float | None = None
    """Maintenance margin over notional, in [0, 1/leverage); None: the instrument's first risk-limit tier, else
    `DEFAULT_MAINTENANCE_MARGIN_RATE`."""
    stop_loss: float = 0.02
    """Stop distance as a fraction of the entry fill price, in [0, 1); 0 disables the stop."""
    take_profit: float = 0.04
    """Target distance as a fraction of the entry fill price, >= 0 (< 1 for shorts to stay above 0); 0 disables."""
    commission: float | None = None
    """Sets both `taker_fee` and `maker_fee` (where those are None), fraction of traded notional, in [0, 0.1)."""
    taker_fee: float | None = None
    """Fee of market fills, in [0, 0.1); None: `commission`, else the category's base tier."""
    maker_fee: float | None = None
    """Fee of take-profit (resting limit) fills, in [0, 0.1); None: `commission`, else the category's base tier."""
    slippage: float = 0.0
    """Adverse price move per market or stop fill, as a fraction of the price, in [0, 0.1)."""
    allow_short: bool | None = None
    """Allow negative target positions (a short target is flat otherwise); None: yes, except on spot."""
    borrow_rate: float = 0.05
    """Spot shorts only: yearly interest on the borrowed coin's value, charged bar by bar, in [0, 10)."""
    funding: bool = True
    """Apply perpetual funding payments when a funding-rate history is passed to the backtest (never on spot)."""
    long_threshold: float = 0.0
    """Go long when the predicted return (or p_up - p_down) is strictly above this value."""
    short_threshold: float = 0.0
    """Go short when the predicted return (or p_up - p_down) is strictly below this value (<= long_threshold)."""
    vol_target: float | None = None
    """Per-bar volatility (std of log returns, a fraction) to scale positions to; None disables scaling."""
    vol_window: int = 24
    """Bars in the rolling realised-volatility window used by `vol_target` (>= 2)."""
    rebalance_band: float = 0.2
    """A new target on the same side is traded only when it moves the position's notional by more than this
    fraction of it, in [0, 1); 0 trades every change."""

    @property
    def fees(self) -> tuple[float, float]:
        """(taker, maker) as fractions of notional, defaults resolved."""
        taker, maker = _FEES[self.category]
        if self.commission is not None:
            taker = maker = self.commission
        return (self.taker_fee if self.taker_fee is not None else taker,
                self.maker_fee if self.maker_fee is not None else maker)

    @property
    def shorts(self) -> bool:
        """Whether negative targets open shorts (`allow_short`, resolved)."""
        return self.allow_short if self.allow_short is not None else self.category != "spot"

    @property
    def settle_currency(self) -> str:
        """What equity and profit are counted in: "coin" for inverse contracts, else "quote"."""
        return "coin" if self.category == "inverse" else "quote"

    def __post_init__(self) -> None:
        capital = _finite("initial_capital", self.initial_capital)
        if capital <= 0:
            raise _fail("initial_capital", self.initial_capital, "use a positive amount, e.g. 10000.0")
        if self.category not in CATEGORIES:
            raise _fail("category", self.category, "use 'linear', 'inverse' or 'spot'")
        leverage = _finite("leverage", self.leverage)
        if not 1 <= leverage <= _MAX_LEVERAGE:
            raise _fail("leverage", self.leverage, f"use a value in [1, {_MAX_LEVERAGE:g}], e.g. 3")
        if self.category == "spot" and leverage != 1:
            raise _fail("leverage", self.leverage, "spot trades without leverage: use 1, or category='linear'")
        size = _finite("position_size", self.position_size)
        if not 0 < size <= leverage:
            raise _fail("position_size", self.position_size,
                        f"use a multiple of equity in (0, leverage={leverage:g}], e.g. 0.1 (raise leverage for more)")
        if self.maintenance_margin_rate is not None:
            mmr = _finite("maintenance_margin_rate", self.maintenance_margin_rate)
            if not 0 <= mmr < 1 / leverage:
                raise _fail("maintenance_margin_rate", mmr, f"use a fraction in [0, 1/leverage={1 / leverage:g}), "
                            "e.g. 0.005")
        stop = _finite("stop_loss", self.stop_loss)
        if not 0 <= stop < 1:
            raise _fail("stop_loss", self.stop_loss, "use a fraction of the entry price in [0, 1); 0 disables")
        target = _finite("take_profit", self.take_profit)
        if target < 0:
            raise _fail("take_profit", self.take_profit, "use a fraction of the entry price >= 0; 0 disables")
        if self.shorts and target >= 1:
            raise _fail("take_profit", self.take_profit,
                        "a short's target below a zero price is unreachable: use a value < 1 or allow_short=False")
        for name in ("commission", "taker_fee", "maker_fee", "slippage"):
            if name != "slippage" and getattr(self, name) is None:
                continue
            value = _finite(name, getattr(self, name))
            if not 0 <= value < 0.1:
                raise _fail(name, value, "use a fraction in [0, 0.1), e.g. 0.00055 for 0.055 %")
        if not isinstance(self.funding, bool):
            raise _fail("funding", self.funding, "pass True or False")
        if self.allow_short is not None and not isinstance(self.allow_short, bool):
            raise _fail("allow_short", self.allow_short, "pass True, False or None (yes except on spot)")
        if not 0 <= _finite("borrow_rate", self.borrow_rate) < 10:
            raise _fail("borrow_rate", self.borrow_rate, "use a yearly fraction in [0, 10), e.g. 0.05")
        if not 0 <= _finite("rebalance_band", self.rebalance_band) < 1:
            raise _fail("rebalance_band", self.rebalance_band, "use a fraction in [0, 1), e.g. 0.2; 0 trades every "
                        "change")
        long_threshold = _finite("long_threshold", self.long_threshold)
        short_threshold = _finite("short_threshold", self.short_threshold)
        if short_threshold > long_threshold:
            raise _fail("short_threshold", self.short_threshold,
                        f"it must not exceed long_threshold={self.long_threshold!r}")
        if self.vol_target is not None and _finite("vol_target", self.vol_target) <= 0:
            raise _fail("vol_target", self.vol_target, "use a positive per-bar volatility, e.g. 0.01, or None")
        if isinstance(self.vol_window, bool) or not isinstance(self.vol_window, int) or self.vol_window < 2:
            raise _fail("vol_window", self.vol_window, "use an integer number of bars >= 2, e.g. 24")

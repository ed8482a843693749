"""Backtest configuration: the validated, frozen `BacktestConfig` dataclass.

Units: money is in quote currency (USDT); every fraction is a plain fraction (0.02 = 2 %), of equity for sizing,
of the entry fill price for stops and targets, of the traded notional for commission, of the price for slippage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import ConfigError

__all__ = ["BacktestConfig"]


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
    """Starting equity in quote currency (> 0)."""
    position_size: float = 0.1
    """Fraction of current equity put into a position at target +-1, in (0, 1] (no leverage)."""
    stop_loss: float = 0.02
    """Stop distance as a fraction of the entry fill price, in [0, 1); 0 disables the stop."""
    take_profit: float = 0.04
    """Target distance as a fraction of the entry fill price, >= 0 (< 1 for shorts to stay above 0); 0 disables."""
    commission: float = 0.001
    """Fee as a fraction of traded notional, charged on entry and on exit, in [0, 0.1)."""
    slippage: float = 0.0
    """Adverse price move per market or stop fill, as a fraction of the price, in [0, 0.1)."""
    allow_short: bool = True
    """Allow negative target positions; when False a short target is treated as flat."""
    funding: bool = True
    """Apply perpetual funding payments when a funding-rate history is passed to the backtest."""
    long_threshold: float = 0.0
    """Go long when the predicted return (or p_up - p_down) is strictly above this value."""
    short_threshold: float = 0.0
    """Go short when the predicted return (or p_up - p_down) is strictly below this value (<= long_threshold)."""
    vol_target: float | None = None
    """Per-bar volatility (std of log returns, a fraction) to scale positions to; None disables scaling."""
    vol_window: int = 24
    """Bars in the rolling realised-volatility window used by `vol_target` (>= 2)."""

    def __post_init__(self) -> None:
        capital = _finite("initial_capital", self.initial_capital)
        if capital <= 0:
            raise _fail("initial_capital", self.initial_capital, "use a positive amount, e.g. 10000.0")
        size = _finite("position_size", self.position_size)
        if not 0 < size <= 1:
            raise _fail("position_size", self.position_size, "use a fraction of equity in (0, 1], e.g. 0.1")
        stop = _finite("stop_loss", self.stop_loss)
        if not 0 <= stop < 1:
            raise _fail("stop_loss", self.stop_loss, "use a fraction of the entry price in [0, 1); 0 disables")
        target = _finite("take_profit", self.take_profit)
        if target < 0:
            raise _fail("take_profit", self.take_profit, "use a fraction of the entry price >= 0; 0 disables")
        if self.allow_short and target >= 1:
            raise _fail("take_profit", self.take_profit,
                        "a short's target below a zero price is unreachable: use a value < 1 or allow_short=False")
        for name in ("commission", "slippage"):
            value = _finite(name, getattr(self, name))
            if not 0 <= value < 0.1:
                raise _fail(name, value, "use a fraction in [0, 0.1), e.g. 0.001 for 0.1 %")
        for name in ("allow_short", "funding"):
            if not isinstance(getattr(self, name), bool):
                raise _fail(name, getattr(self, name), "pass True or False")
        long_threshold = _finite("long_threshold", self.long_threshold)
        short_threshold = _finite("short_threshold", self.short_threshold)
        if short_threshold > long_threshold:
            raise _fail("short_threshold", self.short_threshold,
                        f"it must not exceed long_threshold={self.long_threshold!r}")
        if self.vol_target is not None and _finite("vol_target", self.vol_target) <= 0:
            raise _fail("vol_target", self.vol_target, "use a positive per-bar volatility, e.g. 0.01, or None")
        if isinstance(self.vol_window, bool) or not isinstance(self.vol_window, int) or self.vol_window < 2:
            raise _fail("vol_window", self.vol_window, "use an integer number of bars >= 2, e.g. 24")

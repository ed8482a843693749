"""An instrument's exchange rules: price tick, quantity step, minimum order, and its maintenance margin.

Bybit publishes these per symbol (instruments-info: `tickSize`, `qtyStep`, `minOrderQty`; risk-limit: the first
tier's `maintenanceMargin`); the engine rounds to them as the exchange would:

    quantity -> floor(|q| / qty_step) * qty_step      an order that rounds below min_qty is not placed
    price    -> a multiple of tick_size, against the trader (a buy up, a sell down)

For an inverse contract the quantity is in contracts (1 USD each on Bybit), so `qty_step` is 1 there.
Zero disables a rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import ConfigError

__all__ = ["Instrument"]


@dataclass(frozen=True)
class Instrument:
    """One symbol's trading rules (all zero / None: no rounding, the config's maintenance margin)."""

    symbol: str = ""
    """The symbol's name, e.g. "BTCUSDT" (labels a portfolio's rows)."""
    tick_size: float = 0.0
    """Price increment (0: any price)."""
    qty_step: float = 0.0
    """Order quantity increment in base units, or contracts for inverse (0: any quantity)."""
    min_qty: float = 0.0
    """Smallest order quantity placed (0: any)."""
    maintenance_margin_rate: float | None = None
    """The first risk-limit tier's maintenance margin rate (None: the config's)."""

    def __post_init__(self) -> None:
        for name in ("tick_size", "qty_step", "min_qty"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"Instrument.{name}={value!r} is invalid: use a number >= 0 (0 disables the rule)")
        mmr = self.maintenance_margin_rate
        if mmr is not None and (isinstance(mmr, bool) or not isinstance(mmr, int | float) or not 0 <= mmr < 1):
            raise ConfigError(f"Instrument.maintenance_margin_rate={mmr!r} is invalid: use a fraction in [0, 1), "
                              "e.g. 0.005, or None")

    def round_qty(self, quantity: float) -> float:
        """|quantity| rounded down to the step (the sign kept); 0 when it falls below `min_qty`."""
        size = abs(quantity)
        if self.qty_step > 0:
            # a hair of tolerance: 0.3 / 0.1 is 2.9999999999999996 in floating point, and is 3 steps
            size = math.floor(size / self.qty_step + 1e-9) * self.qty_step
        if size < self.min_qty or size == 0:
            return 0.0
        return math.copysign(size, quantity)

    def round_price(self, price: float, up: bool) -> float:
        """`price` on the tick grid, rounded up (`up`) or down."""
        if self.tick_size <= 0:
            return price
        steps = price / self.tick_size
        steps = math.ceil(steps - 1e-9) if up else math.floor(steps + 1e-9)
        return steps * self.tick_size

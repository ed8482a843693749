"""One symbol's position inside the engine: fills, margin, liquidation, stops, funding, and its trade log.

Prices are kept in *value space*, where a position's worth is linear in price for every category:

    linear, spot:  x = P,    u = units held (base coin)            value = u · x (quote coin)
    inverse:       x = 1/P,  u = -contracts (a long is short USD)   value = u · x (the coin)

so cash, equity, fees and margin are one formula for all three, and an inverse long's profit
u · (x_exit - x_entry) = contracts · (1/P_entry - 1/P_exit), Bybit's inverse profit and loss. `d` = +1 (linear,
spot) or -1 (inverse) turns value-space sides into the trader's: trader side = d · sign(u). Stop, target and
liquidation levels are computed in prices (P) and kept in value space; bar highs and lows swap under x = 1/P.

Isolated margin (one position, average entry x̄, leverage L, maintenance margin rate m):

    initial margin      IM = |u| · x̄ / L
    liquidation level   x_liq = x̄ · (1 - s/L + s·m),   s = sign(u)
                        (linear long: P · (1 - 1/L + m); short: P · (1 + 1/L - m);
                         inverse long: P / (1 + 1/L - m); short: P / (1 - 1/L + m))

A liquidation closes the position and costs exactly IM against its cost basis u · x̄: the exit's taker fee is
paid out of the maintenance margin and the rest goes to the exchange's insurance fund, which also covers a gap
past the level; so the trader never loses more than the margin.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from .instrument import Instrument

__all__ = ["Account", "Book", "Trade"]


@dataclass(slots=True)
class Trade:
    """Book-keeping of one round trip (a period with a position on one side), in value space."""

    side: int  # sign(u)
    entry_bar: int
    units_in: float = 0.0  # |u| added to build the position
    cost_in: float = 0.0  # value of those fills
    units_out: float = 0.0
    value_out: float = 0.0
    peak_units: float = 0.0
    fees: float = 0.0
    funding: float = 0.0
    cash_flow: float = 0.0  # cash received minus paid by this trade's fills, fees and funding

    def entry_x(self) -> float:
        return self.cost_in / self.units_in


class Account:
    """The cash every book of a backtest shares (one equity), and the books' latest marks."""

    __slots__ = ("books", "cash")

    def __init__(self, cash: float) -> None:
        self.cash = cash
        self.books: list[Book] = []

    def equity(self) -> float:
        """Cash plus every position at its latest price (this bar's open for a book at its open)."""
        return self.cash + sum(book.u * book.last_x for book in self.books)

    def gross(self, skip: Book) -> float:
        """Gross notional of every book but `skip`."""
        return sum(abs(book.u) * book.last_x for book in self.books if book is not skip)


class Book:
    """State and fills of one symbol; the engine calls `at_open`, `in_bar` and `at_close` bar by bar."""

    def __init__(self, account: Account, *, inverse: bool, spot: bool, size: float, leverage: float, mmr: float,
                 taker: float, maker: float, slippage: float, stop: float, target: float, band: float,
                 instrument: Instrument) -> None:
        self.account = account
        self.d = -1.0 if inverse else 1.0
        self.spot = spot
        self.size, self.leverage, self.mmr = size, leverage, mmr
        self.taker, self.maker, self.slippage = taker, maker, slippage
        self.stop, self.target, self.band = stop, target, band
        self.instrument = instrument
        self.u = 0.0
        self.last_x = 0.0
        self.trade: Trade | None = None
        self.stop_x = self.target_x = self.liq_x = 0.0
        self.applied = 0.0  # the target the position reflects (changes only on a new signal)
        self.blocked = 0  # trader side exited by a stop, target or liquidation: no re-entry until the side changes
        self.closed: list[tuple[Trade, int, str]] = []
        self.fees = self.funding = 0.0
        self.ambiguous = self.liquidations = self.skipped = self.orders = 0
        account.books.append(self)

    # ---- prices ---------------------------------------------------------------------------------------------
    def to_x(self, price: float) -> float:
        return 1.0 / price if self.d < 0 else price

    def fill_x(self, price: float, trader_buys: bool) -> float:
        """Value-space price of a market fill at `price`: slippage and tick rounding against the trader."""
        moved = price * (1.0 + self.slippage) if trader_buys else price * (1.0 - self.slippage)
        return self.to_x(self.instrument.round_price(moved, up=trader_buys))

    # ---- fills ----------------------------------------------------------------------------------------------
    def _fill(self, delta: float, x: float, rate: float) -> None:
        trade = self.trade
        assert trade is not None
        fee = rate * abs(delta) * x
        flow = delta * x + fee
        self.orders += 1
        self.account.cash -= flow
        self.u += delta
        self.fees += fee
        trade.fees += fee
        trade.cash_flow -= flow
        if delta * trade.side > 0:
            trade.units_in += abs(delta)
            trade.cost_in += abs(delta) * x
            trade.peak_units = max(trade.peak_units, abs(self.u))
        else:
            trade.units_out += abs(delta)
            trade.value_out += abs(delta) * x

    def _set_levels(self) -> None:
        trade = self.trade
        assert trade is not None
        s, x_bar = trade.side, trade.entry_x()
        side = int(self.d) * s  # the trader's side
        entry = 1.0 / x_bar if self.d < 0 else x_bar
        rounding = self.instrument.round_price
        # a long's stop rounds up and its target up too (later fill, no better than asked); mirrored for a short
        self.stop_x = (self.to_x(rounding(entry * (1 - side * self.stop), up=side > 0)) if self.stop > 0
                       else -s * math.inf)
        self.target_x = (self.to_x(rounding(entry * (1 + side * self.target), up=side > 0)) if self.target > 0
                         else s * math.inf)
        if self.spot and side > 0:
            self.liq_x = -math.inf  # a spot long owns its coins: nothing to liquidate
        else:
            level = 1.0 / (x_bar * (1 - s / self.leverage + s * self.mmr)) if self.d < 0 else \
                x_bar * (1 - s / self.leverage + s * self.mmr)
            self.liq_x = self.to_x(rounding(level, up=side > 0))  # reached sooner, never later

    def close(self, x: float, bar: int, reason: str, rate: float) -> None:
        """Close the whole position at value-space price `x`."""
        assert self.trade is not None
        self._fill(-self.u, x, rate)
        self.u = 0.0  # exact zero, not a rounding residue
        self.closed.append((self.trade, bar, reason))
        if reason != "signal":
            self.blocked = int(self.d) * self.trade.side
        self.trade = None

    def liquidate(self, bar: int) -> None:
        trade = self.trade
        assert trade is not None
        basis = self.u * trade.entry_x()
        margin = abs(basis) / self.leverage
        fee = self.taker * abs(self.u) * self.liq_x
        self.account.cash += basis - margin
        trade.cash_flow += basis - margin
        trade.units_out += abs(self.u)
        trade.value_out += abs(self.u) * self.liq_x
        trade.fees += fee  # paid out of the margin lost, not on top of it
        self.fees += fee
        self.u = 0.0
        self.liquidations += 1
        self.orders += 1
        self.closed.append((trade, bar, "liquidation"))
        self.blocked = int(self.d) * trade.side
        self.trade = None

    def pay_funding(self, rate: float, x_mark: float) -> None:
        """Funding on the position held now: a positive rate costs the trader's longs (rate · notional)."""
        assert self.trade is not None
        payment = self.d * rate * self.u * x_mark
        self.account.cash -= payment
        self.funding += payment
        self.trade.funding += payment
        self.trade.cash_flow -= payment

    # ---- state ----------------------------------------------------------------------------------------------
    _STATE = ("u", "last_x", "stop_x", "target_x", "liq_x", "applied", "blocked", "fees", "funding", "ambiguous",
              "liquidations", "skipped", "orders")

    def snapshot(self) -> dict[str, Any]:
        """Everything that carries from one bar to the next, JSON-ready, with the open position in the trader's
        terms for readers (units signed, side, entry and liquidation prices)."""
        state: dict[str, Any] = {name: getattr(self, name) for name in self._STATE}
        state["trade"] = None if self.trade is None else dataclasses.asdict(self.trade)
        state["closed"] = [[dataclasses.asdict(trade), bar, reason] for trade, bar, reason in self.closed]
        position = None
        if self.trade is not None:
            side = int(self.d) * self.trade.side
            position = {"units": self.d * self.u, "side": "long" if side > 0 else "short",
                        "entry_price": self.to_price(self.trade.entry_x()),
                        "liq_price": None if math.isinf(self.liq_x) else self.to_price(self.liq_x),
                        "entry_bar": self.trade.entry_bar}
        state["position"] = position
        return state

    def restore(self, state: dict[str, Any]) -> None:
        for name in self._STATE:
            setattr(self, name, state[name])
        self.trade = None if state["trade"] is None else Trade(**state["trade"])
        self.closed = [(Trade(**trade), int(bar), str(reason)) for trade, bar, reason in state["closed"]]

    def to_price(self, x: float) -> float:
        return 1.0 / x if self.d < 0 else x

    # ---- the bar --------------------------------------------------------------------------------------------
    def at_open(self, bar: int, price: float, x_open: float, x_mark: float, rate: float, desired: float,
                cap: float | None) -> None:
        """Funding due at the open, then gaps through the liquidation, stop or target levels, then the signal."""
        self.last_x = x_open
        if self.u != 0.0:
            if rate != 0.0:
                self.pay_funding(rate, x_mark)
            long = self.u > 0
            if (x_mark <= self.liq_x) if long else (x_mark >= self.liq_x):
                self.liquidate(bar)
            elif (x_open <= self.stop_x) if long else (x_open >= self.stop_x):
                self.close(self.fill_x(price, trader_buys=self.d * self.u < 0), bar, "stop_loss", self.taker)
            elif (x_open > self.target_x) if long else (x_open < self.target_x):
                self.close(self.target_x, bar, "take_profit", self.maker)
        if desired == self.applied:
            return
        self.applied = desired
        side = (desired > 0) - (desired < 0)
        if side != self.blocked:
            self.blocked = 0
        held = int(self.d) * ((self.u > 0) - (self.u < 0))
        if self.u != 0.0 and side != held:
            self.close(self.fill_x(price, trader_buys=held < 0), bar, "signal", self.taker)
            held = 0
        if side == 0 or self.blocked:
            return
        equity = self.account.equity()
        if equity <= 0:
            return
        notional = abs(desired) * self.size * equity  # settle currency
        current = abs(self.u) * x_open
        if held and abs(notional - current) <= self.band * current:
            return  # inside the rebalance band: keep the position
        buys = (notional > current) == (side > 0)  # the trader buys to grow a long or to shrink a short
        x = self.fill_x(price, trader_buys=buys)
        wanted_u = self.d * side * notional / x
        if cap is not None:  # a portfolio's gross notional stays within cap x equity: the new order is cut to fit
            room = max(cap * equity - self.account.gross(self), 0.0)
            if abs(wanted_u) * x > room:
                wanted_u = math.copysign(room / x, wanted_u)
        delta = self.instrument.round_qty(wanted_u - self.u)
        if delta == 0.0:
            self.skipped += 1  # below the minimum order, or no room left under the gross cap
            return
        if self.trade is None:
            self.trade = Trade(side=1 if delta > 0 else -1, entry_bar=bar)
        self._fill(delta, x, self.taker)
        self._set_levels()

    def in_bar(self, bar: int, x_high: float, x_low: float, m_high: float, m_low: float) -> bool:
        """The range: the liquidation level first (on the mark price), then the stop, then the target (which must
        be traded through). Returns whether a position was held during the bar."""
        if self.u == 0.0:
            return False
        if self.u > 0:
            liquidated, hit_stop, hit_target = m_low <= self.liq_x, x_low <= self.stop_x, x_high > self.target_x
        else:
            liquidated, hit_stop, hit_target = m_high >= self.liq_x, x_high >= self.stop_x, x_low < self.target_x
        if liquidated:
            self.liquidate(bar)
        elif hit_stop:
            self.ambiguous += hit_target  # both inside the bar: pessimistically, the stop came first
            stop_price = 1.0 / self.stop_x if self.d < 0 else self.stop_x
            self.close(self.fill_x(stop_price, trader_buys=self.d * self.u < 0), bar, "stop_loss", self.taker)
        elif hit_target:
            self.close(self.target_x, bar, "take_profit", self.maker)
        return True

    def at_close(self, x_close: float, x_mark: float, rate: float, borrow: float) -> None:
        """Funding due inside the bar (on the position at the close), a spot short's interest, the close's mark."""
        if self.u != 0.0:
            if rate != 0.0:
                self.pay_funding(rate, x_mark)
            if borrow and self.u < 0:
                interest = borrow * -self.u * x_close
                self.account.cash -= interest
                self.funding += interest
                assert self.trade is not None
                self.trade.funding += interest
                self.trade.cash_flow -= interest
        self.last_x = x_close

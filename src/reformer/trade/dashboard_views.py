"""What the dashboard shows, read from a paper-trading state as JSON-ready dicts (`reformer.trade.dashboard`
serves them).

    status(state)               the small answer the page polls: last step, its time and equity, the run's settings
    market(state, symbol, bars) one symbol: its last candles, the fills on them, the open position, the latest
                                prediction with its attention weights
    account(state)              the equity curve beside buy & hold, and the closed trades

Times go out as UTC strings ("YYYY-MM-DD HH:MM:SS"): plotly's date axes show them as they are, so the charts and
the page's texts name the same moments whatever the browser's time zone.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from .state import PaperState

__all__ = ["MAX_BARS", "MAX_POINTS", "account", "buy_and_hold", "market", "status"]

MAX_BARS = 5_000
"""The most candles one `market` answer carries."""
MAX_POINTS = 3_000
"""The equity curve is thinned to about this many points (the last one always kept): a month of minutes would
otherwise be 40,000 points per refresh."""


def status(state: PaperState) -> dict[str, Any]:
    """The run's settings and its last step: what the page polls to know a candle has closed."""
    settings = state.settings()
    known = settings or {}
    config = known.get("config") or {}
    last = state.latest_equity()
    category = known.get("category") or config.get("category", "linear")
    return {
        "ready": settings is not None and last is not None,
        "symbols": list(known.get("symbols") or []),
        "interval": known.get("interval"),
        "category": category,
        "money": "coin" if category == "inverse" else "quote",
        "initial_capital": _number(config.get("initial_capital")),
        "step": None if last is None else int(last["step"]),
        "time": None if last is None else _iso(last["time"]),
        "equity": None if last is None else _number(last["equity"]),
        "units": {} if last is None else {name: _number(units) for name, units in last["units"].items()},
    }


def market(state: PaperState, symbol: str, bars: int = 500) -> dict[str, Any]:
    """One symbol's last `bars` candles, the fills inside them, its open position and its latest prediction."""
    candles = state.candles(symbol).tail(max(1, min(bars, MAX_BARS)))
    first = int(candles["timestamp"].iloc[0]) if len(candles) else 0
    trades = state.trades()
    trades = trades[trades["symbol"] == symbol] if len(trades) else trades
    entries = trades[trades["entry_time"] >= first] if len(trades) else trades
    exits = trades[trades["exit_time"] >= first] if len(trades) else trades
    return {
        "symbol": symbol,
        "candles": {"time": [_iso(t) for t in candles["timestamp"]],
                    **{column: [_number(v) for v in candles[column]] for column in ("open", "high", "low", "close")}},
        "entries": [{"time": _iso(row.entry_time), "price": _number(row.entry_price), "side": row.side,
                     "units": _number(row.units)} for row in entries.itertuples(index=False)],
        "exits": [{"time": _iso(row.exit_time), "price": _number(row.exit_price), "side": row.side,
                   "reason": row.exit_reason, "pnl": _number(row.pnl)} for row in exits.itertuples(index=False)],
        "position": _position(state, symbol),
        "prediction": _prediction(state, symbol),
    }


def account(state: PaperState) -> dict[str, Any]:
    """The equity per step beside buy & hold, and the closed trades (newest first)."""
    equity = state.equity()
    settings = state.settings() or {}
    hold = buy_and_hold(state, equity, settings)
    keep = _thinned(len(equity))
    trades = state.trades().iloc[::-1]
    return {
        "time": [_iso(t) for t in equity["time"].iloc[keep]],
        "equity": [_number(v) for v in equity["equity"].iloc[keep]],
        "buy_and_hold": [_number(v) for v in hold.iloc[keep]],
        "trades": [{**{key: _number(value) if isinstance(value, float) else value for key, value in row.items()},
                    "entry_time": _iso(row["entry_time"]), "exit_time": _iso(row["exit_time"])}
                   for row in trades.to_dict("records")],
    }


def buy_and_hold(state: PaperState, equity: pd.DataFrame, settings: dict[str, Any]) -> pd.Series:
    """Buy & hold at each step's time, no fees, as `reformer trade report` counts it (`buy_and_hold_equity`): the
    initial capital split evenly over the symbols, each share bought at its symbol's second traded candle's open
    (the first fill the run could have had) and marked at its latest close; the warm-up candles before the first
    step are not part of it. For an inverse contract, the coin the equity is held in, which never changes.

    Returns:
        One value per row of `equity`, aligned to it: the initial capital at the first step.
    """
    config = settings.get("config") or {}
    capital = config.get("initial_capital")
    if capital is None:
        capital = float(equity["equity"].iloc[0]) if len(equity) else 0.0
    symbols = list(settings.get("symbols") or [])
    category = settings.get("category") or config.get("category", "linear")
    if category == "inverse" or not symbols or not len(equity):
        return pd.Series(float(capital), index=equity.index, dtype="float64")
    from ..strategy.plots import buy_and_hold_equity  # matplotlib: loaded when a page first asks for the account

    times = equity[["time"]].astype("int64").reset_index()
    total = pd.Series(0.0, index=equity.index)
    for symbol in symbols:
        candles = state.candles(symbol)
        traded = candles[candles["step"] >= 0][["timestamp", "open", "close"]].astype({"timestamp": "int64"})
        if len(traded) < 2:
            total += capital / len(symbols)  # no fill possible yet: the share is still cash
            continue
        ratio = buy_and_hold_equity(traded, 1.0)  # the report's own curve, per unit of capital
        closes = pd.DataFrame({"timestamp": traded["timestamp"].to_numpy(), "ratio": ratio.to_numpy()})
        marked = pd.merge_asof(times.sort_values("time"), closes, left_on="time", right_on="timestamp")
        total += capital / len(symbols) * marked.set_index("index")["ratio"].fillna(1.0).reindex(equity.index)
    return total


def _position(state: PaperState, symbol: str) -> dict[str, Any]:
    """The open position: side, units, average entry and liquidation prices from the engine's snapshot (units from
    the last step where it says nothing). Its time is the first of the steps, up to the last, that held this
    side; without a snapshot entry price, the entry is that step's open (rebalances since then are not averaged
    in: `estimated` says so)."""
    found = _snapshot_position(state.snapshot(), symbol, list((state.settings() or {}).get("symbols") or []))
    last = state.latest_equity()
    units = float(last["units"].get(symbol, 0.0)) if last is not None else 0.0
    if found.get("units") is not None:
        units = float(found["units"])
        units = -units if found.get("side") == "short" and units > 0 else units  # signed, whichever way given
    if units == 0.0 or not math.isfinite(units):
        return {"side": "flat", "units": 0.0, "entry_time": None, "entry_price": None, "liq_price": None,
                "estimated": False}
    since = _side_began(state.equity(), symbol, units)
    entry_price, estimated = found.get("entry_price"), False
    if entry_price is None and since is not None:
        candles = state.candles(symbol)
        began = candles[candles["timestamp"] <= since].tail(1)
        if len(began):
            entry_price, estimated = float(began["open"].iloc[0]), True
    return {"side": "long" if units > 0 else "short", "units": abs(units),
            "entry_time": _iso(found.get("entry_time", since)), "entry_price": _number(entry_price),
            "liq_price": _number(found.get("liq_price")), "estimated": estimated}


def _snapshot_position(snapshot: dict[str, Any] | None, symbol: str, symbols: list[str]) -> dict[str, Any]:
    """The symbol's open position in the engine's snapshot (`Engine.snapshot`: "books" in the order of the run's
    symbols, each with a "position" that is None when flat; a mapping by symbol is read too), or {} when the
    snapshot does not say."""
    books = (snapshot or {}).get("books")
    book: Any = None
    if isinstance(books, list) and len(books) == len(symbols) and symbol in symbols:
        book = books[symbols.index(symbol)]
    elif isinstance(books, dict):
        book = books.get(symbol)
    if not isinstance(book, dict) or "position" not in book:
        return {}
    position = book["position"]
    return {"units": 0.0} if position is None else dict(position) if isinstance(position, dict) else {}


def _side_began(equity: pd.DataFrame, symbol: str, units: float) -> int | None:
    """Time of the first step of the run of steps, ending at the last, that held `symbol` on the side of `units`."""
    held = equity["units"].map(lambda row: float(row.get(symbol, 0.0))).to_numpy()
    same = (held > 0) if units > 0 else (held < 0)
    if not len(same) or not same[-1]:
        return None
    other = (~same).nonzero()[0]
    start = int(other[-1]) + 1 if len(other) else 0
    return int(equity["time"].iloc[start])


def _prediction(state: PaperState, symbol: str) -> dict[str, Any] | None:
    latest = state.latest_prediction(symbol)
    if latest is None:
        return None
    attention = latest.get("attention")
    return {"time": _iso(latest["start_time"]), "prediction": _number(latest["prediction"]),
            "confidence": _number(latest["confidence"]), "target": _number(latest["target"]),
            "attention": None if attention is None else [_number(value) for value in attention]}


def _thinned(n: int) -> list[int]:
    """Row positions of an evenly thinned curve of `n` points, the last one always among them."""
    stride = max(1, math.ceil(n / MAX_POINTS))
    keep = list(range(0, n, stride))
    if n and keep[-1] != n - 1:
        keep.append(n - 1)
    return keep


def _iso(ms: Any) -> str | None:
    """Epoch milliseconds (or an ISO-8601 string) as a UTC date-time string; None (or NaN) stays None."""
    if ms is None or (isinstance(ms, float) and math.isnan(ms)):
        return None
    moment = pd.to_datetime(ms, utc=True) if isinstance(ms, str) else pd.Timestamp(int(ms), unit="ms", tz="UTC")
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _number(value: Any) -> float | None:
    """A float JSON can carry: NaN and infinities (JSON has neither) become None."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None

"""Paper trading: a checkpoint's forecasts traded on the exchange's closed candles by the backtest's own engine.

Each closed candle t is processed once, in time order, in one transaction of the state (`reformer.trade.state`):

    1. the engine steps bar t (`strategy.engine.Engine.step`): funding at its open, the target decided at t-1's
       close filled at t's open, liquidation, stop and take-profit inside t, funding inside t, all on the mark
       candle when the exchange has one: exactly what `reformer backtest` does to bar t;
    2. the model forecasts from the window ending at t, and the backtest's signal rules turn the forecast into the
       target filled at t+1's open.

Candles come from the REST API, which answers in order and fills holes; the WebSocket only says when to ask. A
time is processed once every symbol's candle at it has closed. So a restart, a dropped connection or a candle
sent twice change nothing: the trader asks for every candle after the last one it processed. The trader places
no order anywhere and reads no API key.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..api import BybitClient, Kline
from ..api.intervals import interval_ms, parse_interval
from ..errors import UserInputError
from ..pipelines.live import CandlePredictor
from ..strategy import BacktestConfig, Instrument, realized_volatility, signals_from_predictions
from ..strategy.engine import Engine, trade_table
from .state import PaperState

__all__ = ["PaperSettings", "PaperTrader", "run_paper"]

_Extras = tuple[dict[int, tuple[float, float, float, float]], list[tuple[int, float]]]
"""A symbol's mark candles by open time, and its funding settlements (time, rate)."""
REST_RATE = 100.0
"""Requests a second the trader's client may start (Bybit's public limit is 600 per 5 s per address)."""
_CRASH_AT = "REFORMER_TRADE_CRASH_AT"
"""Test hook: `step:part` kills the process with SIGKILL at that point of that step's transaction."""


@dataclass(frozen=True)
class PaperSettings:
    """What a paper-trading run trades; fixed for the life of its state."""

    checkpoint: str
    symbols: tuple[str, ...]
    interval: str
    category: str = "linear"
    config: BacktestConfig = dataclasses.field(default_factory=BacktestConfig)
    maintenance_margin_rates: tuple[float | None, ...] = ()
    """Per symbol, its first risk-limit tier's (read from the exchange when the state is created)."""

    def to_dict(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint, "symbols": list(self.symbols), "interval": self.interval,
                "category": self.category, "config": dataclasses.asdict(self.config),
                "maintenance_margin_rates": list(self.maintenance_margin_rates)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PaperSettings:
        return cls(str(data["checkpoint"]), tuple(data["symbols"]), str(data["interval"]), str(data["category"]),
                   BacktestConfig(**data["config"]), tuple(data.get("maintenance_margin_rates") or ()))

    def same_run(self, other: PaperSettings) -> str | None:
        """The first setting that differs from `other`'s (mmr excepted: the exchange's), as "interval 60, not
        240", or None."""
        mine, theirs = self.to_dict(), other.to_dict()
        if mine["symbols"] != theirs["symbols"]:
            noun = "symbol" if len(self.symbols) == 1 else "symbols"
            return f"{noun} {', '.join(self.symbols)}, not {', '.join(other.symbols)}"
        for key in ("checkpoint", "interval", "category"):
            if mine[key] != theirs[key]:
                return f"{key} {mine[key]}, not {theirs[key]}"
        for field, value in mine["config"].items():
            if theirs["config"].get(field) != value:
                return f"--{field.replace('_', '-')} {value}, not {theirs['config'].get(field)}"
        return None


class PaperTrader:
    """One paper-trading run on its state folder; `catch_up` processes every closed candle not yet processed."""

    def __init__(self, state_dir: str | os.PathLike[str], settings: PaperSettings, *,
                 say: Callable[[str], None] = print) -> None:
        self.say = say
        # one per symbol (a model of several symbols scales each its own way); a wrong checkpoint fails before the
        # state opens
        self.predictors = {s: CandlePredictor(settings.checkpoint, s) for s in settings.symbols}
        self.predictor = next(iter(self.predictors.values()))
        self.interval = parse_interval(settings.interval)
        self.predictor.check_stream(self.interval)
        self.step_ms = interval_ms(self.interval)
        self.state = PaperState(state_dir, writable=True)
        stored = self.state.settings()
        if stored is not None:
            different = PaperSettings.from_dict(stored).same_run(settings)
            if different is not None:
                self.state.close()
                raise UserInputError(f"{Path(state_dir)} holds a run with {different}: resume it with its own "
                                     "settings, or give a new --state folder")
            settings = PaperSettings.from_dict(stored)
        self.settings = settings
        self.symbols = list(settings.symbols)
        self.perpetual = settings.category != "spot"
        self.engine: Engine | None = None
        self.targets = {symbol: 0.0 for symbol in self.symbols}
        self.history: dict[str, pd.DataFrame] = {}
        self.processed = 0
        """Candle times this trader has committed: what a run stopped by Ctrl-C reports."""

    def close(self) -> None:
        self.state.close()

    # ---- start ----------------------------------------------------------------------------------------------
    async def start(self, client: BybitClient) -> None:
        """A new state: the exchange's risk tiers and the model's warm-up candles (not traded). An existing one:
        the engine and the targets as they were after its last candle."""
        if self.state.settings() is None:
            rates: list[float | None] = []
            for symbol in self.symbols:
                tiers = await client.get_risk_limits(symbol, self.settings.category) if self.perpetual else []
                rates.append(tiers[0].maintenance_margin_rate if tiers else None)
            self.settings = dataclasses.replace(self.settings, maintenance_margin_rates=tuple(rates))
            warmup = {s: await client.get_klines(s, self.interval, limit=self.predictor.history,
                                                 category=self.settings.category) for s in self.symbols}
            with self.state.transaction() as db:
                for symbol, candles in warmup.items():
                    for k in candles:
                        PaperState.write_candle(db, symbol, -1, [*k, None, None, None, None, 0.0, 0.0])
                db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('settings', ?)",
                           (_settings_json(self.settings),))
        rules = [Instrument(symbol, maintenance_margin_rate=rate) for symbol, rate in
                 zip(self.symbols, self.settings.maintenance_margin_rates, strict=True)]
        self.engine = Engine(self.settings.config, rules, self.step_ms / (365 * 86_400_000))
        snapshot = self.state.snapshot()
        if snapshot is not None:
            self.engine.restore(snapshot)
        for symbol in self.symbols:
            last = self.state.last_candle(symbol)
            newest = await client.get_klines(symbol, self.interval, limit=1, category=self.settings.category)
            if last is not None and (not newest or newest[-1].start_time < last):
                shown = _iso(newest[-1].start_time) if newest else "none"
                raise UserInputError(f"{symbol}: the exchange's newest closed candle ({shown}) is older than the last "
                                     f"one this state processed ({_iso(last)}): a stale feed or another exchange; "
                                     "point --base-url at the market this state traded")
            self.history[symbol] = self.state.candles(symbol)
            predictions = self.state.predictions(symbol)
            if len(predictions):
                self.targets[symbol] = float(predictions["target"].iloc[-1])

    # ---- candles ------------------------------------------------------------------------------------------------
    async def catch_up(self, client: BybitClient, max_steps: int | None = None) -> int:
        """Process, in time order, every time at which all symbols' candles have closed since the last one
        processed; returns how many. Raises UserInputError for a hole the exchange cannot fill."""
        assert self.engine is not None
        fresh = {}
        for symbol in self.symbols:
            last = self.state.last_candle(symbol)
            start = None if last is None else last + self.step_ms
            fresh[symbol] = await client.get_klines(symbol, self.interval, start=start,
                                                    category=self.settings.category) if start is not None else []
            self._check_contiguous(symbol, last, fresh[symbol])
        ready = min((candles[-1].start_time for candles in fresh.values() if candles), default=None)
        if ready is None or any(not candles for candles in fresh.values()):
            return 0
        times = sorted({k.start_time for candles in fresh.values() for k in candles if k.start_time <= ready})
        if max_steps is not None:
            times = times[:max_steps]
        if not times:
            return 0
        extras = {s: await self._perpetual_data(client, s, times[0], times[-1]) for s in self.symbols}
        by_time = {s: {k.start_time: k for k in fresh[s]} for s in self.symbols}
        for time_ms in times:
            self._process(time_ms, {s: by_time[s][time_ms] for s in self.symbols if time_ms in by_time[s]}, extras)
        return len(times)

    def takes(self, candle: Kline) -> bool:
        """Whether a closed candle from the stream is exactly the next one due (one symbol): then it is processed
        as it came, without asking REST for it again."""
        return len(self.symbols) == 1 and candle.start_time == (self.state.last_candle(self.symbols[0]) or 0) + \
            self.step_ms

    async def process_next(self, client: BybitClient, candle: Kline) -> int:
        """Process the stream's candle (`takes` said it is the next one due), with its mark candle and funding."""
        symbol = self.symbols[0]
        extras = {symbol: await self._perpetual_data(client, symbol, candle.start_time, candle.start_time)}
        self._process(candle.start_time, {symbol: candle}, extras)
        return 1

    def _check_contiguous(self, symbol: str, last: int | None, candles: Sequence[Kline]) -> None:
        expected = None if last is None else last + self.step_ms
        for k in candles:
            if expected is not None and k.start_time < expected:
                raise UserInputError(f"{symbol}: the exchange sent the candle of {_iso(k.start_time)}, older than the "
                                     f"next one due ({_iso(expected)}): a stale feed; the state is unchanged")
            if expected is not None and k.start_time != expected:
                raise UserInputError(f"{symbol}: the exchange has no {self.interval} candles from "
                                     f"{_iso(expected)} to {_iso(k.start_time - self.step_ms)}: the model's windows "
                                     "cannot cross that hole; start a new --state after it")
            expected = k.start_time + self.step_ms

    async def _perpetual_data(self, client: BybitClient, symbol: str, first: int, last: int
                              ) -> _Extras:
        if not self.perpetual:
            return {}, []
        category = self.settings.category
        marks, rates = await asyncio.gather(  # concurrent: the client still spaces their starts
            client.get_mark_klines(symbol, self.interval, start=first, end=last, category=category),
            client.get_funding_history(symbol, start=first, end=last + self.step_ms - 1, category=category))
        return ({m.start_time: (m.open, m.high, m.low, m.close) for m in marks},
                [(r.time_ms, r.rate) for r in rates])

    def _process(self, time_ms: int, candles: dict[str, Kline],
                 extras: dict[str, _Extras]) -> None:
        """One time's transaction: the engine's step, then the forecasts and the next targets."""
        engine = self.engine
        assert engine is not None
        step = self.state.last_step() + 1
        crash = os.environ.get(_CRASH_AT, "")
        with self.state.transaction() as db:
            entries = []
            for k, symbol in enumerate(self.symbols):
                candle = candles.get(symbol)
                if candle is None:
                    continue
                marks, rates = extras[symbol]
                mark = marks.get(time_ms, (candle.open, candle.high, candle.low, candle.close))
                at_open = sum(rate for t, rate in rates if t == time_ms)
                inside = sum(rate for t, rate in rates if time_ms < t < time_ms + self.step_ms)
                values = engine.values(candle.open, candle.high, candle.low, candle.close, mark, at_open, inside,
                                       self.targets[symbol])
                entries.append((k, time_ms, values))
                PaperState.write_candle(db, symbol, step, [*candle, *mark, at_open, inside])
            if crash == f"{step}:candles":
                os.kill(os.getpid(), signal.SIGKILL)
            exposed = engine.step(entries)
            for (k, _, _), _held in zip(entries, exposed, strict=True):
                book = engine.books[k]
                if book.closed:
                    table = trade_table(book, self.symbols[k], candles[self.symbols[k]].close, _times)
                    PaperState.write_trades(db, table[~table["open"]])
                    book.closed.clear()
            held = {self.symbols[k]: flag for (k, _, _), flag in zip(entries, exposed, strict=True)}
            units = {symbol: engine.books[k].d * engine.books[k].u for k, symbol in enumerate(self.symbols)}
            PaperState.write_step(db, step, time_ms, engine.account.equity(), units, held, engine.snapshot())
            if crash == f"{step}:engine":
                os.kill(os.getpid(), signal.SIGKILL)
            for symbol, candle in candles.items():
                self._forecast(db, symbol, candle)
        self.processed += 1
        self.say(f"{_iso(time_ms)} processed: equity {engine.account.equity():,.2f}")

    def _forecast(self, db: Any, symbol: str, candle: Kline) -> None:
        history = self.history[symbol]
        row = {"timestamp": candle.start_time, "open": candle.open, "high": candle.high, "low": candle.low,
               "close": candle.close, "volume": candle.volume, "turnover": candle.turnover}
        history = pd.concat([history, pd.DataFrame([row])], ignore_index=True).iloc[-self.predictor.history - 64:]
        self.history[symbol] = history
        forecast = self.predictors[symbol].forecast(history[list(row)])
        config = self.settings.config
        score = pd.Series([forecast.latest.predicted_return], index=[0])
        volatility = None
        if config.vol_target is not None:
            volatility = pd.Series([realized_volatility(history["close"], config.vol_window).iloc[-1]], index=[0])
        target = float(signals_from_predictions(score, config, volatility).iloc[0])
        self.targets[symbol] = target
        PaperState.write_prediction(db, symbol, candle.start_time, forecast.latest.predicted_return,
                                    forecast.latest.confidence, target, forecast.attention)


async def run_paper(trader: PaperTrader, base_url: str | None = None, *, ws_url: str | None = None,
                    max_steps: int | None = None, follow: bool = True,
                    on_step: Callable[[float], None] | None = None) -> int:
    """Start the trader, catch up with every closed candle, then (`follow`) process each new one as the stream
    closes it, until `max_steps` times were processed; `on_step` gets the seconds from a close arriving on the
    stream to its candle committed in the state. Returns how many were processed."""
    from ..api import BybitStream

    # Bybit allows a few hundred public requests a second per address; the client's default of 10 a second
    # would put 100 ms between the requests one candle needs
    async with BybitClient(base_url, ws_url=ws_url, rate_limit=REST_RATE) as client:
        await trader.start(client)
        done = await trader.catch_up(client, max_steps)
        if not follow or (max_steps is not None and done >= max_steps):
            return done
        trader.say(f"following {', '.join(trader.symbols)} {trader.interval} closed candles")
        async with BybitStream(trader.symbols[0], trader.interval, trader.settings.category, client=client) as stream:
            async for candle in stream:
                began = time.perf_counter()
                if trader.takes(candle):
                    done += await trader.process_next(client, candle)
                else:
                    done += await trader.catch_up(client, None if max_steps is None else max_steps - done)
                if on_step is not None:
                    on_step(time.perf_counter() - began)
                if max_steps is not None and done >= max_steps:
                    break
    return done


def _times(bars: np.ndarray) -> pd.DatetimeIndex:
    """The engine's bar numbers here are candle open times in epoch ms."""
    return pd.DatetimeIndex(pd.to_datetime(np.asarray(bars, dtype="int64"), unit="ms", utc=True))


def _iso(time_ms: int) -> str:
    return f"{pd.Timestamp(time_ms, unit='ms', tz='UTC'):%Y-%m-%d %H:%M} UTC"


def _settings_json(settings: PaperSettings) -> str:
    import json

    return json.dumps({**settings.to_dict(), "version": 1}, sort_keys=True)

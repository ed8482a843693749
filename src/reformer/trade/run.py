"""What `reformer trade --paper` runs: the settings checked, the trader started (with the dashboard beside it when
asked), Ctrl-C ending it between two candles."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserInputError
from ..strategy import BacktestConfig
from .paper import PaperSettings, PaperTrader, run_paper

__all__ = ["PaperRun", "paper_run"]


@dataclass(frozen=True)
class PaperRun:
    """`reformer trade`'s settings (see `reformer trade --help`)."""

    paper: bool
    checkpoint: Path | None
    symbols: str
    """One symbol, or several comma-separated (one equity)."""
    interval: str
    category: str
    state: Path | None
    base_url: str | None
    ws_url: str | None
    max_candles: int | None
    catch_up: bool
    dashboard: str | None
    """HOST:PORT to serve the dashboard at, or None."""
    config: BacktestConfig


def paper_run(run: PaperRun, *, say: Callable[[str], None] = print) -> int:
    """Trade until `max_candles` candle times were processed (or, with `catch_up`, until the newest closed one),
    or until Ctrl-C; returns how many were processed.

    Raises:
        UserInputError: no --paper, no --checkpoint or --state, a bad --dashboard address, or what the trader
            refuses (a checkpoint of another interval, a stale feed, a hole, another run's state).
    """
    if not run.paper:
        raise UserInputError("reformer trade only trades on paper: pass --paper (no order reaches any exchange)")
    if run.checkpoint is None or run.state is None:
        raise UserInputError("reformer trade --paper needs --checkpoint RUN and --state DIR")
    symbols = tuple(s.strip().upper() for s in run.symbols.split(",") if s.strip())
    settings = PaperSettings(str(run.checkpoint), symbols, run.interval, run.category, run.config)
    trader = PaperTrader(run.state, settings, say=say)
    server = None
    try:
        if run.dashboard is not None:
            from .dashboard import start_in_thread

            host, _, port = run.dashboard.rpartition(":")
            if not host or not port.isdigit():
                raise UserInputError(f"--dashboard {run.dashboard!r}: give HOST:PORT, e.g. 127.0.0.1:8765")
            server = start_in_thread(run.state, host, int(port))
            say(f"dashboard: {server.url}")
        try:
            return asyncio.run(run_paper(trader, run.base_url, ws_url=run.ws_url, max_steps=run.max_candles,
                                         follow=not run.catch_up))
        except KeyboardInterrupt:
            say(f"stopped; every processed candle is in {run.state} (run the same command to resume)")
            return 0
    finally:
        trader.close()
        if server is not None:
            server.stop()

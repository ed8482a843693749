"""What `reformer trade --paper` runs: the settings checked, the trader started (with the dashboard beside it when
asked), Ctrl-C ending it between two candles."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserInputError
from ..strategy import BacktestConfig
from .paper import PaperSettings, PaperTrader, run_paper
from .state import check_state_dir

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
        UserInputError: no --paper, no --checkpoint or --state, --max-candles below 1, a --state that is a file,
            a bad or taken --dashboard address, or what the trader refuses (a checkpoint of another interval, a
            stale feed, a hole, another run's state).
    """
    if not run.paper:
        raise UserInputError("reformer trade only trades on paper: pass --paper (no order reaches any exchange)")
    if run.checkpoint is None or run.state is None:
        raise UserInputError("reformer trade --paper needs --checkpoint RUN and --state DIR")
    # every refusal comes before the state folder is created: a folder made by a refused run would fix its
    # settings on the next start
    if run.max_candles is not None and run.max_candles < 1:
        raise UserInputError(f"--max-candles {run.max_candles}: use 1 or more, or leave it out to trade until Ctrl-C")
    check_state_dir(run.state)
    sock = None if run.dashboard is None else _dashboard_socket(run.dashboard)
    symbols = tuple(s.strip().upper() for s in run.symbols.split(",") if s.strip())
    settings = PaperSettings(str(run.checkpoint), symbols, run.interval, run.category, run.config)
    server = None
    try:
        trader = PaperTrader(run.state, settings, say=say)
    except BaseException:
        if sock is not None:
            sock.close()
        raise
    try:
        if sock is not None:
            from .dashboard import start_in_thread

            server = start_in_thread(run.state, sock=sock)
            say(f"dashboard: {server.url}")
        try:
            return asyncio.run(run_paper(trader, run.base_url, ws_url=run.ws_url, max_steps=run.max_candles,
                                         follow=not run.catch_up))
        except KeyboardInterrupt:
            say(f"stopped; every processed candle is in {run.state} (run the same command to resume)")
            return trader.processed
    finally:
        trader.close()
        if server is not None:
            server.stop()


def _dashboard_socket(address: str) -> socket.socket:
    """The dashboard's listening socket, bound before the trader starts so that a taken port leaves no state."""
    from .dashboard import bind

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UserInputError(f"--dashboard {address!r}: give HOST:PORT, e.g. 127.0.0.1:8765")
    return bind(host.strip("[]"), int(port), retry="choose another --dashboard HOST:PORT")

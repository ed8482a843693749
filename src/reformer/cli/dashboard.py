"""`reformer dashboard`: a paper-trading run's dashboard (`reformer.trade.dashboard`), served until Ctrl-C."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register"]


def dashboard(
    state: Annotated[Path, typer.Option("--state", help="The --state folder of a `reformer trade --paper` run.")],
    host: Annotated[str, typer.Option(help="Address to listen on. The page has no login: anything other than "
                                           "127.0.0.1 shows the account to that network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on (0: any free one).")] = 8765,
) -> None:
    """Serve a read-only web page of a paper-trading run: price and fills, equity against buy & hold, the open
    position and its liquidation price, the latest prediction and its attention; it updates as candles close."""
    from ..trade.dashboard import serve

    serve(state, host=host, port=port, say=typer.echo)


def register(app: typer.Typer) -> None:
    app.command("dashboard")(dashboard)

"""The paper-trading dashboard: one read-only web page over a state folder, served by uvicorn.

    GET /                       the page (static/dashboard.html): it polls /api/status every second and, when a
                                step has been added, fetches the views below and redraws its charts with plotly
    GET /static/plotly.min.js   plotly's own bundle, from the installed `plotly` package (the page loads nothing
                                from the internet)
    GET /static/dashboard.js    the page's script, and dashboard.css its style
    GET /api/status             the run's settings and its last step (`reformer.trade.dashboard_views.status`)
    GET /api/market/{symbol}    ?bars=N: candles, fills, open position, latest prediction and attention
    GET /api/account            the equity curve beside buy & hold, the closed trades

Every request opens the state read-only for its own duration (SQLite's WAL lets it read beside the trader, and a
connection may not cross the server's worker threads); any method but GET is answered 405. It binds to
127.0.0.1 by default: the page has no login, so another address exposes the account to that network.
"""

from __future__ import annotations

import functools
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse

from ..errors import ReformerError, UserInputError, first_line
from . import dashboard_views as views
from .state import PaperState

__all__ = ["DashboardThread", "bind", "create_app", "serve", "start_in_thread"]

_STATIC = Path(__file__).resolve().parent / "static"
_ASSETS = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}


def create_app(state_dir: str | os.PathLike[str]) -> FastAPI:
    """The dashboard's ASGI app over the state in `state_dir`.

    Args:
        state_dir: a `--state` folder of `reformer trade --paper` (holding `state.sqlite`).

    Raises:
        UserInputError: the folder holds no state, or the page's files are missing from the installation.
    """
    directory = Path(state_dir)
    PaperState(directory).close()  # a missing state is named here, not on the page's first request
    missing = [name for name in ("dashboard.html", *_ASSETS) if not (_STATIC / name).is_file()]
    if missing:
        raise UserInputError(f"the dashboard's files {missing} are missing from {_STATIC}: reinstall reformer-crypto")
    app = FastAPI(title="reformer paper trading", docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def read_only(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if request.method != "GET":
            return JSONResponse({"detail": "the dashboard is read-only: GET only"}, status_code=405,
                                headers={"Allow": "GET"})
        return await call_next(request)

    def read(view: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
        try:
            with PaperState(directory) as state:
                return view(state, *args)
        except (ReformerError, sqlite3.Error, OSError) as exc:
            # the trader may be starting, or the folder gone: the page says so and keeps polling
            raise HTTPException(status_code=503, detail=first_line(exc)) from exc

    @app.get("/", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        return HTMLResponse((_STATIC / "dashboard.html").read_text(encoding="utf-8"),
                            headers={"Cache-Control": "no-cache"})

    @app.get("/static/plotly.min.js")
    def plotly_js() -> Response:
        return Response(_plotly_js(), media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})

    @app.get("/static/{name}")
    def asset(name: str) -> Response:
        if name not in _ASSETS:
            raise HTTPException(status_code=404, detail=f"no static file {name!r}")
        return Response((_STATIC / name).read_bytes(), media_type=_ASSETS[name], headers={"Cache-Control": "no-cache"})

    @app.get("/api/status")
    def status() -> dict[str, Any]:
        return read(views.status)

    @app.get("/api/market/{symbol}")
    def market(symbol: str, bars: int = Query(500, ge=1, le=views.MAX_BARS)) -> dict[str, Any]:
        known = read(views.status)["symbols"]
        if symbol not in known:
            raise HTTPException(status_code=404, detail=f"{symbol!r} is not traded in this state: one of {known}")
        return read(views.market, symbol, bars)

    @app.get("/api/account")
    def account() -> dict[str, Any]:
        return read(views.account)

    return app


@functools.cache
def _plotly_js() -> bytes:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs().encode("utf-8")


def bind(host: str, port: int, *, retry: str = "choose another port (--port) or address (--host)") -> socket.socket:
    """A listening socket, bound before the server starts so that a taken port is one clear error (uvicorn itself
    logs it and exits the process); `retry` is the error's way out, in the options of the command that asked."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        raise UserInputError(f"cannot listen on {host!r} ({exc.strerror}): give an address such as 127.0.0.1") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except (OSError, OverflowError) as exc:
        sock.close()
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UserInputError(f"cannot listen on {host}:{port} ({reason}): {retry}") from exc
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _server(state_dir: str | os.PathLike[str]) -> uvicorn.Server:
    # log_config=None: the trader's process keeps its own logging set-up; the access log would print every poll
    config = uvicorn.Config(create_app(state_dir), log_config=None, log_level="warning", access_log=False,
                            lifespan="off")
    return uvicorn.Server(config)


def serve(state_dir: str | os.PathLike[str], host: str = "127.0.0.1", port: int = 8765, *,
          say: Callable[[str], None] | None = None) -> None:
    """Serve the dashboard until interrupted (Ctrl-C).

    Args:
        state_dir: the `--state` folder of a paper-trading run.
        host, port: where to listen (port 0: any free port).
        say: told the page's address once it listens (default: nothing).

    Raises:
        UserInputError: no state in `state_dir`, or the address cannot be listened on.
    """
    server = _server(state_dir)
    sock = bind(host, port)
    if say is not None:
        say(f"dashboard of {state_dir} on {_url(sock)} (Ctrl-C stops it)")
    server.run(sockets=[sock])


@dataclass
class DashboardThread:
    """A dashboard served from a background thread (`start_in_thread`); `stop()` ends it."""

    url: str
    """The page's address, e.g. http://127.0.0.1:8765."""
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the server to finish its requests and exit, and wait for its thread."""
        self.server.should_exit = True
        self.thread.join(timeout)

    def __enter__(self) -> DashboardThread:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def start_in_thread(state_dir: str | os.PathLike[str], host: str = "127.0.0.1", port: int = 8765, *,
                    timeout: float = 10.0, sock: socket.socket | None = None) -> DashboardThread:
    """Serve the dashboard from a daemon thread (beside the trader) and return once it accepts connections.

    Args:
        state_dir: the `--state` folder of a paper-trading run.
        host, port: where to listen (port 0: any free port; the handle's `url` says which).
        timeout: seconds to wait for the server to start.
        sock: a socket from `bind` to serve on instead of `host` and `port` (closed if the server fails).

    Raises:
        UserInputError: no state in `state_dir`, or the address cannot be listened on.
        RuntimeError: the server did not start within `timeout`.
    """
    try:
        server = _server(state_dir)
        sock = bind(host, port) if sock is None else sock
    except BaseException:
        if sock is not None:
            sock.close()
        raise
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="reformer-dashboard", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:  # set by uvicorn once its loop serves the socket
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError(f"the dashboard's server did not start within {timeout} s")
        time.sleep(0.01)
    return DashboardThread(url=_url(sock), server=server, thread=thread)

"""A local fake of Bybit's public V5 market data: real HTTP and WebSocket servers on 127.0.0.1.

Built for tests and offline demos, faithful to this subset of Bybit's V5 API:

* REST (HTTP/1.1, keep-alive) on `base_url`: /v5/market/time, /kline, /mark-price-kline, /index-price-kline,
  /premium-index-price-kline, /instruments-info, /tickers, /funding/history, /open-interest, /risk-limit;
  anything else is HTTP 404. The perpetuals' mark prices, funding settlements and risk-limit tables are derived
  from the candles (`_fake_derivatives.py`), so any series served, a CSV's or a synthetic one, has them.
* WebSocket on a second port, `ws_url` = ws://127.0.0.1:PORT/v5/public (append /linear, /spot, /inverse):
  `kline.{interval}.{symbol}` topics, subscribe acks, pong, unconfirmed updates and confirmed closes.
* A clock that never moves by itself: "now" starts 1 s after the newest candle's open (that candle is still
  open) and moves only through `advance_to` / `set_now`, which push WebSocket updates.
* Fault injection (`FaultPlan`, `inject`), a request log (`requests`, `count`), WebSocket drops and refusals.

Usage, in asyncio::

    async with FakeExchange({("linear", "BTCUSDT", "60"): klines}) as fake:
        async with BybitClient(fake.base_url, ws_url=fake.ws_url) as client: ...

from sync code or for another process: `fake = FakeExchange(...).start_in_thread()` ... `fake.stop()`
(or `with FakeExchange(...) as fake:`); until Ctrl-C: `run_fake_exchange(klines)` (`reformer fake-exchange --csv FILE`
reads the file with `reformer.data.read_klines` first: this layer never reads CSV files itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Mapping, Sequence
from types import TracebackType

from ..errors import DataFormatError, UserInputError
from ._fake_http import RETRYABLE_FAULTS, Fault, FaultPlan, HttpServer, RequestRecord
from ._fake_market import Market, SeriesKey
from ._fake_ws import WsHub
from .types import FundingRate, Kline

__all__ = ["RETRYABLE_FAULTS", "FakeExchange", "Fault", "FaultPlan", "RequestRecord", "run_fake_exchange"]

KLINE_PATH = "/v5/market/kline"


class FakeExchange:
    """Local Bybit V5 market-data server (REST + public WebSocket) over fixed candle series.

    Args:
        series: candles per (category, symbol, interval), e.g. `{("linear", "BTCUSDT", "60"): klines}`.
        now_ms: initial clock, epoch ms; default 1 s after the newest candle's open.
        faults: when and how requests fail (default: never).
        overflow: for a request whose [start, end] holds more than `limit` candles: return the "newest"
            or the "oldest" `limit` (Bybit does not document which).
        funding: funding settlements per (category, symbol); default: generated every 8 h.
        host: interface to bind; keep the loopback default.
        port, ws_port: ports for REST and WebSocket; 0 picks free ones.
    """

    def __init__(self, series: Mapping[SeriesKey, Sequence[Kline]], *, now_ms: int | None = None,
                 faults: FaultPlan | None = None, overflow: str = "newest",
                 funding: Mapping[tuple[str, str], Sequence[FundingRate]] | None = None,
                 host: str = "127.0.0.1", port: int = 0, ws_port: int = 0) -> None:
        self.market = Market(series, now_ms, overflow, funding)
        self._http = HttpServer(self.market, faults or FaultPlan())
        self._ws = WsHub(self.market)
        self.host, self._port, self._ws_port = host, port, ws_port
        self.base_url = ""
        self.ws_url = ""
        self._clock_lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> FakeExchange:
        """Bind both servers in the running loop; sets `base_url` and `ws_url`."""
        self._loop = asyncio.get_running_loop()
        self._clock_lock = asyncio.Lock()
        http_port = await self._http.start(self.host, self._port)
        ws_port = await self._ws.start(self.host, self._ws_port)
        self.base_url = f"http://{self.host}:{http_port}"
        self.ws_url = f"ws://{self.host}:{ws_port}/v5/public"
        return self

    async def aclose(self) -> None:
        """Stop both servers and cut their connections."""
        self._ws.drop_all()
        await self._ws.close()
        await self._http.close()

    async def __aenter__(self) -> FakeExchange:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    def start_in_thread(self) -> FakeExchange:
        """Serve from a background thread with its own event loop (for sync code); returns self when bound."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:  # surface bind errors in the caller's thread
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.aclose())
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-exchange", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        """Stop a server started with `start_in_thread` (idempotent)."""
        if self._thread is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._thread = None

    def __enter__(self) -> FakeExchange:
        return self.start_in_thread()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # ---- clock ---------------------------------------------------------------------------------------

    @property
    def now_ms(self) -> int:
        """The fake's current time, epoch ms."""
        return self.market.now

    async def advance_to(self, now_ms: int) -> None:
        """Move the clock forward (call in the fake's loop) and push the WebSocket updates this causes.

        Raises:
            UserInputError: `now_ms` is before the current time (the clock never goes back).
        """
        assert self._clock_lock is not None, "start the fake first"
        async with self._clock_lock:
            before = self.market.now
            if now_ms < before:
                raise UserInputError(f"cannot move the fake's clock back from {before} to {now_ms}: "
                                     "pass a later time")
            self.market.now = now_ms
            await self._ws.publish(before, now_ms)

    async def advance(self, by_ms: int) -> None:
        """Move the clock forward by `by_ms` milliseconds (see `advance_to`)."""
        await self.advance_to(self.market.now + by_ms)

    def set_now(self, now_ms: int) -> None:
        """`advance_to` for sync code: blocks until the updates are pushed when the fake runs in a thread;
        from the fake's own loop it schedules them instead."""
        assert self._loop is not None, "start the fake first"
        try:
            same_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            same_loop = False
        if same_loop:
            self._loop.create_task(self.advance_to(now_ms))
        else:
            asyncio.run_coroutine_threadsafe(self.advance_to(now_ms), self._loop).result()

    # ---- faults and observation ----------------------------------------------------------------------

    @property
    def faults(self) -> FaultPlan:
        """The active fault plan; assign a new `FaultPlan` to change it."""
        return self._http.plan

    @faults.setter
    def faults(self, plan: FaultPlan) -> None:
        self._http.plan = plan

    def inject(self, *faults: Fault | str) -> None:
        """Queue faults for the next matching requests, one each, before any random draw."""
        self._http.plan.queue.extend(Fault(f) for f in faults)

    @property
    def requests(self) -> list[RequestRecord]:
        """Every HTTP request received so far, in arrival order."""
        return self._http.log

    def count(self, path: str | None = KLINE_PATH) -> int:
        """How many requests hit `path` (default the kline route; None: all)."""
        return sum(1 for r in self._http.log if path is None or r.path == path)

    def clear_log(self) -> None:
        """Forget the requests seen so far."""
        self._http.log.clear()

    def drop_http_connections(self) -> int:
        """Cut every open HTTP connection now; returns how many."""
        return self._http.drop_all()

    def drop_ws_connections(self) -> int:
        """Cut every WebSocket connection abruptly; returns how many."""
        return self._ws.drop_all()

    def refuse_ws(self, refuse: bool = True) -> None:
        """While True, new WebSocket handshakes get HTTP 503 (lets a test hold a client disconnected)."""
        self._ws.accepting = not refuse

    async def wait_for_subscribers(self, symbol: str, interval: str, count: int = 1) -> None:
        """Wait (in the fake's loop) until `count` connections subscribe to `kline.{interval}.{symbol}`."""
        await self._ws.wait_for(f"kline.{interval}.{symbol}", count)

    @property
    def ws_pings(self) -> int:
        """How many WebSocket pings the fake has answered."""
        return self._ws.pings

    async def wait_for_pings(self, count: int) -> None:
        """Wait (in the fake's loop) until `count` WebSocket pings have been answered in total."""
        await self._ws.wait_for_pings(count)


def run_fake_exchange(klines: Sequence[Kline], port: int = 0, host: str = "127.0.0.1", *,
                      ws_port: int = 0, symbol: str = "BTCUSDT", category: str = "linear",
                      interval: str = "60") -> None:
    """Serve one series until interrupted (Ctrl-C); prints the REST and WebSocket URLs first.

    Args:
        klines: the candles, oldest first (from a file: `reformer.data.read_klines(path)`).
        port, ws_port: REST and WebSocket ports (0: free ones).
        host: interface to bind (loopback by default; the fake has no authentication).
        symbol, category, interval: what the candles are, e.g. BTCUSDT / linear / "60".
    """
    klines = list(klines)
    if not klines:
        raise DataFormatError("no candles to serve; export some first")

    async def serve() -> None:
        async with FakeExchange({(category, symbol, interval): klines}, host=host, port=port,
                                ws_port=ws_port) as fake:
            print(f"fake Bybit serving {len(klines)} {symbol} {interval} candles", flush=True)
            print(f"BYBIT_BASE_URL={fake.base_url}", flush=True)
            print(f"BYBIT_WS_URL={fake.ws_url}", flush=True)
            await asyncio.Event().wait()  # until cancelled by Ctrl-C

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())

"""A local fake of Bybit's public V5 market data: real HTTP and WebSocket servers on 127.0.0.1.

Built for tests and offline demos, faithful to this subset of Bybit's V5 API:

* REST (HTTP/1.1, keep-alive) on `base_url`: /v5/market/time, /kline, /mark-price-kline, /index-price-kline,
  /premium-index-price-kline, /instruments-info, /tickers, /funding/history, /open-interest, /risk-limit;
  anything else is HTTP 404. The perpetuals' mark prices, funding settlements and risk-limit tables are derived
  from the candles (`_fake_derivatives.py`), so any series served, a CSV's or a synthetic one, has them.
* WebSocket on a second port, `ws_url` = ws://127.0.0.1:PORT/v5/public (append /linear, /spot, /inverse):
  `kline.{interval}.{symbol}` topics, subscribe acks, pong, unconfirmed updates and confirmed closes.
* A clock that never moves by itself: "now" starts 1 s after the newest candle's open (that candle is still
  open) and moves only through `advance_to` / `set_now`, which push WebSocket updates, or `replay`, which runs
  it at a multiple of real time up to the data's last close, as a live market (`_fake_replay.py`).
* Fault injection (`FaultPlan`, `inject`), a request log (`requests`, `count`), WebSocket drops (now, or every
  few seconds: `drop_ws_every`) and refusals.

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
import sys
import threading
from collections.abc import Callable, Coroutine, Mapping, Sequence
from types import TracebackType
from typing import Any

from ..errors import DataFormatError, UserInputError
from ._fake_http import RETRYABLE_FAULTS, Fault, FaultPlan, HttpServer, RequestRecord
from ._fake_market import Market, SeriesKey
from ._fake_replay import ReplayClock, describe_ms, drop_ws_periodically
from ._fake_ws import WsHub
from .types import FundingRate, Kline

__all__ = ["RETRYABLE_FAULTS", "FakeExchange", "Fault", "FaultPlan", "ReplayClock", "RequestRecord",
           "run_fake_exchange"]

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
        self._jobs: set[asyncio.Task[Any]] = set()

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
        """Stop both servers, their background jobs (replay, periodic drops) and their connections."""
        jobs = list(self._jobs)
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)
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

    def replay(self, start_ms: int | None = None, speed: float = 1.0, *, tick_s: float = 1.0,
               on_end: Callable[[int], None] | None = None) -> ReplayClock:
        """Run the clock as a live market: from `start_ms` at `speed` times real time, pushing each candle's close
        on the WebSocket as the clock passes it, until the data's last close (see `ReplayClock`). One replay at a
        time: `stop()` the previous one before starting another.

        Args:
            start_ms: where the clock starts, epoch ms (default: where it is); earlier rewinds the market.
            speed: market time per wall time, e.g. 3600 (an hour candle a second); 0 holds the clock still.
            tick_s: the longest wall time between two moves of the clock, seconds.
            on_end: called once with the end time when the market stops at the data's end.

        Returns:
            The running clock (`stop()` it, or `wait()` for the market's end, in the fake's loop).

        Raises:
            UserInputError: a negative speed or a start outside the data.
        """
        return ReplayClock(self, start_ms, speed, tick_s=tick_s, on_end=on_end).start()

    def drop_ws_every(self, seconds: float, on_drop: Callable[[int], None] | None = None) -> asyncio.Task[None]:
        """Cut every WebSocket connection every `seconds` of wall time until the fake closes, so clients must
        reconnect and back-fill; `on_drop` gets how many were cut.

        Raises:
            UserInputError: `seconds` is not > 0.
        """
        if not seconds > 0:
            raise UserInputError(f"drop period {seconds} s: use a period > 0 seconds")
        return self.spawn(drop_ws_periodically(self, seconds, on_drop))

    def spawn(self, job: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run `job` as a task of the fake's loop (from that loop, or from another thread when the fake runs in
        one) until it ends or the fake closes."""
        assert self._loop is not None, "start the fake first"
        try:
            same_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            same_loop = False
        if same_loop:
            return self._track(job)

        async def create() -> asyncio.Task[Any]:
            return self._track(job)

        return asyncio.run_coroutine_threadsafe(create(), self._loop).result()

    def _track(self, job: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(job)
        self._jobs.add(task)
        task.add_done_callback(self._jobs.discard)
        return task

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
                      interval: str = "60", start_ms: int | None = None, speed: float = 1.0,
                      faults: FaultPlan | None = None, drop_every_s: float | None = None,
                      more: Mapping[str, Sequence[Kline]] | None = None) -> None:
    """Serve one series as a live market until interrupted (Ctrl-C); prints the REST and WebSocket URLs and the
    clock first, and on stderr when the market stops at the data's end (the servers go on answering).

    Args:
        klines: the candles, oldest first (from a file: `reformer.data.read_klines(path)`).
        port, ws_port: REST and WebSocket ports (0: free ones).
        host: interface to bind (loopback by default; the fake has no authentication).
        symbol, category, interval: what the candles are, e.g. BTCUSDT / linear / "60".
        start_ms: where the clock starts, epoch ms (default: 1 s after the newest candle's open).
        speed: market time per wall time (default 1, real time; 0 holds the clock still).
        faults: how REST requests fail (default: never).
        drop_every_s: cut every WebSocket connection this often, seconds of wall time (default: never).
        more: other symbols of the same category and interval, served beside `symbol` on the same clock.

    Raises:
        DataFormatError: no candles.
        UserInputError: a start outside the data, a negative speed, a drop period <= 0.
    """
    klines = list(klines)
    if not klines:
        raise DataFormatError("no candles to serve; export some first")
    if drop_every_s is not None and not drop_every_s > 0:
        raise UserInputError(f"drop period {drop_every_s} s: use a period > 0 seconds, or none")
    series = {(category, symbol, interval): klines, **{(category, name, interval): list(candles)
                                                       for name, candles in (more or {}).items()}}
    fake = FakeExchange(series, faults=faults, host=host, port=port, ws_port=ws_port)

    def ended(end_ms: int) -> None:
        print(f"fake Bybit: the clock reached the end of the data ({describe_ms(end_ms)}, the last candle's close); "
              "the market stops here, with no new candles (Ctrl-C quits)", file=sys.stderr, flush=True)

    def dropped(count: int) -> None:
        print(f"fake Bybit: dropped {count} WebSocket connection(s)", file=sys.stderr, flush=True)

    clock = ReplayClock(fake, start_ms, speed, on_end=ended)  # checks the start before anything binds

    async def serve() -> None:
        async with fake:
            names = ", ".join([symbol, *(more or {})])
            print(f"fake Bybit serving {len(klines)} {names} {interval} candles", flush=True)
            print(f"BYBIT_BASE_URL={fake.base_url}", flush=True)
            print(f"BYBIT_WS_URL={fake.ws_url}", flush=True)
            pace = f"{speed:g}x real time" if speed > 0 else "held still"
            start = start_ms if start_ms is not None else fake.now_ms
            print(f"clock: starts at {describe_ms(start)} ({start} ms), {pace}; the data ends at "
                  f"{describe_ms(clock.end_ms)}", flush=True)
            clock.start()
            if drop_every_s is not None:
                fake.drop_ws_every(drop_every_s, dropped)
            await asyncio.Event().wait()  # until cancelled by Ctrl-C

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())

"""The fake exchange as a live market: a clock that replays its candles at a multiple of real time, and WebSocket
drops on a wall-clock period (`FakeExchange.replay`, `FakeExchange.drop_ws_every`).

The replay moves the fake's one clock through `advance_to`, so REST and the WebSocket agree: REST serves no candle
that opens after the clock, the candle containing it is the open one (partial values), funding, mark prices and
tickers are as of the clock, and the WebSocket pushes each candle as closed (`confirm: true`) once the clock
reaches its close. The loop wakes at every candle close, and at least every `tick_s` seconds of wall time for the
open candle's updates, so a close is pushed when the clock passes it rather than up to a tick later. At the close
of the data's last candle the market stops: the fake never invents candles.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ..errors import UserInputError

if TYPE_CHECKING:
    from .fake import FakeExchange

__all__ = ["ReplayClock", "describe_ms", "drop_ws_periodically"]

_MIN_SLEEP_S = 0.005  # at most 200 clock moves a second: above that, each move covers several closes, in order
_LATE_S = 0.001  # wake just after a close's wall time, so the clock (rounded down to the ms) has reached it


def describe_ms(ms: int) -> str:
    """Epoch ms as "YYYY-MM-DD HH:MM:SS UTC" (the fake's own messages; the data layer has its own format)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class ReplayClock:
    """Moves a fake exchange's clock at `speed` times real time, from `start_ms` to the close of its last candle.

    Args:
        fake: the exchange whose clock it moves; `start` needs it started.
        start_ms: where the clock starts, epoch ms, between the first candle's open and the last candle's close;
            default: the fake's current time. `start` sets the clock there at once, without WebSocket pushes
            (a start before the current time rewinds the market), so start the replay before clients connect.
        speed: market time per wall time (3600: an hour candle closes every second); 0 holds the clock still.
        tick_s: the longest wall time, in seconds, between two clock moves (each pushes the open candle's update).
        on_end: called once, with the end time (epoch ms), when the clock reaches the data's last close.

    Attributes:
        first_ms: the first candle's open, epoch ms.
        end_ms: the latest close of the fake's candles, where the market stops, epoch ms.
        ended: set once the market has stopped.

    Raises:
        UserInputError: a negative `speed`, a `tick_s` <= 0, or a `start_ms` outside the data.
    """

    def __init__(self, fake: FakeExchange, start_ms: int | None = None, speed: float = 1.0, *,
                 tick_s: float = 1.0, on_end: Callable[[int], None] | None = None) -> None:
        series = fake.market.series.values()
        self.first_ms = min(s.starts[0] for s in series)
        self.end_ms = max(s.starts[-1] + s.step for s in series)
        if not speed >= 0:  # also refuses NaN
            raise UserInputError(f"replay speed {speed} is negative: use 0 (a still clock) or more, e.g. 3600 for "
                                 "an hour of market time per second")
        if not tick_s > 0:
            raise UserInputError(f"replay tick_s {tick_s} must be > 0 seconds")
        if start_ms is not None and not self.first_ms <= start_ms <= self.end_ms:
            raise UserInputError(f"start {describe_ms(start_ms)} is outside the data, which runs from "
                                 f"{describe_ms(self.first_ms)} to {describe_ms(self.end_ms)} (the last candle's "
                                 "close): pick a start between the two")
        self.fake = fake
        self.start_ms = start_ms
        self.speed = float(speed)
        self.tick_s = tick_s
        self.on_end = on_end
        self.ended = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> ReplayClock:
        """Set the clock to `start_ms` and start moving it (from the fake's loop, or from another thread when the
        fake runs in one)."""
        if self.start_ms is not None:
            self.fake.market.now = self.start_ms  # one assignment: safe from another thread too
        self._task = self.fake.spawn(self._run())
        return self

    async def stop(self) -> None:
        """Stop moving the clock (call in the fake's loop); it stays where it is."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def running(self) -> bool:
        """Whether the clock is still moving (False before `start`, once stopped, and at the data's end)."""
        return self._task is not None and not self._task.done()

    async def wait(self) -> None:
        """Block (in the fake's loop) until the market has stopped at the data's end."""
        await self.ended.wait()

    def next_close(self, now_ms: int) -> int:
        """The first candle close after `now_ms` across the fake's series (`end_ms` past the last)."""
        closes = [self.end_ms]
        for series in self.fake.market.series.values():
            index = bisect.bisect_right(series.starts, now_ms - series.step)  # first candle closing after now
            if index < len(series.starts):
                closes.append(series.starts[index] + series.step)
        return min(closes)

    async def _run(self) -> None:
        market = self.fake.market
        origin, wall_origin = market.now, time.monotonic()
        while self.speed > 0 and market.now < self.end_ms:
            target = min(self.end_ms, origin + int((time.monotonic() - wall_origin) * self.speed * 1000))
            if target > market.now:
                # another caller may have moved the clock past `target` meanwhile: then there is nothing to do
                with contextlib.suppress(UserInputError):
                    await self.fake.advance_to(target)
            if market.now >= self.end_ms:
                break
            wake = wall_origin + (self.next_close(market.now) - origin) / (self.speed * 1000) + _LATE_S
            await asyncio.sleep(max(_MIN_SLEEP_S, min(self.tick_s, wake - time.monotonic())))
        if market.now >= self.end_ms:
            self.ended.set()
            if self.on_end is not None:
                self.on_end(self.end_ms)


async def drop_ws_periodically(fake: FakeExchange, every_s: float,
                               on_drop: Callable[[int], None] | None = None) -> None:
    """Cut every WebSocket connection of `fake` every `every_s` seconds of wall time, for ever (cancel to stop);
    `on_drop` gets how many were cut, when any were."""
    while True:
        await asyncio.sleep(every_s)
        dropped = fake.drop_ws_connections()
        if dropped and on_drop is not None:
            on_drop(dropped)

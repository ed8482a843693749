"""Helpers for the exchange tests: the shared BTC candles, an asyncio runner with a safety timeout, fast sleep."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from reformer.api import Kline, klines_from_csv

T = TypeVar("T")

YEAR_2024 = (1_704_067_200_000, 1_735_689_600_000)  # [2024-01-01, 2025-01-01) UTC, epoch ms
HOUR = 3_600_000


def run(coroutine: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    """Run a test coroutine; the timeout is a safety net against hangs, not synchronisation."""
    return asyncio.run(asyncio.wait_for(coroutine, timeout))


class SleepRecorder:
    """Stands in for asyncio.sleep in backoff: records each requested delay, yields once, returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


@pytest.fixture
def fast_sleep() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture(scope="session")
def btc_klines(btc_csv: Path) -> list[Kline]:
    """Every candle of the shared BTCUSDT perpetual 1 h file."""
    return klines_from_csv(btc_csv)


@pytest.fixture(scope="session")
def year_klines(btc_klines: list[Kline]) -> list[Kline]:
    """The 8,784 hourly candles of the leap year 2024."""
    year = [k for k in btc_klines if YEAR_2024[0] <= k.start_time < YEAR_2024[1]]
    assert len(year) == 8784
    return year

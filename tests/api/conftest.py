"""Helpers for the exchange tests: an asyncio runner with a safety timeout, fast sleep."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

T = TypeVar("T")

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



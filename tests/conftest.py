"""Shared fixtures. Real data is read from the shared folder beside the project, never copied into it."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from reformer.api import Kline, klines_from_csv

# A shell that starts a job in the background (`cmd &`) sets SIGINT to "ignore", and children inherit that: the
# Ctrl-C tests of the CLI and the fake exchange need the ordinary disposition, whoever launched the suite.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread for a module that asks (`pytestmark = pytest.mark.usefixtures("one_thread")`): on a
    shared 2-core runner, oversubscribed threads make tiny models 10x slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _shared_data_dir() -> Path:
    candidates = [os.environ.get("REFORMER_SHARED_DATA", ""), REPO_ROOT.parent / "shared" / "data",
                  Path("/work/shared/data")]
    for candidate in candidates:
        if candidate and (Path(candidate) / "crypto").is_dir():
            return Path(candidate)
    raise RuntimeError("shared data not found: set REFORMER_SHARED_DATA to the folder holding crypto/ and ett/")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder holding crypto/bybit_BTCUSDT_perp_1h.csv and ett/ETTh1.csv."""
    return _shared_data_dir()


@pytest.fixture(scope="session")
def btc_csv(shared_data: Path) -> Path:
    return shared_data / "crypto" / "bybit_BTCUSDT_perp_1h.csv"


@pytest.fixture(scope="session")
def etth1_csv(shared_data: Path) -> Path:
    return shared_data / "ett" / "ETTh1.csv"


@pytest.fixture(scope="session")
def btc_klines(btc_csv: Path) -> list[Kline]:
    """Every candle of the shared BTCUSDT perpetual 1 h file."""
    return klines_from_csv(btc_csv)


@pytest.fixture(scope="session")
def year(btc_klines: list[Kline]) -> list[Kline]:
    """The 8,784 hourly candles of 2024 (a leap year)."""
    first, last = 1_704_067_200_000, 1_735_686_000_000  # 2024-01-01 00:00 and 2024-12-31 23:00 UTC
    candles = [k for k in btc_klines if first <= k.start_time <= last]
    assert len(candles) == 8784
    return candles

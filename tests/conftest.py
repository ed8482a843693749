"""Shared fixtures. Real data is read from the shared folder beside the project, never copied into it; where it is
absent (a plain clone) the tests that need it skip, and the properties of the code are checked on the synthetic
candles of tests/synthetic.py."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from reformer.api import Kline
from reformer.data.csv_io import read_klines

from . import synthetic
from .synthetic import BARS_2024, YEAR_2024, Candles
from .triton_bf16 import teach_interpreter_bfloat16

# A shell that starts a job in the background (`cmd &`) sets SIGINT to "ignore", and children inherit that: the
# Ctrl-C tests of the CLI and the fake exchange need the ordinary disposition, whoever launched the suite.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Without a GPU the fused Triton kernels run in Triton's CPU interpreter; Triton reads the switch when it is first
# imported, so it is set before any test imports it.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
if os.environ.get("TRITON_INTERPRET") == "1":
    teach_interpreter_bfloat16()  # its bfloat16 products and casts as a GPU computes them (`triton_bf16.py`)

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread for a module that asks (`pytestmark = pytest.mark.usefixtures("one_thread")`): on a
    shared 2-core runner, oversubscribed threads make tiny models 10x slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


SHARED_DATA_ENV = "REFORMER_SHARED_DATA"
BTC_FILE = Path("crypto") / "bybit_BTCUSDT_perp_1h.csv"
ETTH1_FILE = Path("ett") / "ETTh1.csv"


def shared_data_dir() -> Path:
    """Where the real data files are looked for: `$REFORMER_SHARED_DATA` when it is set and not empty (even to a
    folder that does not exist: an explicit setting wins, so `REFORMER_SHARED_DATA=/nonexistent` runs the suite as
    a plain clone would), else `shared/data` beside the repository (`<repo>/../shared/data`)."""
    explicit = os.environ.get(SHARED_DATA_ENV)
    return Path(explicit) if explicit else REPO_ROOT.parent / "shared" / "data"


def _real_file(relative: Path) -> Path:
    """The shared file at `relative`, or a skip naming it and how to provide it (a plain clone has no data)."""
    path = shared_data_dir() / relative
    if not path.is_file():
        pytest.skip(f"real data not found: {path} is missing; set {SHARED_DATA_ENV} to the folder holding "
                    f"{BTC_FILE.as_posix()} and {ETTH1_FILE.as_posix()} (an explicit setting wins over "
                    "../shared/data beside the repository)")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder holding crypto/bybit_BTCUSDT_perp_1h.csv and ett/ETTh1.csv (skips where it does not exist)."""
    folder = shared_data_dir()
    if not folder.is_dir():
        pytest.skip(f"real data not found: {folder} does not exist; set {SHARED_DATA_ENV} to the folder holding "
                    f"{BTC_FILE.as_posix()} and {ETTH1_FILE.as_posix()}")
    return folder


@pytest.fixture(scope="session")
def btc_csv() -> Path:
    """The real BTCUSDT perpetual 1 h file (skips where it is missing)."""
    return _real_file(BTC_FILE)


@pytest.fixture(scope="session")
def etth1_csv() -> Path:
    """The real ETTh1 file (skips where it is missing)."""
    return _real_file(ETTH1_FILE)


@pytest.fixture(scope="session")
def btc_klines(btc_csv: Path) -> list[Kline]:
    """Every candle of the shared BTCUSDT perpetual 1 h file."""
    return read_klines(btc_csv)


@pytest.fixture(scope="session")
def btc_year(btc_klines: list[Kline]) -> list[Kline]:
    """The 8,784 real hourly candles of 2024 (a leap year)."""
    candles = [k for k in btc_klines if YEAR_2024[0] <= k.start_time <= YEAR_2024[1]]
    assert len(candles) == BARS_2024
    return candles


@pytest.fixture(scope="session")
def synthetic_series() -> list[Kline]:
    """Synthetic hourly candles, December 2023 to January 2025 (tests/synthetic.py): no shared data needed."""
    return synthetic.synthetic_series()


@pytest.fixture(scope="session")
def synthetic_year() -> list[Kline]:
    """The 8,784 synthetic hourly candles of 2024, a slice of `synthetic_series`."""
    return synthetic.synthetic_year()


@pytest.fixture(scope="session")
def synthetic_csv(synthetic_series: list[Kline], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`synthetic_series` written in the shared BTC file's layout (with its `timestamp_string` column)."""
    return synthetic.write_shared_layout_csv(synthetic_series, tmp_path_factory.mktemp("synthetic") / "btc.csv")


@pytest.fixture(scope="session", params=["synthetic", "real"])
def candle_source(request: pytest.FixtureRequest) -> Candles:
    """The synthetic candles, then the real BTC ones: a property checked on both runs on a plain clone too (the
    real variant skips there)."""
    if request.param == "real":
        return Candles(request.getfixturevalue("btc_klines"), request.getfixturevalue("btc_year"),
                       request.getfixturevalue("btc_csv"))
    return Candles(request.getfixturevalue("synthetic_series"), request.getfixturevalue("synthetic_year"),
                   request.getfixturevalue("synthetic_csv"))

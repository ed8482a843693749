"""Deterministic stand-ins for the shared data files, so the properties of the code are tested on a plain clone.

`synthetic_series()` is hourly candles of the project's synthetic market (`reformer.data.synthetic`) from
December 2023 to January 2025; its 8,784 candles of 2024 play the part of the real file's 2024. The history
before and after the year matters: a fetch of 2024 must page within its bounds, and 2024's last candle is closed
on a fake exchange whose clock stands in the next January. The values are full-precision floats, the hardest case
for every text round trip (fake exchange, CSV, SQLite); the real file's few-digit decimals are the easy case.

`write_shared_layout_csv` writes candles the way the shared BTC file is written (an extra `timestamp_string`
column, numbers in plain decimals with no trailing ".0"), and `write_ett_like_csv` a series in ETTh1's layout.
"""

from __future__ import annotations

import functools
from decimal import Decimal
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pytest

from reformer.api import Kline
from reformer.data.synthetic import SyntheticMarket, SyntheticMarketConfig, generate_market

HOUR = 3_600_000
YEAR_2024 = (1_704_067_200_000, 1_735_686_000_000)  # first and last hourly open time of 2024, epoch ms UTC
BARS_2024 = 8_784  # 366 days x 24 hours
LEAD_BARS = TAIL_BARS = 31 * 24  # December 2023 before the year, January 2025 after it

SHARED_HEADER = "timestamp,open,high,low,close,volume,turnover,timestamp_string"
ETT_COLUMNS = ("HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT")
ETT_ROWS = 17_420  # ETTh1's length: the ett-hourly protocol needs 14,400 rows and uses them from the start


class Candles(NamedTuple):
    """One source of hourly candles (the `candle_source` fixture): all of them, their 8,784 of 2024, and a file in
    the shared BTC file's layout holding all of them."""

    klines: list[Kline]
    year: list[Kline]
    csv: Path


@functools.cache
def synthetic_market() -> SyntheticMarket:
    """The synthetic market behind `synthetic_series` (BTC-like level, generated once a process)."""
    config = SyntheticMarketConfig(n_bars=LEAD_BARS + BARS_2024 + TAIL_BARS, seed=2024, start_price=42_000.0,
                                   start_time=YEAR_2024[0] - LEAD_BARS * HOUR)
    return generate_market(config)


@functools.cache
def _series() -> tuple[Kline, ...]:
    return tuple(synthetic_market().klines())


def synthetic_series() -> list[Kline]:
    """Every synthetic candle, December 2023 to January 2025 (a fresh list: callers may change it)."""
    return list(_series())


def synthetic_year() -> list[Kline]:
    """The 8,784 synthetic candles of 2024."""
    year = list(_series()[LEAD_BARS:LEAD_BARS + BARS_2024])
    assert (year[0].start_time, year[-1].start_time) == YEAR_2024
    return year


def synthetic_frame() -> pd.DataFrame:
    """`synthetic_series()` as a frame with the export columns (timestamp, open, ..., turnover)."""
    return synthetic_market().frame.copy()


def candle_slice(request: pytest.FixtureRequest, real_start: int, synthetic_start: int, rows: int = 3_000
                 ) -> pd.DataFrame:
    """`rows` hourly candles for a fixture parametrized over "synthetic" and "real": from the synthetic frame, or
    from the real BTC file (which skips where that file is absent)."""
    if request.param == "real":
        frame = pd.read_csv(request.getfixturevalue("btc_csv")).drop(columns="timestamp_string")
        return frame.iloc[real_start:real_start + rows].reset_index(drop=True)
    return synthetic_frame().iloc[synthetic_start:synthetic_start + rows].reset_index(drop=True)


def plain_decimal(value: float) -> str:
    """A number as the shared file writes it: the shortest round-trip digits, plain decimal, no trailing '.0'."""
    text = format(Decimal(repr(float(value))), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def write_shared_layout_csv(klines: list[Kline], path: Path) -> Path:
    """Write `klines` in the layout of crypto/bybit_BTCUSDT_perp_1h.csv (see the module docstring)."""
    lines = [SHARED_HEADER]
    for kline in klines:
        stamp = pd.Timestamp(kline.start_time, unit="ms", tz="UTC").strftime("%d.%m.%Y %H:%M")
        lines.append(",".join([str(kline.start_time), *map(plain_decimal, kline[1:]), stamp]))
    path.write_text("\n".join(lines) + "\n")
    return path


def ett_like_values(rows: int = ETT_ROWS, seed: int = 1) -> np.ndarray:
    """`[rows, 7]` loads and an oil temperature: daily cycles plus AR(1) noise, all positive like ETTh1's."""
    rng = np.random.default_rng(seed)
    hours = np.arange(rows)
    values = np.empty((rows, len(ETT_COLUMNS)))
    for column in range(len(ETT_COLUMNS)):
        noise = np.empty(rows)
        noise[0] = 0.0
        shocks = rng.normal(0.0, 0.3, rows)
        for t in range(1, rows):
            noise[t] = 0.95 * noise[t - 1] + shocks[t]
        phase = rng.uniform(0, 2 * np.pi)
        values[:, column] = 10.0 + 3.0 * column + 2.0 * np.sin(2 * np.pi * hours / 24 + phase) + noise
    return values


def write_ett_like_csv(path: Path, rows: int = ETT_ROWS, seed: int = 1) -> np.ndarray:
    """Write an hourly series in ETTh1's layout (`date` from 2016-07-01 00:00:00, then `ETT_COLUMNS`); returns
    the values written."""
    values = ett_like_values(rows, seed)
    dates = pd.date_range("2016-07-01", periods=rows, freq="h").strftime("%Y-%m-%d %H:%M:%S")
    lines = ["date," + ",".join(ETT_COLUMNS)]
    lines += [f"{date}," + ",".join(map(repr, row.tolist())) for date, row in zip(dates, values, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return values

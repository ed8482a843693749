"""One candle-frame conversion: the data layer's and the strategy layer's views of the same candles agree."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from reformer.bars import bar_frame, candle_frame, ms_to_times, times_to_ms
from reformer.data import klines_to_frame, synthetic_klines
from reformer.data.synthetic import SyntheticMarketConfig
from reformer.errors import DataFormatError
from reformer.strategy.bars import to_bar_frame

KLINES = synthetic_klines(SyntheticMarketConfig(n_bars=50, seed=1))


def test_the_two_views_are_one_conversion() -> None:
    candles, bars = candle_frame(KLINES), bar_frame(KLINES)
    pd.testing.assert_frame_equal(klines_to_frame(KLINES), candles)
    pd.testing.assert_frame_equal(to_bar_frame(KLINES), bars)
    assert bars.index.equals(ms_to_times(candles["timestamp"])) and bars.index.name == "time"
    pd.testing.assert_frame_equal(bars.reset_index(drop=True), candles.drop(columns="timestamp"))
    # each view converts back to the other
    pd.testing.assert_frame_equal(candle_frame(bars), candles)
    pd.testing.assert_frame_equal(bar_frame(candles), bars)


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_datetimes_of_any_unit_become_the_same_epoch_ms(unit: str) -> None:
    candles = candle_frame(KLINES)
    times = ms_to_times(candles["timestamp"]).as_unit(unit)
    as_column = candles.assign(timestamp=times.tz_localize(None))  # naive datetimes are UTC
    as_index = candles.drop(columns="timestamp").set_index(times)
    for frame in (as_column, as_index):
        np.testing.assert_array_equal(candle_frame(frame)["timestamp"], candles["timestamp"])
        assert bar_frame(frame).index.equals(bar_frame(candles).index)
    np.testing.assert_array_equal(times_to_ms(times), candles["timestamp"])


def test_bad_candles_are_named_alike_in_both_views() -> None:
    candles = candle_frame(KLINES)
    for view in (candle_frame, bar_frame):
        with pytest.raises(DataFormatError, match="strictly increase"):
            view(candles.iloc[::-1])
        broken = candles.copy()
        broken.loc[7, "low"] = 0.0
        with pytest.raises(DataFormatError, match="row 7"):
            view(broken)
    with pytest.raises(DataFormatError, match="volume"):
        candle_frame(candles.drop(columns="volume"))  # features need volume; a backtest does not
    assert "volume" in bar_frame(candles.drop(columns="turnover"))
    assert len(bar_frame(candles[["timestamp", *["open", "high", "low", "close"]]])) == len(candles)

"""Synthetic market: determinism, candle consistency, and the planted long-range signal."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from reformer.api.types import Kline
from reformer.data.features import FeatureSpec, compute_features
from reformer.data.synthetic import SyntheticMarket, SyntheticMarketConfig, generate_market, synthetic_klines
from reformer.errors import ConfigError

CONFIG = SyntheticMarketConfig(n_bars=20_000, seed=11)
HORIZON = 24


@pytest.fixture(scope="module")
def planted() -> SyntheticMarket:
    return generate_market(CONFIG)


@pytest.fixture(scope="module")
def control() -> SyntheticMarket:
    return generate_market(replace(CONFIG, plant_signal=False))


def _bar_returns(market: SyntheticMarket) -> np.ndarray:
    close = market.frame["close"].to_numpy()
    return np.diff(np.log(close), prepend=np.log(market.config.start_price))


def test_deterministic_per_seed() -> None:
    small = SyntheticMarketConfig(n_bars=500, seed=3)
    pd.testing.assert_frame_equal(generate_market(small).frame, generate_market(small).frame, check_exact=True)
    assert not generate_market(replace(small, seed=4)).frame["close"].equals(generate_market(small).frame["close"])


def test_candles_are_consistent(planted: SyntheticMarket) -> None:
    f = planted.frame
    assert (f["high"] >= np.maximum(f["open"], f["close"])).all()
    assert (f["low"] <= np.minimum(f["open"], f["close"])).all()
    assert (f["low"] > 0).all() and (f["volume"] > 0).all() and (f["turnover"] > 0).all()
    assert (f["open"].iloc[1:].to_numpy() == f["close"].iloc[:-1].to_numpy()).all()
    assert (np.diff(f["timestamp"]) == CONFIG.interval_ms).all() and f["timestamp"].iloc[0] == CONFIG.start_time
    returns = _bar_returns(planted)
    assert 0.6 * CONFIG.bar_vol < returns.std() < 1.6 * CONFIG.bar_vol
    # volatility clusters: |returns| are autocorrelated
    assert np.corrcoef(np.abs(returns[1:]), np.abs(returns[:-1]))[0, 1] > 0.1
    assert set(np.unique(planted.regimes)) == {0, 1, 2}


def test_klines_output() -> None:
    klines = synthetic_klines(SyntheticMarketConfig(n_bars=50))
    assert len(klines) == 50 and isinstance(klines[0], Kline) and isinstance(klines[0].start_time, int)


def test_planted_signal_correlation(planted: SyntheticMarket, control: SyntheticMarket) -> None:
    lag = CONFIG.lag
    np.testing.assert_array_equal(planted.markers, control.markers)  # same events, only the effect differs
    corr = np.corrcoef(planted.markers[:-lag], _bar_returns(planted)[lag:])[0, 1]
    corr_control = np.corrcoef(control.markers[:-lag], _bar_returns(control)[lag:])[0, 1]
    assert corr > 0.2
    assert abs(corr_control) < 0.04
    # the only difference between the two markets is the planted jumps
    np.testing.assert_allclose(_bar_returns(planted) - _bar_returns(control), planted.planted, atol=1e-9)


def test_events_are_visible_in_the_features(planted: SyntheticMarket) -> None:
    features = compute_features(planted.frame, FeatureSpec(groups=("volume_z", "candle")))
    detected = np.where((features["volume_z"] > 2.5) & (features["body_ratio"].abs() > 0.85),
                        np.sign(features["body_ratio"]), 0.0)
    warm = FeatureSpec().zscore_window
    truth = planted.markers[warm:]
    hits = detected[warm:]
    assert (hits[truth != 0] == truth[truth != 0]).mean() > 0.9  # recall with the right sign
    assert (truth[hits != 0] == hits[hits != 0]).mean() > 0.9  # precision


def test_long_lookback_predicts_short_cannot(planted: SyntheticMarket, control: SyntheticMarket) -> None:
    """Which bars of a window ending at t carry information about its target ln(C_{t+h} / C_t)?

    Markers are i.i.d., so the correlation of the marker d bars back with the forward return has a standard
    error of about 1/sqrt(n) (~0.007) despite overlapping targets.
    """
    lag = CONFIG.lag

    def by_distance(market: SyntheticMarket) -> np.ndarray:
        close = market.frame["close"].to_numpy()
        start = lag + 30
        forward = np.log(close[HORIZON:] / close[:-HORIZON])[start:]  # targets of windows ending at t >= start
        n = len(forward)
        return np.array([np.corrcoef(market.markers[start - d: start - d + n], forward)[0, 1] for d in range(start)])

    corr = by_distance(planted)
    # a window of lag - h bars (distances 0 .. lag-h-1) sees nothing that predicts its target
    assert np.abs(corr[: lag - HORIZON]).max() < 0.04
    # the bars lag-h .. lag-1 back do, so a window of >= lag bars can predict
    assert corr[lag - HORIZON: lag].min() > 0.03 and corr[lag - HORIZON: lag].mean() > 0.05
    assert np.abs(corr[lag:]).max() < 0.04  # events older than lag are already priced in
    assert np.abs(by_distance(control)).max() < 0.04  # and without planting no distance carries anything
    # a long-window oracle (sum of the markers lag-h .. lag-1 bars back) explains a good part of the target
    close = planted.frame["close"].to_numpy()
    forward = np.log(close[HORIZON:] / close[:-HORIZON])[lag:]
    cumulative = np.concatenate([[0.0], np.cumsum(planted.markers)])
    ends = np.arange(lag, lag + len(forward))
    oracle = cumulative[ends - lag + HORIZON + 1] - cumulative[ends - lag + 1]
    assert np.corrcoef(oracle, forward)[0, 1] > 0.2


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="lag"):
        SyntheticMarketConfig(lag=50)
    with pytest.raises(ConfigError, match="garch"):
        SyntheticMarketConfig(garch_alpha=0.2, garch_beta=0.85)

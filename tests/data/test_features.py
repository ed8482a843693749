"""Causal features: causality under perturbation, warm-ups, ta cross-checks, spec serialisation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import ta

from reformer.data.features import FeatureSpec, compute_features
from reformer.errors import ConfigError, DataFormatError

from ..synthetic import candle_slice

AFTER_BURN_IN = 400  # bars after which every seed effect is far below 1e-6


@pytest.fixture(scope="module", params=["synthetic", "real"])
def candles(request: pytest.FixtureRequest) -> pd.DataFrame:
    """3,000 hourly candles: synthetic ones (tests/synthetic.py), then a slice of real BTCUSDT 1h candles."""
    return candle_slice(request, real_start=20_000, synthetic_start=1_000)


def _perturb_after(frame: pd.DataFrame, t: int, rng: np.random.Generator) -> pd.DataFrame:
    out = frame.copy()
    n_after = len(out) - t - 1
    for column in ("open", "high", "low", "close", "volume", "turnover"):
        out.loc[t + 1:, column] = out.loc[t + 1:, column] * np.exp(rng.normal(0, 0.05, n_after))
    return out


def test_every_feature_is_causal_under_random_perturbation(candles: pd.DataFrame) -> None:
    rng = np.random.default_rng(7)
    base = compute_features(candles)
    for t in rng.integers(0, len(candles) - 2, size=6):
        perturbed = compute_features(_perturb_after(candles, int(t), rng))
        before = perturbed.iloc[: t + 1]
        pd.testing.assert_frame_equal(before, base.iloc[: t + 1], check_exact=True)
        # the perturbation is real: something after t did change
        assert not np.allclose(perturbed.iloc[t + 1:].to_numpy(), base.iloc[t + 1:].to_numpy(), equal_nan=True)


def test_warmups_are_exactly_the_leading_nans(candles: pd.DataFrame) -> None:
    spec = FeatureSpec()
    features = compute_features(candles, spec)
    assert tuple(features.columns) == spec.columns()
    for name, warm in spec.warmups().items():
        column = features[name].to_numpy()
        assert np.isnan(column[:warm]).all(), name
        assert np.isfinite(column[warm:]).all(), name
    assert spec.warmup == max(spec.warmups().values()) == 167
    assert spec.warmups()["rsi_14"] == 95 and spec.warmups()["macd_signal"] == 121


@pytest.mark.parametrize("window", ["rsi_window", "atr_window", "macd_signal", "macd_fast"])
def test_windows_of_one_bar_are_valid_and_their_warmups_exact(candles: pd.DataFrame, window: str) -> None:
    # a recursion with weight 1 on the new value keeps no memory: no settling bars (it raised a math domain
    # ValueError, for a value the validation accepts)
    spec = FeatureSpec(**{window: 1})
    features = compute_features(candles.iloc[:600], spec)
    for name, warm in spec.warmups().items():
        column = features[name].to_numpy()
        assert np.isnan(column[:warm]).all() and np.isfinite(column[warm:]).all(), name


def test_recursive_features_barely_depend_on_the_series_start(candles: pd.DataFrame) -> None:
    spec = FeatureSpec()
    full = compute_features(candles, spec).iloc[1000 + spec.warmup:].reset_index(drop=True)
    late = compute_features(candles.iloc[1000:].reset_index(drop=True), spec).iloc[spec.warmup:].reset_index(drop=True)
    assert (full["rsi_14"] - late["rsi_14"]).abs().max() < 100 * spec.recursive_tolerance  # RSI spans 0..100
    for name in ("macd", "macd_signal", "atr_ratio"):
        assert (full[name] - late[name]).abs().max() < 1e-3 * full[name].abs().max(), name


def test_ta_cross_check_rsi_macd_bollinger_atr(candles: pd.DataFrame) -> None:
    ours = compute_features(candles, FeatureSpec(recursive_tolerance=None))
    close, high, low = candles["close"], candles["high"], candles["low"]
    checks = {
        "rsi_14": ta.momentum.RSIIndicator(close, window=14).rsi(),
        "macd": ta.trend.MACD(close, 26, 12, 9).macd() / close,
        "macd_signal": ta.trend.MACD(close, 26, 12, 9).macd_signal() / close,
        "macd_hist": ta.trend.MACD(close, 26, 12, 9).macd_diff() / close,
        "bollinger_pct_b": ta.volatility.BollingerBands(close, 20, 2).bollinger_pband(),
        "atr_ratio": ta.volatility.AverageTrueRange(high, low, close, 14).average_true_range() / close,
    }
    for name, reference in checks.items():
        np.testing.assert_allclose(ours[name].iloc[AFTER_BURN_IN:], reference.iloc[AFTER_BURN_IN:], rtol=1e-6,
                                   atol=1e-12, err_msg=name)
    # Bollinger is not recursive: it matches from its first valid bar
    np.testing.assert_allclose(ours["bollinger_pct_b"].iloc[19:], checks["bollinger_pct_b"].iloc[19:], rtol=1e-9)


def test_simple_feature_values(candles: pd.DataFrame) -> None:
    features = compute_features(candles, FeatureSpec(return_horizons=(1, 4), vol_window=3))
    close = candles["close"].to_numpy()
    np.testing.assert_allclose(features["log_return_4"].iloc[10], np.log(close[10] / close[6]))
    r = np.diff(np.log(close))
    np.testing.assert_allclose(features["realized_vol_3"].iloc[10], np.sqrt((r[7:10] ** 2).sum()))
    total = features["body_ratio"].abs() + features["upper_wick_ratio"] + features["lower_wick_ratio"]
    flat = (candles["high"] == candles["low"]).to_numpy()
    np.testing.assert_allclose(total[~flat], 1.0)
    assert (features[["upper_wick_ratio", "lower_wick_ratio"]] >= -1e-12).all().all()


def test_signed_volume_is_opt_in_causal_and_signs_the_volume_z_score(candles: pd.DataFrame) -> None:
    assert "signed_volume_z" not in FeatureSpec().columns()  # opt-in: the default feature set is unchanged
    spec = FeatureSpec(groups=("volume_z", "signed_volume"))
    features = compute_features(candles, spec)
    sign = np.sign(candles["close"] - candles["open"]).to_numpy()
    np.testing.assert_allclose(features["signed_volume_z"].to_numpy(), sign * features["volume_z"].to_numpy())
    assert spec.warmups()["signed_volume_z"] == 167 and np.isfinite(features["signed_volume_z"].iloc[167:]).all()
    t = 1500
    perturbed = compute_features(_perturb_after(candles, t, np.random.default_rng(3)), spec)
    pd.testing.assert_frame_equal(perturbed.iloc[: t + 1], features.iloc[: t + 1], check_exact=True)


def test_time_encodings_monday_midnight_utc() -> None:
    monday = int(pd.Timestamp("2024-01-01 00:00", tz="UTC").value // 1_000_000)
    hours = monday + 3_600_000 * np.arange(30)
    frame = pd.DataFrame({"timestamp": hours, "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0})
    feats = compute_features(frame, FeatureSpec(groups=("time",)))
    np.testing.assert_allclose(feats.iloc[0].to_numpy(), [0.0, 1.0, 0.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(feats[["hour_sin", "hour_cos"]].iloc[6], [1.0, 0.0], atol=1e-12)  # 06:00
    np.testing.assert_allclose(feats[["hour_sin", "hour_cos"]].iloc[24], feats[["hour_sin", "hour_cos"]].iloc[0])


def test_spec_json_round_trip_and_validation() -> None:
    spec = FeatureSpec(groups=("rsi", "log_return"), return_horizons=(1, 12), rsi_window=7)
    assert FeatureSpec.from_json(spec.to_json()) == spec
    assert FeatureSpec.from_dict(spec.to_dict()).columns() == ("rsi_7", "log_return_1", "log_return_12")
    with pytest.raises(ConfigError, match="groups"):
        FeatureSpec(groups=("rsi", "nope"))
    with pytest.raises(ConfigError, match="macd_slow"):
        FeatureSpec(macd_fast=26, macd_slow=12)
    with pytest.raises(DataFormatError, match="unknown keys"):
        FeatureSpec.from_dict({"rsi_window": 14, "colour": "red"})


def test_missing_turnover_dropped_or_rejected(candles: pd.DataFrame) -> None:
    no_turnover = candles.drop(columns="turnover").iloc[:400]
    features = compute_features(no_turnover)
    assert "turnover_z" not in features.columns and "volume_z" in features.columns
    with pytest.raises(DataFormatError, match="turnover"):
        compute_features(no_turnover, FeatureSpec(allow_missing_turnover=False))
    with pytest.raises(DataFormatError, match="timestamp"):
        compute_features(no_turnover.drop(columns="timestamp"), FeatureSpec(groups=("time",)))

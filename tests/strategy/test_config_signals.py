"""BacktestConfig validation and the prediction-to-position signals."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from reformer.errors import ConfigError, UserInputError
from reformer.strategy import BacktestConfig, prediction_score, realized_volatility, signals_from_predictions


def test_defaults_match_the_spec() -> None:
    config = BacktestConfig()
    assert (config.initial_capital, config.position_size, config.stop_loss, config.take_profit,
            config.leverage, config.category, config.rebalance_band) == (10_000.0, 0.1, 0.02, 0.04, 1.0, "linear", 0.2)
    assert config.fees == (0.00055, 0.0002)  # Bybit's base tier on perpetuals: taker, maker
    assert BacktestConfig(category="spot").fees == (0.001, 0.001)
    assert BacktestConfig(commission=0.001).fees == (0.001, 0.001)  # both rates equal
    assert BacktestConfig(commission=0.001, maker_fee=0.0).fees == (0.001, 0.0)
    assert config.shorts and not BacktestConfig(category="spot").shorts
    assert config.funding and config.slippage == 0.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.position_size = 0.5


@pytest.mark.parametrize(("field", "value"), [
    ("initial_capital", 0.0), ("initial_capital", float("nan")), ("position_size", 1.5),
    ("position_size", 0.0), ("stop_loss", 1.0), ("stop_loss", -0.01), ("take_profit", -0.1),
    ("take_profit", 1.0), ("commission", 0.2), ("slippage", -0.001), ("allow_short", 1),
    ("short_threshold", 0.01), ("vol_target", 0.0), ("vol_window", 1), ("stop_loss", True),
])
def test_bad_values_name_the_field_and_value(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"BacktestConfig\.{field}={value!r} is invalid: "):
        BacktestConfig(**{field: value})


def test_thresholds_map_to_long_flat_short() -> None:
    predictions = pd.Series([0.02, 0.001, -0.001, -0.02, np.nan])
    config = BacktestConfig(long_threshold=0.005, short_threshold=-0.005)
    assert signals_from_predictions(predictions, config).tolist() == [1.0, 0.0, 0.0, -1.0, 0.0]
    no_shorts = BacktestConfig(long_threshold=0.005, short_threshold=-0.005, allow_short=False)
    assert signals_from_predictions(predictions, no_shorts).tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]


def test_class_probabilities_use_p_up_minus_p_down() -> None:
    probabilities = pd.DataFrame({"p_up": [0.7, 0.4, 0.1], "p_down": [0.1, 0.35, 0.6], "p_flat": 0.0})
    np.testing.assert_allclose(prediction_score(probabilities), [0.6, 0.05, -0.5])
    config = BacktestConfig(long_threshold=0.1, short_threshold=-0.1)
    assert signals_from_predictions(probabilities, config).tolist() == [1.0, 0.0, -1.0]
    with pytest.raises(UserInputError, match="p_up"):
        prediction_score(pd.DataFrame({"a": [1.0]}))


def test_volatility_scaling_caps_at_one_and_is_flat_in_warm_up() -> None:
    predictions = pd.Series([0.01, 0.01, -0.01, 0.01])
    volatility = pd.Series([np.nan, 0.02, 0.04, 0.005])
    config = BacktestConfig(vol_target=0.01)
    np.testing.assert_allclose(signals_from_predictions(predictions, config, volatility), [0.0, 0.5, -0.25, 1.0])
    with pytest.raises(UserInputError, match="volatility is required"):
        signals_from_predictions(predictions, config)


def test_realized_volatility_is_causal() -> None:
    close = pd.Series(100 * np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.01, 60))))
    full = realized_volatility(close, 10)
    cut = realized_volatility(close.iloc[:30], 10)
    pd.testing.assert_series_equal(full.iloc[:30], cut)
    assert full.iloc[:10].isna().all() and full.iloc[10:].notna().all()
    expected = np.log(close).diff().iloc[21:31].std(ddof=1)
    assert full.iloc[30] == pytest.approx(expected)

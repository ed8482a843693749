"""Entry points: `run_backtest` (predictions or a predictor) and `backtest_positions` (target positions).

`run_backtest` accepts a ready prediction Series/DataFrame, or anything that produces one from the klines: an
object with `predict_series(bars) -> Series` (the `PredictionSource` protocol) or a plain callable. A model-based
walk-forward predictor (one trained only on data before each bar) plugs in through that protocol, so this module
never needs torch; making the predictions causal is the predictor's job (`check_lookahead` tests it). A model
itself is walked forward one layer up, by `reformer.run_backtest` (`reformer.pipelines.run_backtest`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import pandas as pd

from ..errors import UserInputError
from ..predictions import Predictions
from .bars import align_mark, align_positions, funding_per_bar, to_bar_frame, to_bar_times
from .config import BacktestConfig
from .engine import simulate
from .instrument import Instrument
from .signals import forecast_volatility, realized_volatility, signals_from_predictions
from .stats import BacktestResult, compute_result

__all__ = ["PredictionSource", "Predictor", "backtest_positions", "resolve_predictions", "run_backtest"]


@runtime_checkable
class PredictionSource(Protocol):
    """Anything that predicts from klines: one prediction per bar, made with data up to that bar's close."""

    def predict_series(self, klines: pd.DataFrame) -> pd.Series | pd.DataFrame:
        """Predicted returns (Series) or class probabilities (DataFrame with p_up/p_down), indexed by bar time."""
        ...


Predictor = PredictionSource | Callable[[pd.DataFrame], pd.Series | pd.DataFrame]
"""A prediction source: a `PredictionSource` object or a callable bars -> predictions."""


def _out_of_sample_only(predictions: Predictions) -> pd.Series | pd.DataFrame:
    """The values of `predictions`, refused when they hold bars their model was fitted on: trading those silently
    is the classic way a backtest flatters a model."""
    first = predictions.first_out_of_sample
    if first is not None and len(predictions.values) and predictions.values.index[0] < first:
        seen = int((predictions.values.index < first).sum())
        raise UserInputError(f"{predictions.source or 'these predictions'}: {seen} of the bars are before the model's "
                             f"out-of-sample period ({first:%Y-%m-%d %H:%M} UTC): pass predictions.out_of_sample() "
                             "(and candles from that bar on), or predictions.values to trade them knowingly")
    return predictions.values


def resolve_predictions(predictions: pd.Series | pd.DataFrame | Predictions | Predictor, bars: pd.DataFrame
                        ) -> pd.Series | pd.DataFrame:
    """Return predictions as a pandas object, calling the predictor on the bar frame when given one.

    Raises:
        UserInputError: `predictions` is neither pandas data, a `PredictionSource` nor a callable, is a model
            (walk one forward with `reformer.run_backtest`), forecasts no return (a volatility model's
            `Predictions`), or the predictor returned something else than a Series/DataFrame.
    """
    if isinstance(predictions, pd.Series | pd.DataFrame):
        return predictions
    if isinstance(predictions, Predictions):
        predictions.require_returns()
        return _out_of_sample_only(predictions)
    if isinstance(predictions, PredictionSource):
        produced: Any = predictions.predict_series(bars)
    elif _looks_like_a_model(predictions):
        raise UserInputError(f"reformer.strategy.run_backtest takes predictions, not a model "
                             f"({type(predictions).__name__}): use reformer.run_backtest (or "
                             "reformer.pipelines.run_backtest) to walk a model forward")
    elif callable(predictions):
        produced = predictions(bars)
    else:
        raise UserInputError(f"predictions of type {type(predictions).__name__} are not supported: pass a Series, "
                             "a DataFrame with p_up/p_down, an object with predict_series(klines), or a callable")
    if not isinstance(produced, pd.Series | pd.DataFrame):
        raise UserInputError(f"the predictor returned {type(produced).__name__}: it must return a pandas Series "
                             "(or a DataFrame with p_up/p_down) indexed by bar time")
    return produced


def run_backtest(predictions: pd.Series | pd.DataFrame | Predictions | Predictor, klines: Any,
                 config: BacktestConfig | None = None, *, funding_rates: pd.Series | None = None,
                 mark: Any = None, instrument: Instrument | None = None,
                 volatility: pd.Series | Predictions | None = None) -> BacktestResult:
    """Backtest predictions: thresholds (and optional volatility scaling) give target positions, which the
    engine fills at the next bar's open.

    Args:
        predictions: predicted returns as a Series indexed by bar time (DatetimeIndex or epoch ms), class
            probabilities as a DataFrame with p_up/p_down, `Predictions` (refused when they hold bars before their
            model's out-of-sample period: pass `.out_of_sample()`), or a `Predictor` called with the bar frame
            (e.g. a `WalkForwardPredictor`). Sparse rows hold until the next row; NaN means flat. Not a model:
            `reformer.run_backtest` (`reformer.pipelines.run_backtest`) walks one forward.
        klines: DataFrame (timestamp in epoch ms or DatetimeIndex; open/high/low/close) or a list of `Kline`.
        config: the backtest configuration; defaults to `BacktestConfig()`.
        funding_rates: perpetual funding rates indexed by funding time, applied when `config.funding` is True.
        mark: mark-price candles (same forms as `klines`; at least the bars' times): liquidation and funding use
            them; None uses the last price.
        instrument: the symbol's tick, quantity step, minimum order and maintenance margin.
        volatility: with `config.vol_target`, the per-bar volatility to size by instead of the trailing
            `realized_volatility(close, config.vol_window)`: a forecast (a Series indexed by bar time, or a volatility
            model's `Predictions`, see `forecast_volatility`). A forecast made at a bar's close sizes that bar's
            target and holds until the next forecast; bars before the first are flat.

    Returns:
        A `BacktestResult`.

    Raises:
        UserInputError: malformed klines, a prediction row whose time is not a bar (the message names it), or a
            model given as `predictions`.
    """
    config = config or BacktestConfig()
    bars = to_bar_frame(klines)
    raw = resolve_predictions(predictions, bars)
    raw = raw.set_axis(to_bar_times(raw.index, "predictions"))
    sizing = None
    if config.vol_target is not None:
        sizing = (realized_volatility(bars["close"], config.vol_window) if volatility is None
                  else _on_bars(volatility, bars.index))
    positions = signals_from_predictions(raw, config, sizing)
    return _run(positions, bars, config, funding_rates, mark, instrument, what="predictions")


def _on_bars(volatility: pd.Series | Predictions, bars: pd.DatetimeIndex) -> pd.Series:
    """A volatility forecast on every bar: each forecast from its own bar until the next one."""
    series = forecast_volatility(volatility) if isinstance(volatility, Predictions) else volatility
    series = series.set_axis(to_bar_times(series.index, "volatility"))
    return series.reindex(bars.union(series.index)).ffill().reindex(bars)


def _looks_like_a_model(obj: object) -> bool:
    """A torch module (duck-typed: torch is never imported here), which a plain callable check would call with
    the bar frame."""
    return callable(getattr(obj, "state_dict", None)) and callable(getattr(obj, "parameters", None))


def backtest_positions(positions: pd.Series, klines: Any, config: BacktestConfig | None = None, *,
                       funding_rates: pd.Series | None = None, mark: Any = None,
                       instrument: Instrument | None = None) -> BacktestResult:
    """Backtest target positions given directly.

    Args:
        positions: target position in [-1, 1] decided at each row's bar close (fraction of
            `config.position_size`; negative = short), indexed by bar time. Sparse: a row holds until the
            next; flat before the first.
        klines: DataFrame (timestamp in epoch ms or DatetimeIndex; open/high/low/close) or a list of `Kline`.
        config: the backtest configuration; defaults to `BacktestConfig()`.
        funding_rates: perpetual funding rates indexed by funding time, applied when `config.funding` is True.
        mark, instrument: as in `run_backtest`.

    Returns:
        A `BacktestResult`.

    Raises:
        UserInputError: a position outside [-1, 1] or missing, or a time that is not a bar; the message names
            the row.
    """
    config = config or BacktestConfig()
    return _run(positions, to_bar_frame(klines), config, funding_rates, mark, instrument, what="positions")


def _run(positions: pd.Series, bars: pd.DataFrame, config: BacktestConfig, funding_rates: pd.Series | None,
         mark: Any, instrument: Instrument | None, what: str) -> BacktestResult:
    targets = align_positions(positions, bars.index, what=what)
    at_open, inside = funding_per_bar(funding_rates if config.funding else None, bars.index)
    simulation = simulate(bars, targets, config, at_open, inside, mark=align_mark(mark, bars),
                          instrument=instrument)
    return compute_result(simulation, bars, config)

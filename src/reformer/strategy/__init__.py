"""The strategy layer: signals, a conservative bar-by-bar backtest engine, statistics, look-ahead check, plots.

Never imports torch: it consumes predictions and positions as pandas objects (or a `PredictionSource`).

    from reformer.strategy import BacktestConfig, run_backtest, backtest_positions
    result = run_backtest(predictions, klines, BacktestConfig(position_size=0.5))
    print(result.summary())
"""

from .backtest import PredictionSource, Predictor, backtest_positions, resolve_predictions, run_backtest
from .bars import align_positions, funding_per_bar, to_bar_frame
from .config import BacktestConfig
from .engine import TRADE_COLUMNS, Market, Run, Simulation, simulate, simulate_markets
from .instrument import Instrument
from .lookahead import LookaheadReport, check_lookahead
from .plots import buy_and_hold_equity, plot_drawdown, plot_equity, plot_trades, save_report
from .portfolio import Leg, PortfolioResult, SymbolResult, backtest_portfolio
from .signals import forecast_volatility, prediction_score, realized_volatility, signals_from_predictions
from .stats import (
    BacktestResult,
    annualized_return,
    compute_result,
    drawdown_series,
    max_drawdown,
    max_drawdown_duration,
    periods_per_year,
    sharpe_ratio,
    simple_returns,
    sortino_ratio,
)

__all__ = [
    "TRADE_COLUMNS",
    "BacktestConfig",
    "BacktestResult",
    "Instrument",
    "Leg",
    "LookaheadReport",
    "Market",
    "PortfolioResult",
    "PredictionSource",
    "Predictor",
    "Run",
    "Simulation",
    "SymbolResult",
    "align_positions",
    "annualized_return",
    "backtest_portfolio",
    "backtest_positions",
    "buy_and_hold_equity",
    "check_lookahead",
    "compute_result",
    "drawdown_series",
    "forecast_volatility",
    "funding_per_bar",
    "max_drawdown",
    "max_drawdown_duration",
    "periods_per_year",
    "plot_drawdown",
    "plot_equity",
    "plot_trades",
    "prediction_score",
    "realized_volatility",
    "resolve_predictions",
    "run_backtest",
    "save_report",
    "sharpe_ratio",
    "signals_from_predictions",
    "simple_returns",
    "simulate",
    "simulate_markets",
    "sortino_ratio",
    "to_bar_frame",
]

"""Backtesting any signal: a 24-hour momentum forecast on hourly candles, with realistic fees.

    python examples/backtesting.py path/to/klines.csv
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from reformer import BacktestConfig, run_backtest
from reformer.data import read_klines_frame
from reformer.errors import run_main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("klines", help="candles: the export format, a Bybit kline CSV or any OHLCV CSV")
    frame = read_klines_frame(parser.parse_args().klines)
    momentum = np.log(frame["close"]).diff(24)  # decided at each bar's close; fills at the next open
    predictions = pd.Series(momentum.to_numpy(), index=frame["timestamp"])  # by bar open time, epoch ms
    config = BacktestConfig(initial_capital=10_000, position_size=0.1, stop_loss=0.02, take_profit=0.04)
    # fees: Bybit's base tier for perpetuals (0.055 % taker, 0.02 % maker on take-profits)
    result = run_backtest(predictions, frame, config)
    print(result.summary())


if __name__ == "__main__":
    run_main(main)  # bad input: one line on stderr, exit 2 (as the CLI)

"""Backtest a checkpoint's predictions on stored klines: next-bar fills, stops, fees, beside buy & hold.

    python examples/backtest.py --checkpoint runs/btc_1h --symbol BTCUSDT --interval 60 --out reports/bt

Only bars no weight of the checkpoint was fitted on are traded: its held-out test split and anything newer (as
`reformer backtest --checkpoint`), so no prediction comes from a model that saw its bar.
"""

from __future__ import annotations

import argparse

import pandas as pd

from reformer import BacktestConfig, run_backtest
from reformer.data import KlineStore, require_series
from reformer.errors import UserInputError, run_main
from reformer.pipelines.crypto import first_unseen_bar, predict_all_predictions
from reformer.strategy import save_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--symbol", default="BTCUSDT")
    parser.add_argument("--interval", default="60")
    parser.add_argument("--category", default="linear")
    parser.add_argument("--db", default=None)
    parser.add_argument("--commission", type=float, default=0.00055, help="Bybit taker fee")
    parser.add_argument("--out", default=None, help="folder for plots, trades.csv, stats.json")
    args = parser.parse_args()
    first, where = first_unseen_bar(args.checkpoint)  # the checkpoint is named before the store is read
    with KlineStore(args.db) as store:
        frame = require_series(store, args.category, args.symbol, args.interval)
    bars = frame[frame["timestamp"] >= first].reset_index(drop=True)
    if len(bars) < 2:
        raise UserInputError(f"no candles {where} (from {pd.to_datetime(first, unit='ms', utc=True):%Y-%m-%d %H:%M} "
                             "UTC): fetch newer ones")
    # every bar's prediction, then only those no weight of the model was fitted on
    predictions = predict_all_predictions(args.checkpoint, frame).out_of_sample()
    result = run_backtest(predictions, bars, BacktestConfig(commission=args.commission))
    print(result.summary())
    if args.out:
        save_report(result, bars, args.out)
        print(f"report: {args.out}")


if __name__ == "__main__":
    run_main(main)  # bad input: one line on stderr, exit 2 (as the CLI)

"""Backtest a checkpoint's predictions on stored klines: next-bar fills, stops, fees, funding and leverage.

    python examples/backtest.py --checkpoint runs/btc_1h --symbol BTCUSDT --interval 60 --out reports/bt

Only bars no weight of the checkpoint was fitted on are traded: its held-out test split and anything newer (as
`reformer backtest --checkpoint`), so no prediction comes from a model that saw its bar.
"""

from __future__ import annotations

import argparse

import pandas as pd

from reformer import BacktestConfig, run_backtest
from reformer.data import DerivativesStore, require_series
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
    parser.add_argument("--leverage", type=float, default=1.0, help="isolated-margin leverage")
    parser.add_argument("--position-size", type=float, default=0.1, help="notional at target 1, x equity")
    parser.add_argument("--out", default=None, help="folder for plots, trades.csv, stats.json")
    args = parser.parse_args()
    first, where = first_unseen_bar(args.checkpoint)  # the checkpoint is named before the store is read
    with DerivativesStore(args.db) as store:  # the candles, and what `reformer fetch --funding --mark` stored
        frame = require_series(store, args.category, args.symbol, args.interval)
        funding = store.load_funding(args.category, args.symbol)
        mark = store.load_mark_frame(args.category, args.symbol, args.interval)
    bars = frame[frame["timestamp"] >= first].reset_index(drop=True)
    if len(bars) < 2:
        raise UserInputError(f"no candles {where} (from {pd.to_datetime(first, unit='ms', utc=True):%Y-%m-%d %H:%M} "
                             "UTC): fetch newer ones")
    # every bar's prediction, then only those no weight of the model was fitted on
    predictions = predict_all_predictions(args.checkpoint, frame).out_of_sample()
    config = BacktestConfig(leverage=args.leverage, position_size=args.position_size, category=args.category)
    covered = bool(len(mark)) and pd.DatetimeIndex(pd.to_datetime(bars["timestamp"], unit="ms", utc=True)).isin(
        mark.index).all()
    # Bybit's base-tier fees; funding and mark prices when the store has them (the mark for every traded bar)
    result = run_backtest(predictions, bars, config, funding_rates=None if funding.empty else funding,
                          mark=mark if covered else None)
    print(result.summary())
    if args.out:
        save_report(result, bars, args.out)
        print(f"report: {args.out}")


if __name__ == "__main__":
    run_main(main)  # bad input: one line on stderr, exit 2 (as the CLI)

"""Predict the forward return from the latest closed candle with a trained checkpoint.

    python examples/predict.py --checkpoint runs/btc_1h --symbol BTCUSDT --interval 60
"""

from __future__ import annotations

import argparse

from reformer.data import KlineStore, require_series
from reformer.data.sync import format_ms
from reformer.errors import run_main
from reformer.pipelines import predict_latest
from reformer.training import resolve_checkpoint_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="run directory or checkpoint")
    parser.add_argument("--symbol", default="BTCUSDT", type=lambda text: text.strip().upper())
    parser.add_argument("--interval", default="60")
    parser.add_argument("--category", default="linear")
    parser.add_argument("--db", default=None)
    args = parser.parse_args()
    checkpoint = resolve_checkpoint_dir(args.checkpoint)  # a missing checkpoint is named before the store
    with KlineStore(args.db) as store:
        frame = require_series(store, args.category, args.symbol, args.interval)
    latest = predict_latest(checkpoint, frame)
    print(f"latest closed candle (open time): {format_ms(latest.timestamp)}")
    print(f"predicted {latest.horizon}-bar log return: {latest.predicted_return:+.5f}")
    print(f"direction: {latest.direction}, confidence {latest.confidence:.2f}")


if __name__ == "__main__":
    run_main(main)  # bad input: one line on stderr, exit 2 (as the CLI)

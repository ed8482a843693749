"""Train a Reformer on stored klines and print its test metrics beside the baselines.

    python examples/train.py --symbol BTCUSDT --interval 60 --epochs 100 --out runs/btc_1h

Reads the store filled by `fetch_data.py` (or --csv). The run directory receives the best checkpoint
(safetensors + JSON), metrics.csv and evaluation.json.
"""

from __future__ import annotations

import argparse
import json

from reformer.configfile import load_config_file
from reformer.data import KlineStore, read_klines_frame, require_series
from reformer.errors import run_main
from reformer.model import ReformerConfig
from reformer.pipelines import train_crypto
from reformer.training import TrainConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbol", default="BTCUSDT")
    parser.add_argument("--interval", default="60")
    parser.add_argument("--category", default="linear")
    parser.add_argument("--db", default=None)
    parser.add_argument("--csv", default=None, help="read candles from a CSV instead of the store")
    parser.add_argument("--config", default=None, help="TOML with [model], [train], [data] (see configs/)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--out", default="runs/example")
    parser.add_argument("--force", action="store_true", help="replace a run already in --out")
    args = parser.parse_args()
    tables = load_config_file(args.config)
    data = tables["data"]
    # the config is checked before any candle is read: a typo is named first
    ReformerConfig.from_dict({**tables["model"], "seq_len": data.get("seq_len", 168)})
    if args.csv:
        frame = read_klines_frame(args.csv)
    else:
        with KlineStore(args.db) as store:
            frame = require_series(store, args.category, args.symbol, args.interval)
    train = TrainConfig.from_dict(tables["train"])
    if args.epochs is not None:
        train = train.replace(epochs=args.epochs)
    report = train_crypto(frame, seq_len=data.get("seq_len", 168), horizon=data.get("horizon", 24),
                          model_overrides=tables["model"], train_config=train, out_dir=args.out,
                          task=data.get("task", "regression"), class_threshold=float(data.get("class_threshold", 0.0)),
                          normalization=data.get("normalization", "train"),
                          source={"symbol": args.symbol, "interval": args.interval, "category": args.category},
                          force=args.force)
    print(json.dumps({"model": report.evaluation["model"], "baselines": report.evaluation["baselines"]}, indent=2))
    print(f"checkpoint: {args.out}")


if __name__ == "__main__":
    run_main(main)  # bad input: one line on stderr, exit 2 (as the CLI)

"""Fetch closed klines from Bybit (V5 REST) into the local SQLite store.

    python examples/fetch_data.py --symbol BTCUSDT --interval 60 --limit 1000

Set BYBIT_BASE_URL to point at another server (e.g. `reformer fake-exchange --csv FILE` for offline use) and
REFORMER_DB (or --db) to choose the store; the default is ~/.reformer/klines.sqlite.
"""

from __future__ import annotations

import argparse

from reformer.data.store import KlineStore
from reformer.data.sync import parse_time_ms, sync_klines_blocking
from reformer.errors import run_main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbol", default="BTCUSDT")
    parser.add_argument("--interval", default="60", help="Bybit interval: 1 3 5 15 30 60 120 240 360 720 D W")
    parser.add_argument("--limit", type=int, default=None, help="the latest N closed candles")
    parser.add_argument("--start", default=None, help="ISO-8601 or epoch ms")
    parser.add_argument("--end", default=None, help="ISO-8601 or epoch ms")
    parser.add_argument("--category", default="linear")
    parser.add_argument("--db", default=None)
    args = parser.parse_args()
    start = parse_time_ms(args.start) if args.start else None
    end = parse_time_ms(args.end) if args.end else None
    with KlineStore(args.db) as store:
        report = sync_klines_blocking(args.symbol, args.interval, store=store, category=args.category,
                                      limit=args.limit, start=start, end=end)
    print(report.summary())


if __name__ == "__main__":
    run_main(main)  # a ReformerError: one line on stderr, exit 2 (as the CLI)

"""`reformer backtest --symbols A,B,...`: a portfolio of the store's series traded from one equity.

    reformer backtest --symbols BTCUSDT,ETHUSDT --positions targets.csv --leverage 3 --position-size 1

`targets.csv` holds `timestamp,symbol,position` rows (epoch ms, a symbol of `--symbols`, a target in [-1, 1]);
each symbol's candles, funding, mark candles and first risk tier come from the store, as for one symbol.
`reformer.strategy.backtest_portfolio` runs them; the report is the account's statistics and each symbol's share.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..errors import DataFormatError, UserInputError

if TYPE_CHECKING:
    from ..strategy import BacktestResult, SymbolResult
    from .backtest import BacktestOptions

__all__ = ["PortfolioRun", "portfolio_run", "read_portfolio_positions"]

_COLUMNS = ("timestamp", "symbol", "position")


@dataclass(frozen=True)
class PortfolioRun:
    """What `portfolio_run` did: the account's result, each symbol's share, and the fees and funding counted."""

    result: BacktestResult
    symbols: dict[str, SymbolResult]
    costs: dict[str, object]

    @property
    def extra(self) -> dict[str, object]:
        """The JSON output's per-symbol record and costs."""
        shares = {name: {key: value for key, value in dataclasses.asdict(share).items()
                         if key not in ("trades", "positions")} for name, share in self.symbols.items()}
        return {"symbols": shares, **self.costs}


def read_portfolio_positions(path: Path, symbols: list[str]) -> dict[str, pd.Series]:
    """The target positions of each symbol in `path` (`timestamp,symbol,position`), by bar time.

    Raises:
        DataFormatError: missing columns or a timestamp that is not epoch milliseconds.
        UserInputError: a symbol of the file not in `symbols`, or one of `symbols` without rows.
    """
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]}); give timestamp,symbol,"
                              "position rows") from None
    table.columns = [str(c).strip().lower() for c in table.columns]
    if any(column not in table.columns for column in _COLUMNS):
        raise DataFormatError(f"{path}: columns {list(table.columns)}; a portfolio's positions need a header "
                              "timestamp,symbol,position (epoch ms, the symbol, a target in [-1, 1])")
    times = pd.to_numeric(table["timestamp"], errors="coerce")
    if times.isna().any() or (times % 1 != 0).any():
        row = int(times.isna().to_numpy().argmax()) if times.isna().any() else 0
        raise DataFormatError(f"{path} line {row + 2}: timestamp {table['timestamp'].iloc[row]!r} is not epoch "
                              "milliseconds")
    table["symbol"] = table["symbol"].astype(str).str.strip().str.upper()
    unknown = sorted(set(table["symbol"]) - set(symbols))
    if unknown:
        raise UserInputError(f"{path} holds positions for {', '.join(unknown)}, which --symbols does not name: add "
                             "them to --symbols, or drop their rows")
    index = pd.DatetimeIndex(pd.to_datetime(times.astype("int64"), unit="ms", utc=True))
    out = {}
    for symbol in symbols:
        rows = (table["symbol"] == symbol).to_numpy()
        if not rows.any():
            raise UserInputError(f"{path} has no position for {symbol}: give it rows, or leave it out of --symbols")
        out[symbol] = pd.Series(table["position"].to_numpy()[rows], index=index[rows], name="position")
    return out


def portfolio_run(options: BacktestOptions, *, say: Callable[[str], None] | None = None) -> PortfolioRun:
    """Backtest `options.symbols` (comma-separated) from the store on one equity with `options.positions`.

    Raises:
        UserInputError: --csv, --predictions, --checkpoint, --funding-csv or --mark-csv with --symbols (each symbol
            reads its own series from the store), no --positions, or anything one symbol's backtest refuses.
    """
    from ..api.intervals import parse_interval
    from ..data import require_series
    from ..data.stored import existing_store
    from ..data.sync import parse_time_ms
    from ..strategy import Leg, backtest_portfolio
    from .backtest_inputs import bar_times, cost_record, stored_market, within_range

    assert options.symbols is not None
    symbols = [s.strip().upper() for s in options.symbols.split(",") if s.strip()]
    single_only = [flag for flag, value in (("--csv", options.csv), ("--predictions", options.predictions),
                                            ("--checkpoint", options.checkpoint),
                                            ("--funding-csv", options.funding_csv), ("--mark-csv", options.mark_csv))
                   if value is not None]
    if single_only:
        raise UserInputError(f"{single_only[0]} is for one symbol: with --symbols every symbol reads its candles, "
                             "funding and mark candles from the store; give --positions with a symbol column")
    if options.positions is None or len(set(symbols)) != len(symbols) or not symbols:
        raise UserInputError("--symbols A,B,... needs distinct symbols and --positions FILE with timestamp,symbol,"
                             "position rows")
    targets = read_portfolio_positions(options.positions, symbols)
    interval = parse_interval(options.interval)
    first = None if options.start is None else parse_time_ms(options.start, "--start")
    last = None if options.end is None else parse_time_ms(options.end, "--end")
    legs: dict[str, Any] = {}
    notes: dict[str, dict[str, object]] = {}
    with existing_store(options.db, options.category, symbols[0], interval, alternative="fetch it first") as store:
        frames = {symbol: require_series(store, options.category, symbol, interval, alternative="fetch it first")
                  for symbol in symbols}
    for symbol, frame in frames.items():
        if first is not None:
            frame = frame[frame["timestamp"] >= first]
        if last is not None:
            frame = frame[frame["timestamp"] <= last]
        frame = frame.reset_index(drop=True)
        if len(frame) < 2:
            raise UserInputError(f"{symbol}: fewer than 2 candles in the chosen range: widen --start/--end")
        market = None
        rules = options.instrument
        if options.config.category != "spot":
            market = stored_market(options.db, options.category, symbol, interval, frame)
            for note in market.notes:
                (say or (lambda line: None))(note)
            if rules is not None and rules.maintenance_margin_rate is None:
                rules = dataclasses.replace(rules, maintenance_margin_rate=market.maintenance_margin_rate)
        positions = within_range(targets[symbol], bar_times(frame), first is not None, last is not None)
        legs[symbol] = Leg(frame, positions=positions, funding_rates=None if market is None else market.funding,
                           mark=None if market is None else market.mark, instrument=rules)
        notes[symbol] = cost_record(options.config, None, None if market is None else market.funding, frame)
    report = backtest_portfolio(legs, options.config)
    first_costs = next(iter(notes.values()))
    return PortfolioRun(report.result, report.symbols, {"fee_rates": first_costs["fee_rates"],
                                                        "funding_by_symbol": notes})

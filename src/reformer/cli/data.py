"""Market data commands: `fetch`, `stream`, `import`, `export` (`fake-exchange` is in `cli/fake.py`).

Thin wrappers over `reformer.data.sync`, `reformer.data.derivatives_sync`, `reformer.data.store`,
`reformer.data.csv_io` and `reformer.api`.
Every error (bad input, unknown symbol, malformed file, unreachable exchange) reaches `reformer.cli.main` as a
`ReformerError` and becomes one line on stderr with exit code 2 (numbers are range-checked here rather than by
typer, whose usage errors print several lines); Ctrl-C stops `stream` cleanly (exit 0) and
interrupts the other commands with exit code 130. Input is checked and the exchange consulted before the store
is opened, so a failing command leaves the database as it was (pages committed before a mid-fetch failure stay:
each is complete, and the next fetch asks only for the rest).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ..api import BybitClient, BybitStream, Kline, interval_ms, parse_interval
from ..data.derivatives_store import DerivativesStore
from ..data.derivatives_sync import DerivativesReport, require_perpetual, sync_derivatives_blocking
from ..data.store import DEFAULT_DB_PATH, ConflictingCandlesError, KlineStore
from ..data.sync import ProgressCallback, SyncReport, format_ms, parse_time_ms, sync_klines_blocking
from ..errors import ExchangeUnavailableError, UserInputError
from .common import DEFAULT_SYMBOL, DbOpt, ForceOpt, SymbolOpt, check_candle_times, check_out, exchange_url

# the CSV readers and writers, and the bar arithmetic, import pandas and numpy: imported by the commands that use
# them, so that `reformer --help`, `fetch` and `stream` start without them
if TYPE_CHECKING:
    import pandas as pd

__all__ = ["register"]

IntervalOpt = Annotated[str, typer.Option("--interval", help="Bybit interval: 1,3,5,15,30,60,120,240,360,720,D,W "
                                                            "(or 1m/1h/4h/1d/1w).")]
CategoryOpt = Annotated[str, typer.Option("--category", help="Market: linear, inverse or spot.")]
BaseUrlOpt = Annotated[str | None, typer.Option("--base-url", help="REST root. Default: $BYBIT_BASE_URL, else "
                                                                   "https://api.bybit.com.")]
RetriesOpt = Annotated[int, typer.Option("--retries", help="Retries per request on transient failures (>= 0).")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", help="Seconds per HTTP attempt (> 0).")]


def fetch(
    interval: IntervalOpt,
    symbol: SymbolOpt = DEFAULT_SYMBOL,
    limit: Annotated[int | None, typer.Option(help="The latest N closed candles (or N from --start).")] = None,
    start: Annotated[str | None, typer.Option(help="First candle open time: ISO-8601 or epoch ms.")] = None,
    end: Annotated[str | None, typer.Option(help="Last candle open time: ISO-8601 or epoch ms.")] = None,
    category: CategoryOpt = "linear",
    base_url: BaseUrlOpt = None,
    db: DbOpt = None,
    retries: RetriesOpt = 8,
    timeout: TimeoutOpt = 10.0,
    funding: Annotated[bool, typer.Option("--funding", help="Also fetch the funding settled over the candles' range "
                                          "and the risk-limit tiers (linear/inverse only).")] = False,
    mark: Annotated[bool, typer.Option("--mark", help="Also fetch mark-price candles of the same interval and range, "
                                       "and the risk-limit tiers (linear/inverse only).")] = False,
) -> None:
    """Fetch closed candles the store lacks (only those), committing each page as it arrives.

    With neither --limit nor --start/--end: bring the stored series up to date (or the latest 1000).
    """
    if retries < 0 or timeout <= 0:
        raise UserInputError(f"--retries {retries} / --timeout {timeout}: use retries >= 0 and a timeout > 0 s")
    if (funding or mark) and category == "spot":
        raise UserInputError("--funding/--mark: spot markets have no funding or mark price; use --category linear "
                             "or inverse, or drop the flag")
    start_ms = parse_time_ms(start, "--start") if start is not None else None
    end_ms = parse_time_ms(end, "--end") if end is not None else None
    console = _console()
    extra: DerivativesReport | None = None
    with _progress_bar(console, f"{symbol} {interval}") as progress:
        try:
            report = sync_klines_blocking(symbol, interval, store=db, base_url=base_url, category=category,
                                          limit=limit, start=start_ms, end=end_ms, progress=progress,
                                          max_retries=retries, timeout=timeout)
            if funding or mark:
                extra = sync_derivatives_blocking(report.symbol, report.interval, start=report.start, end=report.end,
                                                  store=db, base_url=base_url, category=category, funding=funding,
                                                  mark=mark, progress=progress, max_retries=retries, timeout=timeout)
        except ExchangeUnavailableError as exc:
            raise _unavailable(exc, base_url, retries) from None
    _print_report(console, report)
    if extra is not None:
        _print_derivatives(console, extra)


_EXPORTS = {"klines": "candles", "funding": "funding rates", "mark": "mark-price candles"}


def export(
    out: Annotated[Path, typer.Option("--out", help="Target file: .csv or .parquet (written atomically).")],
    interval: Annotated[str | None, typer.Option("--interval", help="Bybit interval of the candles (60, 240, D or "
                                                 "1h/4h/1d); not needed for --what funding.")] = None,
    symbol: SymbolOpt = DEFAULT_SYMBOL,
    category: CategoryOpt = "linear",
    db: DbOpt = None,
    force: ForceOpt = False,
    what: Annotated[str, typer.Option("--what", help="klines: timestamp,open,high,low,close,volume,turnover; "
                                      "funding: timestamp,funding_rate; mark: timestamp,open,high,low,close "
                                      "(mark prices).")] = "klines",
) -> None:
    """Write one stored series (epoch ms, ascending): candles, or a perpetual's funding rates or mark-price
    candles (--what)."""
    if what not in _EXPORTS:
        raise UserInputError(f"--what {what!r} is not a stored series: use klines, funding or mark")
    if interval is None and what != "funding":
        raise UserInputError(f"--what {what} needs --interval, e.g. --interval 60")
    code = parse_interval(interval) if interval is not None else "60"
    if what != "klines":
        require_perpetual(category)
    check_out(out, force)
    flag = "" if what == "klines" else f" --{what}"
    how = f"reformer fetch --symbol {symbol} --interval {code} --category {category} --limit 1000{flag}"
    path = _db_path(db)
    if not path.is_file():
        raise UserInputError(f"no kline store at {path}; fetch candles first: {how} --db {path}")
    data = _stored_series(path, what, category, symbol, code)
    if data.empty:
        series = f"{symbol} {category}" if what == "funding" else f"{symbol} {code} {category}"
        raise UserInputError(f"{path} holds no {series} {_EXPORTS[what]}; fetch them first: {how} --db {path}")
    from ..bars import times_to_ms
    from ..data.csv_io import write_funding, write_klines, write_mark_klines

    writer = {"klines": write_klines, "funding": write_funding, "mark": write_mark_klines}[what]
    count = writer(data, out)
    times = data["timestamp"].to_numpy() if what == "klines" else times_to_ms(data.index)
    _console().print(f"wrote {count} {_EXPORTS[what]} ({format_ms(int(times[0]))} .. {format_ms(int(times[-1]))}) "
                     f"to {out}")


def _stored_series(path: Path, what: str, category: str, symbol: str, code: str) -> pd.DataFrame | pd.Series:
    """The whole stored series `export --what` names: candles from the kline store as before (opened as a
    `KlineStore`, so exporting them never adds tables), the perpetuals' series from a `DerivativesStore`."""
    if what == "klines":
        with KlineStore(path) as store:
            return store.load_frame(category, symbol, code)
    with DerivativesStore(path) as derivatives:
        if what == "funding":
            return derivatives.load_funding(category, symbol)
        return derivatives.load_mark_frame(category, symbol, code)


def import_(
    csv: Annotated[Path, typer.Option("--csv", help="Candles in CSV or Parquet: the export format (`reformer "
                                                    "export`), Bybit's kline CSV (with its timestamp_string "
                                                    "column), or any OHLCV file with a time column (timestamp, "
                                                    "time, date, ...: epoch s/ms or ISO-8601) and open, high, low, "
                                                    "close, volume.")],
    interval: IntervalOpt,
    symbol: SymbolOpt = DEFAULT_SYMBOL,
    category: CategoryOpt = "linear",
    db: DbOpt = None,
    replace: Annotated[bool, typer.Option("--replace", help="Overwrite stored candles that hold other values "
                                          "(without it, such an import stores nothing).")] = False,
) -> None:
    """Store the candles of a CSV (or Parquet) file, all in one transaction; report rows added and gaps."""
    code = parse_interval(interval)
    step = interval_ms(code)
    from ..data.csv_io import NotCandlesError, read_klines

    try:
        klines = read_klines(csv)  # the whole file is checked before the store is touched
    except NotCandlesError as exc:  # an exported funding or mark-price file, say
        raise NotCandlesError(f"{exc}; import stores candles only (funding rates and mark prices come from "
                              "`reformer fetch --funding --mark`)") from None
    check_candle_times(csv, klines, code, interval)
    first, last = klines[0].start_time, klines[-1].start_time
    with KlineStore(db) as store:
        try:
            inserted = store.insert(category, symbol, code, klines, replace=replace)
        except ConflictingCandlesError as exc:
            raise UserInputError(f"{csv}: {exc.count} of its candles are stored in {store.path} with other values "
                                 f"(the first opens {format_ms(exc.first_start)}); nothing was imported: pass "
                                 "--replace to overwrite them") from None
        gaps = store.gaps(category, symbol, code, step, start=first, end=last)
        path = store.path
    console = _console()
    replaced = f", {inserted.replaced} replaced" if replace else ""
    console.print(f"imported {csv}: {len(klines)} {symbol} {code} {category} candles ({format_ms(first)} .. "
                  f"{format_ms(last)}), +{inserted.added} new{replaced}, into {path}")
    _print_gaps(console, gaps, step, "between the imported candles")


def stream(
    interval: IntervalOpt,
    symbol: SymbolOpt = DEFAULT_SYMBOL,
    category: CategoryOpt = "linear",
    db: DbOpt = None,
    base_url: BaseUrlOpt = None,
    ws_url: Annotated[str | None, typer.Option(help="WebSocket root. Default: $BYBIT_WS_URL, else "
                                                    "wss://stream.bybit.com/v5/public.")] = None,
    max_candles: Annotated[int | None, typer.Option(help="Stop after this many closed candles.")] = None,
) -> None:
    """Print and store each closed candle as it arrives (WebSocket, REST back-fill after drops); Ctrl-C stops.

    Starts with the candles that closed after the last stored one (REST), so a restart leaves no hole."""
    code = parse_interval(interval)
    step = interval_ms(code)  # refuses "M" before connecting
    if max_candles is not None and max_candles < 1:
        raise UserInputError(f"--max-candles {max_candles}: use 1 or more, or leave it out to stream until Ctrl-C")
    console = _console()
    received = 0

    async def run() -> None:
        nonlocal received
        async with BybitClient(base_url, ws_url=ws_url) as client:
            try:
                info = await client.get_instrument_info(symbol, category)  # unknown symbol: before the store
            except ExchangeUnavailableError as exc:
                raise _unavailable(exc, base_url, client.max_retries) from None
            with KlineStore(db) as store:
                store.check_writable()
                stored = store.coverage(category, info.symbol, code)
                # The stream back-fills from `since` through REST, as after a dropped link: the candles that
                # closed while no stream ran are stored first.
                since = stored.last_start + step if stored is not None else None
                resume = f" from {format_ms(since)}, after the last stored candle" if since is not None else ""
                console.print(f"streaming {info.symbol} {code} {category} into {store.path}{resume} (Ctrl-C stops)")
                candles = cast(AsyncGenerator[Kline, None], aiter(BybitStream(
                    info.symbol, code, category, client=client, since=since,
                    on_gap=lambda first, last: _warn_gap(info.symbol, code, category, step, first, last))))
                async with contextlib.aclosing(candles):
                    async for kline in candles:
                        # replace: the exchange's candles are the reference, as for `fetch`
                        new = store.upsert(category, info.symbol, code, [kline], replace=True)  # committed at once
                        received += 1
                        console.print(_candle_line(kline, new > 0))
                        if max_candles is not None and received >= max_candles:
                            break

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        console.print(f"stopped after {received} closed candle(s)")
        return
    console.print(f"done: {received} closed candle(s)")


def _warn_gap(symbol: str, code: str, category: str, step: int, first: int, last: int) -> None:
    """One line on stderr for candles the exchange has none of: the store keeps that hole, visibly."""
    print(f"warning: the exchange has no {symbol} {code} {category} candles from {format_ms(first)} to "
          f"{format_ms(last)} ({(last - first) // step + 1} missing); the store keeps that gap", file=sys.stderr,
          flush=True)


def register(app: typer.Typer) -> None:
    """Add the data commands to the `reformer` app."""
    app.command("fetch")(fetch)
    app.command("stream")(stream)
    app.command("import")(import_)
    app.command("export")(export)


# ---- presentation --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _progress_bar(console: Console, label: str) -> Iterator[ProgressCallback]:
    """A rich progress bar (only on a terminal) and the callback that drives it."""
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("eta"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _print_report(console: Console, report: SyncReport) -> None:
    where = "of mark-price candles in the requested range" if report.label == "mark" else "in the requested range"
    _print_gaps(console, list(report.gaps), report.interval_ms, where)
    console.print(report.summary())


def _print_derivatives(console: Console, report: DerivativesReport, shown: int = 10) -> None:
    """Mark candles as the candles (gaps table, summary), funding's irregular stretches as warnings on stderr."""
    if report.mark is not None:
        _print_report(console, report.mark)
    if report.funding is not None:
        warnings = report.funding.warnings()
        for line in warnings[:shown]:
            print(line, file=sys.stderr, flush=True)
        if len(warnings) > shown:
            print(f"warning: and {len(warnings) - shown} more irregular funding stretches", file=sys.stderr)
        console.print(report.funding.summary())
    console.print(report.risk_limits.summary())


def _print_gaps(console: Console, gaps: list[tuple[int, int]], step: int, where: str, shown: int = 10) -> None:
    if not gaps:
        return
    table = Table(title=f"{len(gaps)} gap(s) {where} (reported, not filled)")
    for name in ("first missing", "last missing", "candles"):
        table.add_column(name, justify="right")
    for first, last in gaps[:shown]:
        table.add_row(format_ms(first), format_ms(last), str((last - first) // step + 1))
    if len(gaps) > shown:
        table.add_row("...", "...", f"+{len(gaps) - shown} more gaps")
    console.print(table)


def _candle_line(kline: Kline, new: bool) -> str:
    return (f"{format_ms(kline.start_time)}  O {kline.open:g}  H {kline.high:g}  L {kline.low:g}  "
            f"C {kline.close:g}  V {kline.volume:g}  {'stored' if new else 'already stored'}")


def _unavailable(exc: ExchangeUnavailableError, base_url: str | None, retries: int) -> ExchangeUnavailableError:
    """The client's error, reworded for the command line: where, why, and which option to change."""
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    return ExchangeUnavailableError(
        f"the exchange at {exchange_url(base_url)} gave no usable answer in {retries + 1} attempt(s) (last: "
        f"{cause}); check --base-url / BYBIT_BASE_URL and the network, or try again later with more --retries",
        code=exc.code, http_status=exc.http_status)


def _console() -> Console:
    # soft_wrap: a closing line stays one line in logs and pipes (rich wraps at 80 columns there); no markup:
    # paths and symbols are printed as they are.
    return Console(soft_wrap=True, highlight=False, markup=False)


def _db_path(db: Path | None) -> Path:
    """The store file a command will use (as `KlineStore` resolves it)."""
    return Path(db if db is not None else os.environ.get("REFORMER_DB") or DEFAULT_DB_PATH).expanduser()

"""What every command shares: the options spelled the same way everywhere (--symbol, --db, --interval, --category,
--config, --json, --start, --end, --protocol), the checks behind them, the exchange's address for messages, and the
help layout.

`App` is the `typer.Typer` of the command line: its help leaves the value column of a flag empty (typer shows a
`<bool>` type for flags such as `--json`, which take no value).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from ..errors import DataFormatError, UserInputError
from ..pipelines.series import PROTOCOL_HELP, check_protocol

if TYPE_CHECKING:
    from ..api import Kline

__all__ = ["DEFAULT_SYMBOL", "PROTOCOL_HELP", "App", "CategoryOpt", "ConfigOpt", "DbOpt", "EndOpt", "IntervalOpt",
           "JsonOpt", "StartOpt", "SymbolOpt", "check_candle_times", "check_protocol", "exchange_url",
           "normalise_symbol", "symbol_option"]

DEFAULT_SYMBOL = "BTCUSDT"


def normalise_symbol(symbol: str) -> str:
    """An instrument as the exchange and the store spell it: " btcusdt" -> "BTCUSDT"."""
    cleaned = symbol.strip().upper()
    if not cleaned:
        raise UserInputError(f"--symbol is empty: give an instrument such as {DEFAULT_SYMBOL}")
    return cleaned


def symbol_option(help: str = "Instrument, e.g. BTCUSDT (any case).") -> Any:
    """The `--symbol` option: normalised by `normalise_symbol` before the command sees it."""
    return typer.Option("--symbol", help=help, callback=normalise_symbol)


SymbolOpt = Annotated[str, symbol_option()]
_DB_HELP = "Kline store (SQLite). Default: $REFORMER_DB, else ~/.reformer/klines.sqlite."
DbOpt = Annotated[Path | None, typer.Option("--db", help=_DB_HELP)]
IntervalOpt = Annotated[str, typer.Option("--interval", help="Bybit interval of the stored candles (60, 240, D) or "
                                                             "1h/4h/1d.")]
CategoryOpt = Annotated[str, typer.Option("--category", help="Bybit category of the stored series: linear, inverse "
                                                             "or spot.")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help=r"TOML with \[model], \[train], \[data] tables.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print exactly one JSON object, the result, on stdout.")]
StartOpt = Annotated[str | None, typer.Option("--start", help="First bar (ISO-8601 or epoch ms).")]
EndOpt = Annotated[str | None, typer.Option("--end", help="Last bar (ISO-8601 or epoch ms).")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace an existing --out file (never a symbolic link).")]


def check_candle_times(csv: Path, klines: Sequence[Kline], code: str, interval: str) -> None:
    """Refuse candles of a file that are not `code` candles: an open time off the interval's grid, or candles
    mostly another interval apart (hourly candles given as 15: stored or served, every two would read as a gap).

    Raises:
        DataFormatError: naming the first such time, or the interval the file holds.
    """
    from ..api import interval_ms
    from ..api.intervals import INTERVAL_MS
    from ..data.sync import format_ms
    from ..data.windows import bar_step

    step = interval_ms(code)
    offset = 4 * 86_400_000 if code == "W" else 0  # weekly candles open on Mondays
    bad = next((k.start_time for k in klines if (k.start_time - offset) % step), None)
    if bad is not None:
        raise DataFormatError(f"{csv}: timestamp {bad} ({format_ms(bad)}) is not the open time of a {code} "
                              f"candle; is --interval {interval} right for this file?")
    times = [k.start_time for k in klines]
    usual = bar_step(times)
    if len(times) >= 3 and usual != step:
        named = next((name for name, length in INTERVAL_MS.items() if length == usual), None)
        fix = f"--interval {named}" if named else "the interval the file was sampled at"
        raise DataFormatError(f"{csv}: its candles are mostly {usual // 60_000} minutes apart, not {code} "
                              f"({step // 60_000} minutes); pass {fix}")


def check_out(out: Path | None, force: bool) -> None:
    """Refuse an --out file before the work that would fill it: one that exists (unless `force`) or any link."""
    from ..files import check_output_file

    if out is not None:
        check_output_file(out, force)


def write_output(out: Path, text: str) -> None:
    """Write a result file atomically (its path checked by `files.check_output_file` before the work began)."""
    from ..files import atomic_write_text

    atomic_write_text(out, text)


def exchange_url(base_url: str | None) -> str:
    """The REST root a client built with `base_url` talks to, for messages."""
    from ..api.client import rest_root

    return rest_root(base_url)


def _flags_without_type(params: list[Any]) -> list[Any]:
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""  # the help's type column stays empty for a flag
    return params


class _Command(TyperCommand):
    def get_params(self, ctx: Any) -> list[Any]:
        return _flags_without_type(super().get_params(ctx))


class _Group(TyperGroup):
    def get_params(self, ctx: Any) -> list[Any]:
        return _flags_without_type(super().get_params(ctx))


class App(typer.Typer):
    """`typer.Typer` whose groups and commands show flags without a value type in their help."""

    def __init__(self, **settings: Any) -> None:
        super().__init__(cls=_Group, **settings)

    def command(self, *args: Any, **settings: Any) -> Any:
        settings.setdefault("cls", _Command)
        return super().command(*args, **settings)

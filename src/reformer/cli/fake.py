"""`reformer fake-exchange`: a local Bybit V5 (REST + WebSocket) over a CSV or the synthetic market, run as a live
market: its clock replays the candles from `--start` at `--speed` times real time and stops at the data's end;
`--fault-rate` and `--drop-every` make it misbehave as the real one can.

A thin wrapper over `reformer.api.run_fake_exchange`; the candles are read here, through the data layer (the api
layer never reads files). Bad flags end with one line on stderr and exit code 2 (`reformer.cli.main`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from ..api import FaultPlan, Kline, interval_ms, parse_interval, run_fake_exchange
from ..data.sync import parse_time_ms
from ..errors import UserInputError
from .common import DEFAULT_SYMBOL, check_candle_times, symbol_option

__all__ = ["register"]

CategoryOpt = Annotated[str, typer.Option("--category", help="Market: linear, inverse or spot.")]


def fake_exchange(
    csv: Annotated[Path | None, typer.Option("--csv", help="Serve these candles: the export format or any file "
                                                           "`reformer import` reads.")] = None,
    synthetic: Annotated[bool, typer.Option("--synthetic", help="Serve the demo's synthetic market instead (a "
                                                                "signal planted 150 bars before its effect), "
                                                                "ending at the current bar.")] = False,
    bars: Annotated[int, typer.Option(help="With --synthetic: number of candles.")] = 20_000,
    seed: Annotated[int, typer.Option(help="With --synthetic: the market's seed (same seed, same prices).")] = 0,
    port: Annotated[int, typer.Option(help="REST port (0: a free one).")] = 0,
    host: Annotated[str, typer.Option(help="Interface to bind; the fake has no authentication.")] = "127.0.0.1",
    ws_port: Annotated[int, typer.Option(help="WebSocket port (0: a free one).")] = 0,
    symbol: Annotated[str, symbol_option("Instrument the candles are served as.")] = DEFAULT_SYMBOL,
    symbols: Annotated[str | None, typer.Option(help="With --synthetic: several symbols (e.g. BTCUSDT,ETHUSDT) "
                                                "whose returns share a market factor.")] = None,
    interval: Annotated[str, typer.Option(help="Interval the candles are served as.")] = "60",
    category: CategoryOpt = "linear",
    start: Annotated[str | None, typer.Option(help="Where the market's clock starts: ISO-8601 or epoch ms, within "
                                              "the data. Default: its newest candle's open plus 1 s.")] = None,
    speed: Annotated[float, typer.Option(help="The clock runs this many times real time (3600: an hour candle "
                                         "closes every second; 0: the clock stands still).")] = 1.0,
    fault_rate: Annotated[float, typer.Option(help="Fraction of REST requests answered with a fault a client "
                                              "should retry (rate limits, 5xx, cut or slow answers), 0 to 1.")] = 0.0,
    drop_every: Annotated[float | None, typer.Option(help="Cut every WebSocket connection every this many seconds "
                                                     "of wall time (clients must reconnect and back-fill).")] = None,
) -> None:
    """Serve a CSV (or a synthetic market) as a live local Bybit V5 (REST + WebSocket) until Ctrl-C: the clock
    replays the candles from --start at --speed and stops at the data's end. Prints BYBIT_BASE_URL / BYBIT_WS_URL
    and the clock."""
    code = parse_interval(interval)
    for name, value in (("--port", port), ("--ws-port", ws_port)):
        if not 0 <= value <= 65535:
            raise UserInputError(f"{name} {value} is not a port; use 0 (any free one) to 65535")
    _check_pace(speed, fault_rate, drop_every)
    if (csv is None) == (not synthetic):
        raise UserInputError("give either --csv FILE or --synthetic (the demo's market), not both or neither")
    source = _candles(csv, bars, seed, code)
    more = None
    if symbols is not None:
        if not synthetic:
            raise UserInputError("--symbols serves correlated synthetic symbols: use it with --synthetic")
        served = _correlated_until_now([s.strip().upper() for s in symbols.split(",") if s.strip()], bars, seed,
                                       interval_ms(code))
        symbol, source = next(iter(served.items()))
        more = dict(list(served.items())[1:])
    start_ms = parse_time_ms(start, "--start") if start is not None else None
    faults = FaultPlan(rate=fault_rate) if fault_rate > 0 else None
    try:
        run_fake_exchange(source, port, host, ws_port=ws_port, symbol=symbol, category=category, interval=code,
                          start_ms=start_ms, speed=speed, faults=faults, drop_every_s=drop_every, more=more)
    except OSError as exc:  # port taken, address not local
        raise UserInputError(f"cannot serve on {host}:{port} ({exc.strerror or exc}); pick another --port "
                             "(0 = any free one) or --host") from None


def _check_pace(speed: float, fault_rate: float, drop_every: float | None) -> None:
    if not (math.isfinite(speed) and speed >= 0):
        raise UserInputError(f"--speed {speed}: use 0 (a still clock) or more, e.g. 3600 for an hour a second")
    if not 0 <= fault_rate <= 1:
        raise UserInputError(f"--fault-rate {fault_rate} is not a fraction: use 0 (no faults) to 1 (every request)")
    if drop_every is not None and not (math.isfinite(drop_every) and drop_every > 0):
        raise UserInputError(f"--drop-every {drop_every}: use a period > 0 seconds, or leave it out")


def _candles(csv: Path | None, bars: int, seed: int, code: str) -> list[Kline]:
    if csv is not None:
        from ..data.csv_io import read_klines  # pandas: only when a file is served
        from ..textio import check_csv_file

        check_csv_file(csv, "export one with `reformer export --out FILE.csv`")
        klines = read_klines(csv)  # the api layer serves candles; reading files is the data layer's
        check_candle_times(csv, klines, code, code)  # served as another interval, a fetch would store them so
        return klines
    if bars < 1:
        raise UserInputError(f"--bars {bars} must be at least 1")
    return _synthetic_until_now(bars, seed, interval_ms(code))


def _synthetic_until_now(n_bars: int, seed: int, step_ms: int) -> list[Kline]:
    """The demo's market with its newest candle open now (still forming, as on the exchange), so a fetch of the
    latest candles finds recent dates."""
    import dataclasses
    import time

    from ..data.synthetic import synthetic_klines
    from ..demo import planted_signal_recipe

    last_open = int(time.time() * 1000) // step_ms * step_ms
    market = dataclasses.replace(planted_signal_recipe(n_bars=n_bars, seed=seed).market, interval_ms=step_ms,
                                 start_time=last_open - (n_bars - 1) * step_ms)
    return synthetic_klines(market)


def _correlated_until_now(symbols: list[str], n_bars: int, seed: int, step_ms: int) -> dict[str, list[Kline]]:
    """`_synthetic_until_now`'s market for several symbols whose returns share a factor (`correlated_frames`)."""
    import dataclasses
    import time

    from ..data.synthetic import correlated_frames
    from ..demo import planted_signal_recipe

    if len(symbols) < 2:
        raise UserInputError(f"--symbols {','.join(symbols)}: name two or more symbols, or use --symbol for one")
    last_open = int(time.time() * 1000) // step_ms * step_ms
    market = dataclasses.replace(planted_signal_recipe(n_bars=n_bars, seed=seed).market, interval_ms=step_ms,
                                 start_time=last_open - (n_bars - 1) * step_ms)
    columns = ["timestamp", "open", "high", "low", "close", "volume", "turnover"]
    return {name: [Kline(int(row[0]), *map(float, row[1:])) for row in frame[columns].itertuples(index=False)]
            for name, frame in correlated_frames(symbols, market).items()}


def register(app: typer.Typer) -> None:
    """Add `fake-exchange` to the `reformer` app."""
    app.command("fake-exchange")(fake_exchange)

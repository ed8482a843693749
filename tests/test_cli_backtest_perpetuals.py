"""`reformer backtest` on perpetuals, end to end on hand-made candles: leverage and liquidation, funding rates at
the mark or the last price, taker and maker fees, inverse contracts, the instrument's rules, and what the report
says when no funding was given."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC, epoch ms
HOUR = 3_600_000
NO_STOPS = ("--stop-loss", "0", "--take-profit", "0")


def _candles(path: Path, rows: list[tuple[float, float, float, float]], volume: bool = True) -> Path:
    """Hourly candles from T0, one (open, high, low, close) per row."""
    frame = pd.DataFrame(rows, columns=["open", "high", "low", "close"])
    frame.insert(0, "timestamp", [T0 + i * HOUR for i in range(len(rows))])
    if volume:
        frame["volume"] = 1.0
    frame.to_csv(path, index=False)
    return path


def _long_from_the_first_close(tmp_path: Path) -> Path:
    """Target +1 decided at bar 0's close: the long fills at bar 1's open and is held."""
    path = tmp_path / "pos.csv"
    path.write_text(f"timestamp,position\n{T0},1\n")
    return path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reformer.cli", "backtest", *args], capture_output=True,
                          text=True, check=False)


def _stats(*args: str) -> dict[str, object]:
    proc = _run(*args, "--json")
    assert proc.returncode == 0, proc.stderr
    stats: dict[str, object] = json.loads(proc.stdout)
    return stats


def _one_line_error(proc: subprocess.CompletedProcess[str], words: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert words in proc.stderr and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr


FALLING = [(100, 101, 99, 100), (100, 100, 95, 96), (96, 96, 88, 90), (90, 90, 79, 80), (80, 82, 78, 79)]


def test_a_5x_long_into_a_falling_market_is_liquidated_and_loses_its_initial_margin(tmp_path: Path) -> None:
    klines = _candles(tmp_path / "k.csv", FALLING)
    out = tmp_path / "report"
    stats = _stats("--csv", str(klines), "--positions", str(_long_from_the_first_close(tmp_path)),
                   "--leverage", "5", "--maintenance-margin-rate", "0.005", "--taker-fee", "0.00055",
                   "--maker-fee", "0.0002", "--category", "linear", "--position-size", "1", *NO_STOPS,
                   "--out", str(out))
    # 1x equity of notional at the open of 100: 100 units; initial margin = 10,000 / 5 = 2,000; the liquidation
    # level 100 · (1 - 1/5 + 0.005) = 80.5 lies inside bar 3 (low 79), not bar 2 (low 88)
    capital, notional, leverage, taker = 10_000.0, 10_000.0, 5.0, 0.00055
    initial_margin, entry_fee = notional / leverage, taker * notional
    assert stats["n_liquidations"] == 1 and stats["n_trades"] == 1 and stats["n_open_trades"] == 0
    assert (capital - entry_fee) - stats["final_equity"] == pytest.approx(initial_margin, rel=1e-12)
    # the liquidation's own taker fee is paid out of the margin lost, not on top of it
    assert stats["total_fees"] == pytest.approx(entry_fee + taker * 100 * 80.5, rel=1e-12)
    assert stats["total_funding"] == 0 and stats["funding"] == "none given"
    trades = pd.read_csv(out / "trades.csv")
    assert trades["exit_reason"].tolist() == ["liquidation"] and trades["symbol"].tolist() == ["BTCUSDT"]
    assert pd.Timestamp(trades["exit_time"].iloc[0]) == pd.Timestamp(T0 + 3 * HOUR, unit="ms", tz="UTC")
    assert trades["pnl"].iloc[0] == pytest.approx(-(initial_margin + entry_fee), rel=1e-12)
    assert json.loads((out / "stats.json").read_text())["n_liquidations"] == 1


RISING = [(100, 101, 99, 100), (100, 102, 99, 101), (102, 103, 101, 102), (103, 104, 102, 103), (104, 105, 103, 104),
          (105, 106, 104, 105)]
MARK = [(100.5, 101, 99, 100), (100.5, 102, 99, 101), (102.5, 103, 101, 102), (103.5, 104, 102, 103),
        (103.5, 105, 103, 104.5), (105.5, 106, 104, 105)]


@pytest.mark.parametrize("with_mark", [False, True])
def test_funding_rates_are_paid_on_the_units_held_at_the_mark_or_the_last_price(tmp_path: Path,
                                                                                 with_mark: bool) -> None:
    klines = _candles(tmp_path / "k.csv", RISING)
    funding = tmp_path / "funding.csv"
    rows = [(T0 - 8 * HOUR, 0.01),  # before the first bar: ignored
            (T0 + 2 * HOUR, 0.0001),  # bar 2's open: on the position carried into it, at the open
            (T0 + 4 * HOUR, -0.0002),  # bar 4's open: a negative rate pays the long
            (T0 + 4 * HOUR + HOUR // 2, 0.0003),  # inside bar 4: on the position at its close, at the close
            (T0 + 6 * HOUR, 0.01)]  # the end of the last bar: ignored
    funding.write_text("timestamp,funding_rate\n" + "".join(f"{t},{rate}\n" for t, rate in rows))
    mark = ("--mark-csv", str(_candles(tmp_path / "mark.csv", MARK, volume=False))) if with_mark else ()
    stats = _stats("--csv", str(klines), "--positions", str(_long_from_the_first_close(tmp_path)),
                   "--funding-csv", str(funding), *mark, "--position-size", "1", "--commission", "0", *NO_STOPS)
    units = 10_000.0 / 100.0  # all equity long at bar 1's open of 100
    prices = MARK if with_mark else RISING
    expected = units * (0.0001 * prices[2][0] - 0.0002 * prices[4][0] + 0.0003 * prices[4][3])
    assert stats["total_funding"] == pytest.approx(expected, rel=1e-12)
    assert stats["funding"] == "applied" and stats["funding_settlements"] == 3
    assert stats["final_equity"] == pytest.approx(10_000.0 + units * (105 - 100) - expected, rel=1e-12)


TAKE_PROFIT = [(100, 101, 99, 100), (100, 103, 99, 102), (102, 105, 101, 104), (104, 105, 103, 104)]


@pytest.mark.parametrize(("fees", "expected"), [
    ((), 0.00055 * 10_000 + 0.0002 * 100 * 104),  # the default: Bybit's base tier, taker and maker
    (("--taker-fee", "0.0006", "--maker-fee", "0.0001"), 0.0006 * 10_000 + 0.0001 * 100 * 104),
    (("--commission", "0.001"), 0.001 * 10_000 + 0.001 * 100 * 104),  # both rates
    (("--commission", "0.001", "--maker-fee", "0"), 0.001 * 10_000),  # a rate of its own wins
    (("--category", "spot"), 0.001 * 10_000 + 0.001 * 100 * 104),  # spot's base tier
])
def test_taker_and_maker_fees_of_an_entry_and_a_take_profit(tmp_path: Path, fees: tuple[str, ...],
                                                            expected: float) -> None:
    # the long enters at bar 1's open (100, a market order: taker) and its target 104 is traded through in bar 2
    # (high 105): a resting limit order, maker
    klines = _candles(tmp_path / "k.csv", TAKE_PROFIT)
    out = tmp_path / "report"
    stats = _stats("--csv", str(klines), "--positions", str(_long_from_the_first_close(tmp_path)),
                   "--position-size", "1", "--stop-loss", "0", "--take-profit", "0.04", *fees, "--out", str(out))
    assert stats["total_fees"] == pytest.approx(expected, rel=1e-12)
    assert pd.read_csv(out / "trades.csv")["exit_reason"].tolist() == ["take_profit"]


def test_an_inverse_contract_counts_money_in_the_coin_and_reports_the_usd_return(tmp_path: Path) -> None:
    rows = [(100, 101, 99, 100), (100, 104, 99, 104), (104, 111, 103, 110)]
    klines = _candles(tmp_path / "k.csv", rows)
    args = ("--csv", str(klines), "--positions", str(_long_from_the_first_close(tmp_path)), "--category", "inverse",
            "--initial-capital", "1", "--position-size", "1", "--commission", "0", *NO_STOPS)
    stats = _stats(*args)
    # 1 coin of notional at 100 is 100 contracts (USD); long, they earn 100 · (1/100 - 1/110) coin by the close 110
    final = 1.0 + 100 * (1 / 100 - 1 / 110)
    assert stats["settle_currency"] == "coin" and stats["final_equity"] == pytest.approx(final, rel=1e-12)
    assert stats["total_return"] == pytest.approx(final - 1.0, rel=1e-12)
    assert stats["total_return_usd"] == pytest.approx(final * 110 / 100 - 1.0, rel=1e-12)  # 20 %
    table = _run(*args)
    assert table.returncode == 0, table.stderr
    shown = " ".join(table.stdout.split())
    assert "total_return_usd" in shown and "20.00 %" in shown and "money in the coin" in shown


def test_spot_with_funding_rates_is_refused_in_one_line(tmp_path: Path) -> None:
    klines = _candles(tmp_path / "k.csv", RISING)
    funding = tmp_path / "funding.csv"
    funding.write_text(f"timestamp,funding_rate\n{T0 + 2 * HOUR},0.0001\n")
    proc = _run("--csv", str(klines), "--positions", str(_long_from_the_first_close(tmp_path)), "--category", "spot",
                "--funding-csv", str(funding))
    _one_line_error(proc, "spot has no funding")
    assert "--category linear" in proc.stderr


def test_a_perpetual_without_funding_rates_says_so(tmp_path: Path) -> None:
    klines = _candles(tmp_path / "k.csv", RISING)
    args = ("--csv", str(klines), "--positions", str(_long_from_the_first_close(tmp_path)), "--category", "linear")
    out = tmp_path / "report"
    stats = _stats(*args, "--out", str(out))
    assert stats["funding"] == "none given" and "funding_settlements" not in stats
    assert json.loads((out / "stats.json").read_text())["funding"] == "none given"
    table = _run(*args)
    assert table.returncode == 0, table.stderr
    assert "no funding rates given: funding is not counted" in " ".join(table.stdout.split())
    spot = _stats(*args[:-1], "spot")  # spot has no funding to miss
    assert "funding" not in spot and spot["fee_rates"] == {"taker": 0.001, "maker": 0.001}
    funding = tmp_path / "funding.csv"
    funding.write_text(f"timestamp,funding_rate\n{T0 + 2 * HOUR},0.0001\n")
    off = _stats(*args, "--funding-csv", str(funding), "--no-funding")
    assert off["funding"] == "off (--no-funding)" and off["total_funding"] == 0


def test_funding_and_mark_files_are_checked_in_one_line(tmp_path: Path) -> None:
    klines = _candles(tmp_path / "k.csv", RISING)
    base = ("--csv", str(klines), "--positions", str(_long_from_the_first_close(tmp_path)))
    bybit = tmp_path / "bybit.csv"
    bybit.write_text(f"fundingRateTimestamp,fundingRate\n{T0},0.0001\n")
    _one_line_error(_run(*base, "--funding-csv", str(bybit)), "expected a header timestamp,funding_rate")
    older = tmp_path / "older.csv"  # the header the funding files had before: still read
    older.write_text(f"time,rate\n{T0 + 2 * HOUR},0.0001\n")
    assert _stats(*base, "--funding-csv", str(older))["funding_settlements"] == 1
    short = _candles(tmp_path / "mark.csv", MARK[:4], volume=False)
    _one_line_error(_run(*base, "--mark-csv", str(short)), "has no mark candle at 2024-01-01 04:00 UTC (2 of the 6")
    bad = tmp_path / "bad_mark.csv"
    bad.write_text(f"timestamp,open,high,low,close\n{T0},100,99,101,100\n")
    _one_line_error(_run(*base, "--mark-csv", str(bad)), "line 2: high 99.0 is below low 101.0")


def test_instrument_rules_and_out_of_range_values_are_named_by_their_flags(tmp_path: Path) -> None:
    klines = _candles(tmp_path / "k.csv", RISING)
    base = ("--csv", str(klines), "--positions", str(_long_from_the_first_close(tmp_path)), "--position-size", "1")
    skipped = _stats(*base, "--min-qty", "1000", "--qty-step", "0.001", "--tick-size", "0.1")  # 100 units < 1000
    assert skipped["n_skipped_orders"] == 1 and skipped["n_trades"] == 0 and skipped["total_fees"] == 0
    rounded = _stats(*base, "--qty-step", "30", "--commission", "0", *NO_STOPS)  # 100 units round down to 90
    assert rounded["final_equity"] == pytest.approx(10_000 + 90 * (105 - 100), rel=1e-12)
    _one_line_error(_run(*base, "--category", "spot", "--leverage", "2"), "--leverage 2.0 is invalid")
    _one_line_error(_run(*base, "--position-size", "3", "--leverage", "2"), "--position-size 3.0 is invalid")
    _one_line_error(_run(*base, "--qty-step", "-1"), "--qty-step -1.0 is invalid")


def test_help_names_the_perpetual_flags() -> None:
    proc = subprocess.run([sys.executable, "-m", "reformer.cli", "backtest", "--help"], capture_output=True,
                          text=True, check=False, env={**os.environ, "COLUMNS": "250"})
    shown = " ".join(proc.stdout.replace("│", " ").split())
    for flag in ("--leverage", "--maintenance-margin-rate", "--taker-fee", "--maker-fee", "--commission",
                 "--funding-csv", "--mark-csv", "--no-funding", "--rebalance-band", "--borrow-rate", "--tick-size",
                 "--qty-step", "--min-qty", "--no-allow-short"):
        assert flag in shown, flag
    assert "a multiple of equity, up to --leverage" in shown


def test_the_options_category_is_the_configs() -> None:
    from reformer.errors import ConfigError
    from reformer.pipelines import BacktestOptions
    from reformer.strategy import BacktestConfig

    with pytest.raises(ConfigError, match=r"build the config with BacktestConfig\(category='inverse'\)"):
        BacktestOptions(category="inverse")
    flags = {"category": "inverse", "symbol": "BTCUSD", "leverage": 3.0, "tick_size": 0.5}
    options = BacktestOptions.from_flags(flags)
    assert options.config == BacktestConfig(category="inverse", leverage=3.0)
    assert options.instrument is not None and (options.instrument.symbol, options.instrument.tick_size) == ("BTCUSD",
                                                                                                           0.5)

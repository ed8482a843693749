"""`reformer trade --paper` as a process: `kill -9` anywhere (inside a candle's transaction too) and a restart
leave the state of an uninterrupted run; two symbols on one equity equal the portfolio backtest; bad input is one
line and exit code 2; `reformer trade report` gives the backtest's statistics."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reformer.api import FakeExchange, Kline
from reformer.cli import main
from reformer.trade.report import paper_report
from reformer.trade.state import PaperState

from .paper_helpers import KEY, SYMBOL, state_tables

FLAGS = ("--leverage", "3", "--position-size", "2", "--stop-loss", "0.01", "--take-profit", "0.02")


def command(fake: FakeExchange, checkpoint: Path, state: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "reformer.cli", "trade", "--paper", "--checkpoint", str(checkpoint), "--state",
            str(state), "--base-url", fake.base_url, "--catch-up", *FLAGS, *extra]


def run(args: list[str], crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **({"REFORMER_TRADE_CRASH_AT": crash_at} if crash_at else {})}
    return subprocess.run(args, capture_output=True, text=True, timeout=600, env=env)


def test_kill_9_anywhere_then_a_restart_equals_an_uninterrupted_run(market: list[Kline], checkpoint: Path,
                                                                    tmp_path: Path) -> None:
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    with FakeExchange({KEY: market}, now_ms=market[1000].start_time) as fake:
        for state in (whole, killed):
            assert run(command(fake, checkpoint, state)).returncode == 0  # the warm-up
        fake.set_now(market[1080].start_time)
        assert run(command(fake, checkpoint, whole)).returncode == 0
        # inside a candle's transaction: after its candle rows, after the engine's step and snapshot
        for point in ("3:candles", "11:engine", "20:candles"):
            assert run(command(fake, checkpoint, killed), crash_at=point).returncode == -signal.SIGKILL
        rng = random.Random(7)
        for _ in range(2):  # and wherever the process happens to be
            process = subprocess.Popen(command(fake, checkpoint, killed), stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(4.0, 9.0))
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=60)
        finished = run(command(fake, checkpoint, killed))
        assert finished.returncode == 0, finished.stderr
    for mine, theirs in zip(state_tables(killed), state_tables(whole), strict=True):
        assert mine == theirs if isinstance(mine, dict) else mine.equals(theirs)


def test_two_symbols_on_one_equity_equal_the_portfolio_backtest(market: list[Kline], checkpoint: Path,
                                                                 tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    other = [k._replace(open=k.open * 0.05, high=k.high * 0.05, low=k.low * 0.05, close=k.close * 0.05,
                        volume=k.volume * 3) for k in market]
    state = tmp_path / "state"
    series = {KEY: market, ("linear", "ETHUSDT", "60"): other}
    with FakeExchange(series, now_ms=market[1000].start_time) as fake:
        assert main([*command(fake, checkpoint, state, "--symbols", f"{SYMBOL},ETHUSDT")[3:]]) == 0
        fake.set_now(market[1100].start_time)
        assert main([*command(fake, checkpoint, state, "--symbols", f"{SYMBOL},ETHUSDT")[3:]]) == 0
    report = paper_report(state)  # itself checks the recorded equity against the recomputation, to 1e-9
    assert report.steps == 100 and report.result.n_trades >= 2
    capsys.readouterr()
    assert main(["trade", "report", "--state", str(state), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["symbols"] == [SYMBOL, "ETHUSDT"] and stats["final_equity"] == pytest.approx(
        report.result.final_equity)
    with PaperState(state) as paper:  # both symbols traded from the one equity
        shares = {s: paper.trades().query("symbol == @s") for s in (SYMBOL, "ETHUSDT")}
    assert all(len(trades) for trades in shares.values())


def test_bad_input_is_one_line_and_exit_code_2(market: list[Kline], checkpoint: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    with FakeExchange({KEY: market}, now_ms=market[1000].start_time) as fake:
        base = command(fake, checkpoint, state)[3:]
        cases = [
            ([a for a in base if a != "--paper"], "only trades on paper: pass --paper"),
            ([*base[:-len(FLAGS)], "--interval", "240", *FLAGS], "trained on interval 60 candles"),
            ([*base, "--leverage", "500"], "--leverage 500.0 is invalid"),
            (["trade", "report", "--state", str(tmp_path / "none")], "holds no paper-trading state"),
        ]
        for args, message in cases:
            assert main(args) == 2, args
            err = capsys.readouterr().err.strip()
            assert message in err and "\n" not in err, err
        assert not (state / "state.sqlite").exists()  # refused before anything was written

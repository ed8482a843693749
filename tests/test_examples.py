"""The examples run as users run them: subprocesses against the local fake exchange on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from reformer.api import Kline
from reformer.api.fake import FakeExchange
from reformer.data import write_klines
from reformer.data.sync import format_ms
from reformer.data.synthetic import SyntheticMarketConfig, synthetic_klines

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def _run(script: str, *args: str, env: dict[str, str]) -> str:
    proc = subprocess.run([sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=600, check=False)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def market() -> Iterator[tuple[FakeExchange, list]]:
    klines = synthetic_klines(SyntheticMarketConfig(n_bars=1400, seed=2))
    # the exchange's clock starts at bar 1100: later candles "arrive" when the test advances it
    with FakeExchange({("linear", "BTCUSDT", "60"): klines}, now_ms=klines[1100].start_time + 1) as fake:
        yield fake, klines


def test_fetch_train_predict_backtest(market: tuple[FakeExchange, list], tmp_path: Path) -> None:
    fake, klines = market
    env = {**os.environ, "BYBIT_BASE_URL": fake.base_url, "REFORMER_DB": str(tmp_path / "klines.sqlite"),
           "OMP_NUM_THREADS": "1"}
    out = _run("fetch_data.py", "--symbol", "BTCUSDT", "--interval", "60", "--limit", "1000", env=env)
    assert "1000" in out  # rows added
    run = tmp_path / "run"
    out = _run("train.py", "--config", str(ROOT / "configs" / "tiny.toml"), "--out", str(run), env=env)
    assert '"baselines"' in out and (run / "evaluation.json").exists()
    # in the README's order, before any newer candle exists: the held-out test split is traded
    out = _run("backtest.py", "--checkpoint", str(run), env=env)
    assert "total_return" in out
    fake.set_now(klines[-1].start_time + 1)  # 300 new hours
    _run("fetch_data.py", "--symbol", "BTCUSDT", "--interval", "60", "--limit", "1400", env=env)
    out = _run("predict.py", "--checkpoint", str(run), env=env)
    assert f"latest closed candle (open time): {format_ms(klines[-2].start_time)}" in out  # the last one is open
    out = _run("backtest.py", "--checkpoint", str(run), "--out", str(tmp_path / "bt"), env=env)
    assert "total_return" in out and (tmp_path / "bt" / "stats.json").exists()


def test_snippets(synthetic_year: list[Kline], tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    assert "layer 0 attention" in _run("basic_usage.py", env=env)
    csv = tmp_path / "candles.csv"
    write_klines(synthetic_year[-3000:], csv)
    out = _run("backtesting.py", str(csv), env=env)
    assert "sharpe_ratio" in out and "buy_and_hold_return" in out


def test_one_year_hourly_configuration() -> None:
    """The seq_len=8760 snippet: builds and runs a forward pass at batch 1 (minutes on a loaded 2-core CPU)."""
    out = _run("long_sequence.py", env={**os.environ})
    assert "L = 8760" in out and "(1, 1)" in out


def test_examples_fail_with_one_line_on_bad_input(market: tuple[FakeExchange, list], tmp_path: Path) -> None:
    fake, _ = market
    env = {**os.environ, "BYBIT_BASE_URL": fake.base_url, "REFORMER_DB": str(tmp_path / "klines.sqlite"),
           "OMP_NUM_THREADS": "1"}
    bad_config = tmp_path / "bad.toml"
    bad_config.write_text("[model]\nd_model = -3\n")
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    for script, args, words in [
        ("fetch_data.py", ("--symbol", "NOPEUSDT", "--interval", "60", "--limit", "10"), "NOPEUSDT"),
        ("fetch_data.py", ("--symbol", "BTCUSDT", "--interval", "7", "--limit", "10"), "interval"),
        ("fetch_data.py", ("--limit", "10", "--db", str(a_file / "k.sqlite")), "check the path"),
        ("predict.py", ("--checkpoint", str(tmp_path / "nowhere")), "nowhere"),
        # an empty store is named with the fetch that fills it (was "no candles given")
        ("train.py", ("--config", str(ROOT / "configs" / "tiny.toml")), "holds no linear BTCUSDT 60 candles"),
        ("train.py", ("--csv", str(ROOT / "README.md")), "README.md"),
        ("train.py", ("--config", str(bad_config)), "d_model=-3"),  # a config ValueError: was a traceback
        ("backtesting.py", (str(tmp_path / "missing.csv"),), "no such file"),
    ]:
        proc = subprocess.run([sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True,
                              env=env, cwd=ROOT, timeout=600, check=False)
        assert proc.returncode == 2, (script, args, proc.stderr)
        assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1 and words in proc.stderr, (
            script, proc.stderr)
        assert "Traceback" not in proc.stderr

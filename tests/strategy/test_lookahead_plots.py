"""The look-ahead check, the report files, and the strategy layer's independence from torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from reformer.strategy import BacktestConfig, backtest_positions, check_lookahead, save_report

N = 150
_rng = np.random.default_rng(0)
_close = 100 * np.exp(np.cumsum(_rng.normal(0, 0.01, N)))
BARS = pd.DataFrame({"open": np.r_[100.0, _close[:-1]], "close": _close},
                    index=pd.date_range("2024-01-01", periods=N, freq="h", tz="UTC"))
BARS["high"] = BARS[["open", "close"]].max(axis=1) * 1.003
BARS["low"] = BARS[["open", "close"]].min(axis=1) * 0.997


def causal_momentum(bars: pd.DataFrame) -> pd.Series:
    return np.sign(bars["close"].pct_change(5)).fillna(0.0)


def peeking(bars: pd.DataFrame) -> pd.Series:
    return np.sign(bars["close"].shift(-1) - bars["close"]).fillna(0.0)  # next bar's close: a leak


def whole_frame_scaled(bars: pd.DataFrame) -> pd.Series:
    close = bars["close"]
    return (close - close.min()) / (close.max() - close.min())  # statistics over the whole frame: a leak


def test_a_causal_signal_passes() -> None:
    report = check_lookahead(causal_momentum, BARS, n_samples=10)
    assert report.n_checked == 10 and not report.has_lookahead
    assert "no look-ahead" in str(report)


def test_shift_minus_one_and_whole_frame_scaling_are_caught() -> None:
    for leaky in (peeking, whole_frame_scaled):
        report = check_lookahead(leaky, BARS, n_samples=10)
        assert report.has_lookahead, leaky.__name__
        assert set(report.differences["cut_at"]) <= set(report.cut_times)
        assert report.biased_times and "look-ahead" in str(report)


def test_save_report_writes_plots_csv_and_json(tmp_path: Path) -> None:
    result = backtest_positions(causal_momentum(BARS), BARS, BacktestConfig(position_size=0.5))
    paths = save_report(result, BARS, tmp_path / "report")
    for name in ("equity.png", "drawdown.png", "trades.png", "trades.csv", "stats.json"):
        assert (tmp_path / "report" / name).stat().st_size > 0
    assert paths["stats"].name == "stats.json"
    stats = json.loads(paths["stats"].read_text())
    assert stats["n_trades"] == result.n_trades
    trades = pd.read_csv(paths["trades"])
    assert len(trades) == len(result.trades) and "exit_reason" in trades.columns
    assert paths["equity"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_strategy_layer_does_not_import_torch() -> None:
    # load reformer.strategy without the package root (whose __init__ exposes the model) and forbid torch
    src = Path(__file__).resolve().parents[2] / "src" / "reformer"
    code = f"""
import sys, types, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is forbidden in reformer.strategy")
        return None
sys.meta_path.insert(0, Block())
root = types.ModuleType("reformer"); root.__path__ = [{str(src)!r}]
sys.modules["reformer"] = root
import pandas as pd
from reformer.strategy import BacktestConfig, backtest_positions
bars = pd.DataFrame({{"open": [1.0, 1.0, 2.0], "high": [1.0, 2.0, 2.0], "low": [1.0, 1.0, 2.0],
                      "close": [1.0, 2.0, 2.0]}}, index=pd.date_range("2024", periods=3, freq="h"))
backtest_positions(pd.Series([1.0], index=bars.index[:1]), bars, BacktestConfig())
assert "torch" not in sys.modules
"""
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr

"""`reformer demo`, shrunk: the whole offline pipeline runs and writes its report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reformer.demo import run_demo


def test_demo_pipeline_writes_the_report(tmp_path: Path) -> None:
    result = run_demo(tmp_path / "report", n_bars=1500, seq_len=64, epochs=1, say=lambda _: None)
    assert result.rows_fetched == 1499  # the last candle is still open on the fake exchange
    assert result.kline_requests <= 3
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert set(summary["evaluation"]["baselines"]) == {"zero", "momentum", "ridge"}
    assert summary["latest_prediction"]["direction"] in {"up", "down", "flat"}
    for name in ("attention.png", "backtest/equity.png", "backtest/stats.json", "run/evaluation.json"):
        assert (tmp_path / "report" / name).stat().st_size > 0, name


def test_a_second_demo_into_the_same_folder_is_refused_unless_forced(tmp_path: Path) -> None:
    from reformer.demo import _clear_earlier_report
    from reformer.errors import UserInputError

    (tmp_path / "run").mkdir()
    (tmp_path / "summary.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserInputError, match=r"earlier demo's report.*--force"):
        run_demo(tmp_path, say=lambda _: None)  # refused before any work: nothing is fetched or trained
    assert (tmp_path / "summary.json").read_text() == "{}"
    _clear_earlier_report(tmp_path, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # only the demo's own entries go

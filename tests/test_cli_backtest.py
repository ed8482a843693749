"""`reformer backtest` end to end on synthetic candles: positions and predictions files, reports, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reformer.api import Kline
from reformer.cli import main
from reformer.data import write_klines


@pytest.fixture(scope="module")
def klines_csv(synthetic_year: list[Kline], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1,500 synthetic hourly candles (what is tested is the command, not the market) in the export format."""
    path = tmp_path_factory.mktemp("k") / "klines.csv"
    write_klines(synthetic_year[-1500:], path)
    return path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reformer.cli", "backtest", *args], capture_output=True,
                          text=True, check=False)


def test_positions_json_and_report(klines_csv: Path, tmp_path: Path) -> None:
    bars = pd.read_csv(klines_csv)["timestamp"]
    positions = pd.DataFrame({"timestamp": bars.iloc[10::100], "position": np.resize([1.0, -1.0, 0.0], 15)})
    pos_csv = tmp_path / "pos.csv"
    positions.to_csv(pos_csv, index=False)
    out = tmp_path / "report"
    proc = _run("--csv", str(klines_csv), "--positions", str(pos_csv), "--json", "--out", str(out),
                "--commission", "0.00055", "--stop-loss", "0")
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(proc.stdout)
    assert stats["n_trades"] >= 9 and stats["config"]["commission"] == 0.00055
    assert stats["total_fees"] > 0
    for name in ("equity.png", "drawdown.png", "trades.png", "trades.csv", "stats.json"):
        assert (out / name).stat().st_size > 0, name


def test_predictions_file_matches_the_python_api(klines_csv: Path, tmp_path: Path) -> None:
    from reformer.strategy import BacktestConfig, run_backtest

    frame = pd.read_csv(klines_csv)
    momentum = np.log(frame["close"]).diff(24).fillna(0.0)
    preds = pd.DataFrame({"timestamp": frame["timestamp"], "prediction": momentum})
    preds_csv = tmp_path / "preds.csv"
    preds.to_csv(preds_csv, index=False)
    out = tmp_path / "stats.json"
    assert main(["backtest", "--csv", str(klines_csv), "--predictions", str(preds_csv), "--out", str(tmp_path)]) == 0
    expected = run_backtest(pd.Series(momentum.to_numpy(), index=pd.to_datetime(frame["timestamp"], unit="ms",
                                                                                   utc=True)), frame,
                            BacktestConfig(commission=0.00055))  # the command's default fee: Bybit's taker fee
    assert json.loads(out.read_text())["total_return"] == pytest.approx(expected.total_return, rel=1e-12)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("timestamp,position\n{t},1.5\n", "line 2: position 1.5 is outside [-1, 1]"),
        ("timestamp,position\n{t},1\n{t1},x\n", "line 3: position"),
        ("timestamp,position\n{t_off},1\n", "line 2: timestamp"),
        ("time,pos\n{t},1\n", "missing column"),
        # a bad time after a good epoch-ms row is named by its own line, not by the good one's
        ("timestamp,position\n{t},1\n2024-13-45T99:00:00Z,0\n", "line 3: timestamp '2024-13-45T99:00:00Z'"),
        ("timestamp,position\n{t},1\nnotatime,0\n", "line 3: timestamp 'notatime'"),
        # a repeated time by its file line (was "positions row 1"), an empty cell as empty (was np.float64(nan))
        ("timestamp,position\n{t},1\n{t},0\n", "line 3: timestamp"),
        ("timestamp,position\n{t},1\n{t1},\n", "line 3: position empty is not a finite number"),
    ],
)
def test_bad_positions_name_the_row(klines_csv: Path, tmp_path: Path, rows: str, message: str) -> None:
    bars = pd.read_csv(klines_csv)["timestamp"]
    pos_csv = tmp_path / "pos.csv"
    pos_csv.write_text(rows.format(t=bars.iloc[5], t1=bars.iloc[6], t_off=bars.iloc[5] + 1))
    proc = _run("--csv", str(klines_csv), "--positions", str(pos_csv))
    assert proc.returncode == 2
    assert message in proc.stderr and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_needs_exactly_one_source(klines_csv: Path) -> None:
    proc = _run("--csv", str(klines_csv))
    assert proc.returncode == 2 and "exactly one of" in proc.stderr


def test_funding_csv_is_applied_and_bad_rows_are_named(klines_csv: Path, tmp_path: Path) -> None:
    bars = pd.read_csv(klines_csv)["timestamp"]
    pos_csv = tmp_path / "pos.csv"
    pd.DataFrame({"timestamp": [bars.iloc[10]], "position": [1.0]}).to_csv(pos_csv, index=False)  # long, held
    settlements = bars[bars % (8 * 3_600_000) == 0].iloc[2:]  # every 8 h, after the position opened
    funding_csv = tmp_path / "funding.csv"
    pd.DataFrame({"time": settlements, "rate": 0.0001}).to_csv(funding_csv, index=False)
    with_funding = _run("--csv", str(klines_csv), "--positions", str(pos_csv), "--funding-csv", str(funding_csv),
                        "--json")
    without = _run("--csv", str(klines_csv), "--positions", str(pos_csv), "--json")
    assert with_funding.returncode == 0 and without.returncode == 0, with_funding.stderr + without.stderr
    paid, free = json.loads(with_funding.stdout), json.loads(without.stdout)
    assert free["total_funding"] == 0 and paid["total_funding"] > 0  # a long pays a positive rate
    assert paid["final_equity"] < free["final_equity"]

    bad = tmp_path / "bad_funding.csv"
    bad.write_text(f"time,rate\n{settlements.iloc[0]},0.0001\n{settlements.iloc[1]},oops\n")
    proc = _run("--csv", str(klines_csv), "--positions", str(pos_csv), "--funding-csv", str(bad))
    assert proc.returncode == 2 and "line 3: rate 'oops'" in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    wrong = tmp_path / "wrong_header.csv"
    wrong.write_text("fundingRateTimestamp,fundingRate\n1,0.0001\n")
    proc = _run("--csv", str(klines_csv), "--positions", str(pos_csv), "--funding-csv", str(wrong))
    assert proc.returncode == 2 and "missing column" in proc.stderr and "Traceback" not in proc.stderr


def test_a_missing_checkpoint_is_named_first(tmp_path: Path) -> None:
    bad_klines = tmp_path / "bad.csv"
    bad_klines.write_text("a,b\n1,2\n")
    proc = _run("--csv", str(bad_klines), "--checkpoint", str(tmp_path / "nowhere"))
    assert proc.returncode == 2 and "nowhere does not exist" in proc.stderr and "Traceback" not in proc.stderr


def test_positions_outside_start_end_carry_in_or_drop_like_predictions(klines_csv: Path, tmp_path: Path) -> None:
    # a position set before --start holds into the range (it fills at the range's second open); rows after --end
    # are dropped; before, the first row was refused as "not a bar of the klines"
    bars = pd.read_csv(klines_csv)["timestamp"]
    pos_csv = tmp_path / "pos.csv"
    pd.DataFrame({"timestamp": [bars.iloc[0], bars.iloc[600], bars.iloc[1400]],
                  "position": [1.0, -1.0, 0.0]}).to_csv(pos_csv, index=False)
    same_csv = tmp_path / "same.csv"  # what the range should see
    pd.DataFrame({"timestamp": [bars.iloc[500], bars.iloc[600]], "position": [1.0, -1.0]}).to_csv(same_csv, index=False)
    ranged = ("--start", str(bars.iloc[500]), "--end", str(bars.iloc[1000]), "--json", "--stop-loss", "0")
    got, want = _run("--csv", str(klines_csv), "--positions", str(pos_csv), *ranged), \
        _run("--csv", str(klines_csv), "--positions", str(same_csv), *ranged)
    assert got.returncode == 0 and want.returncode == 0, got.stderr + want.stderr
    got_stats, want_stats = json.loads(got.stdout), json.loads(want.stdout)
    assert got_stats == want_stats and got_stats["n_trades"] >= 1
    # without --start/--end every row must be a bar: a time off the bars is named, not ignored
    off = tmp_path / "off.csv"
    pd.DataFrame({"timestamp": [bars.iloc[0] - 3_600_000], "position": [1.0]}).to_csv(off, index=False)
    proc = _run("--csv", str(klines_csv), "--positions", str(off))
    assert proc.returncode == 2 and "line 2: timestamp" in proc.stderr


def test_short_threshold_help_says_what_the_config_does() -> None:
    proc = _run("--help")
    shown = " ".join(proc.stdout.replace("│", " ").split())
    assert "Go short below this predicted return" in shown and "minus" not in shown


def test_a_bad_position_after_start_is_named_by_its_file_line(klines_csv: Path, tmp_path: Path) -> None:
    bars = pd.read_csv(klines_csv)["timestamp"]
    rows = [f"{bars.iloc[i]},1" for i in range(0, 100, 10)] + [f"{bars.iloc[500] + 5},1"]  # the off-bar row: line 12
    pos_csv = tmp_path / "pos.csv"
    pos_csv.write_text("timestamp,position\n" + "\n".join(rows) + "\n")
    for extra in ((), ("--start", str(bars.iloc[50]))):
        proc = _run("--csv", str(klines_csv), "--positions", str(pos_csv), *extra)
        assert proc.returncode == 2 and "line 12: timestamp" in proc.stderr, proc.stderr

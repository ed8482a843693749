"""`reformer backtest` end to end on synthetic candles: positions and predictions files (and their out-of-sample
period and interval), checkpoints, reports, bad input; and the output files of backtest and predict."""

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
    assert stats["fee_rates"] == {"taker": 0.00055, "maker": 0.00055}  # --commission sets both
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
    out = tmp_path / "report" / "stats.json"
    assert main(["backtest", "--csv", str(klines_csv), "--predictions", str(preds_csv), "--out", str(out.parent)]) == 0
    expected = run_backtest(pd.Series(momentum.to_numpy(), index=pd.to_datetime(frame["timestamp"], unit="ms",
                                                                                   utc=True)), frame,
                            BacktestConfig())  # the command's default fees: Bybit's base tier, taker and maker
    assert json.loads(out.read_text())["total_return"] == pytest.approx(expected.total_return, rel=1e-12)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("timestamp,position\n{t},1.5\n", "line 2: position 1.5 is outside [-1, 1]"),
        ("timestamp,position\n{t},1\n{t1},x\n", "line 3, column 'position': 'x' is not a finite number"),
        ("timestamp,position\n{t_off},1\n", "line 2: timestamp"),
        ("time,pos\n{t},1\n", "missing column"),
        # a bad time after a good epoch-ms row is named by its own line, not by the good one's
        ("timestamp,position\n{t},1\n2024-13-45T99:00:00Z,0\n", "line 3: timestamp '2024-13-45T99:00:00Z'"),
        ("timestamp,position\n{t},1\nnotatime,0\n", "line 3: timestamp 'notatime'"),
        # a repeated time by its file line (was "positions row 1"), an empty cell as empty (was np.float64(nan))
        ("timestamp,position\n{t},1\n{t},0\n", "line 3: timestamp"),
        ("timestamp,position\n{t},1\n{t1},\n", "line 3, column 'position': empty (or NaN) is not a finite number"),
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
    pd.DataFrame({"timestamp": settlements, "funding_rate": 0.0001}).to_csv(funding_csv, index=False)
    with_funding = _run("--csv", str(klines_csv), "--positions", str(pos_csv), "--funding-csv", str(funding_csv),
                        "--json")
    without = _run("--csv", str(klines_csv), "--positions", str(pos_csv), "--json")
    assert with_funding.returncode == 0 and without.returncode == 0, with_funding.stderr + without.stderr
    paid, free = json.loads(with_funding.stdout), json.loads(without.stdout)
    assert free["total_funding"] == 0 and paid["total_funding"] > 0  # a long pays a positive rate
    assert paid["final_equity"] < free["final_equity"]
    assert paid["funding"] == "applied" and paid["funding_settlements"] == len(settlements)
    assert free["funding"] == "none given"

    bad = tmp_path / "bad_funding.csv"
    bad.write_text(f"timestamp,funding_rate\n{settlements.iloc[0]},0.0001\n{settlements.iloc[1]},oops\n")
    proc = _run("--csv", str(klines_csv), "--positions", str(pos_csv), "--funding-csv", str(bad))
    assert proc.returncode == 2 and "line 3, column 'funding_rate': 'oops' is not a finite number" in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    wrong = tmp_path / "wrong_header.csv"
    wrong.write_text("fundingRateTimestamp,fundingRate\n1,0.0001\n")
    proc = _run("--csv", str(klines_csv), "--positions", str(pos_csv), "--funding-csv", str(wrong))
    assert proc.returncode == 2 and "missing column" in proc.stderr and "Traceback" not in proc.stderr
    assert "expected a header timestamp,funding_rate" in proc.stderr and proc.stderr.count("\n") == 1


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


# --- predictions with their out-of-sample period and interval (`reformer.predictions`) -------------------------

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run_dir(klines_csv: Path, tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> Path:
    """A tiny model (configs/tiny.toml) trained on the 1,500 candles: its test split is their last fifth."""
    out = tmp_path_factory.mktemp("run")
    assert main(["train", "--csv", str(klines_csv), "--config", str(REPO / "configs" / "tiny.toml"), "--out",
                 str(out), "--json"]) == 0
    return out


@pytest.fixture(scope="module")
def preds_csv(run_dir: Path, klines_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`reformer predict --all` of the run on the candles it was trained on: every window, training bars too."""
    path = tmp_path_factory.mktemp("preds") / "preds.csv"
    assert main(["predict", "--checkpoint", str(run_dir), "--csv", str(klines_csv), "--all", "--out", str(path)]) == 0
    return path


def _first_test_bar(run_dir: Path) -> pd.Timestamp:
    meta = json.loads((run_dir / "best" / "checkpoint.json").read_text())
    return pd.to_datetime(meta["evaluation"]["splits"]["test"]["first_timestamp"], unit="ms", utc=True)


def test_predict_all_then_backtest_predictions_trades_what_backtest_checkpoint_trades(
        run_dir: Path, preds_csv: Path, klines_csv: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    # the file says where the model's out-of-sample period starts, so trading it is trading the checkpoint: only
    # the bars no weight was fitted on (before, every row was traded: +1,225 % instead of +56 % on a demo run)
    capsys.readouterr()
    runs = {}
    for name, source in (("file", ["--predictions", str(preds_csv)]), ("checkpoint", ["--checkpoint", str(run_dir)])):
        assert main(["backtest", "--csv", str(klines_csv), *source, "--json", "--out", str(tmp_path / name)]) == 0
        captured = capsys.readouterr()
        runs[name] = json.loads(captured.out), pd.read_csv(tmp_path / name / "trades.csv"), captured.err
    (stats, trades, err), (checkpoint_stats, checkpoint_trades, _) = runs["file"], runs["checkpoint"]
    assert pd.Timestamp(stats["start"]) == _first_test_bar(run_dir)
    note = [line for line in err.splitlines() if "trading" in line]  # one line (the other: the report written)
    assert len(note) == 1 and "from the model's out-of-sample period on" in note[0]
    assert "--in-sample adds the" in note[0]
    assert stats == checkpoint_stats and stats["n_trades"] > 0  # the same statistics, from the same trades
    pd.testing.assert_frame_equal(trades, checkpoint_trades)
    assert stats["predictions"]["in_sample"] is False and stats["predictions"]["in_sample_bars"] == 0
    assert json.loads((tmp_path / "file" / "stats.json").read_text())["predictions"] == stats["predictions"]


def test_in_sample_trades_every_row_and_says_so(run_dir: Path, preds_csv: Path, klines_csv: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    out = tmp_path / "report"
    assert main(["backtest", "--csv", str(klines_csv), "--predictions", str(preds_csv), "--in-sample", "--json",
                 "--out", str(out)]) == 0
    captured = capsys.readouterr()
    stats = json.loads(captured.out)
    rows = pd.read_csv(preds_csv, comment="#")
    before = int((pd.to_datetime(rows["timestamp"], unit="ms", utc=True) < _first_test_bar(run_dir)).sum())
    assert stats["predictions"]["in_sample"] is True and stats["predictions"]["bars"] == len(rows)
    assert stats["predictions"]["in_sample_bars"] == before > 0
    assert json.loads((out / "stats.json").read_text())["predictions"]["in_sample"] is True
    note = [line for line in captured.err.splitlines() if "trading" in line]
    assert len(note) == 1 and f"--in-sample: trading all {len(rows)} bars, {before} of them before" in note[0]
    assert pd.Timestamp(stats["start"]) < _first_test_bar(run_dir)
    assert main(["backtest", "--csv", str(klines_csv), "--checkpoint", str(run_dir), "--in-sample", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == stats


def test_predictions_or_a_checkpoint_of_another_interval_are_refused(
        run_dir: Path, preds_csv: Path, klines_csv: Path, synthetic_year: list[Kline], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    # hourly predictions on 4-hour candles (every fourth hourly one): 24 bars ahead is 4 days there, not 1
    from reformer.data import KlineStore, read_klines_frame

    four_hourly = tmp_path / "btc_4h.csv"
    write_klines(read_klines_frame(klines_csv).iloc[::4], four_hourly)
    capsys.readouterr()
    for source in (["--predictions", str(preds_csv)], ["--checkpoint", str(run_dir)]):
        assert main(["backtest", "--csv", str(four_hourly), *source, "--json"]) == 2, source
        err = capsys.readouterr().err.strip()
        assert "the candles are 4-hour bars (interval 240)" in err and "1-hour bars (interval 60)" in err, err
        assert "a CSV of 1-hour candles" in err and "\n" not in err
    db = tmp_path / "klines.sqlite"  # from the store, the candles' interval is --interval's
    with KlineStore(db) as store:
        store.insert("linear", "BTCUSDT", "240", synthetic_year[-1500::4])
    assert main(["backtest", "--db", str(db), "--interval", "240", "--predictions", str(preds_csv)]) == 2
    err = capsys.readouterr().err.strip()
    assert "the candles are 4-hour bars" in err and "(--interval 60)" in err and "\n" not in err


def test_a_file_that_does_not_say_where_its_out_of_sample_period_starts_is_traded_whole_with_a_note(
        klines_csv: Path, tmp_path: Path) -> None:
    frame = pd.read_csv(klines_csv)
    preds_csv = tmp_path / "hand.csv"
    pd.DataFrame({"timestamp": frame["timestamp"], "prediction": np.log(frame["close"]).diff(24).fillna(0.0)}
                 ).to_csv(preds_csv, index=False)
    proc = _run("--csv", str(klines_csv), "--predictions", str(preds_csv), "--json")
    assert proc.returncode == 0, proc.stderr
    assert "does not say where the model's out-of-sample period starts" in proc.stderr
    assert proc.stderr.count("\n") == 1
    record = json.loads(proc.stdout)["predictions"]
    assert record["in_sample"] is None and record["first_out_of_sample"] is None and record["bars"] == len(frame)


# --- output files: never overwritten silently, never written through a symbolic link --------------------------

def test_backtest_out_refuses_a_non_empty_folder_without_force_and_a_link_always(klines_csv: Path,
                                                                                 tmp_path: Path) -> None:
    bars = pd.read_csv(klines_csv)["timestamp"]
    pos_csv = tmp_path / "pos.csv"
    pd.DataFrame({"timestamp": [bars.iloc[10], bars.iloc[500]], "position": [1.0, 0.0]}).to_csv(pos_csv, index=False)
    args = ("--csv", str(klines_csv), "--positions", str(pos_csv), "--json")
    out = tmp_path / "report"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    proc = _run(*args, "--out", str(out))
    assert proc.returncode == 2 and f"{out} is not empty" in proc.stderr and "--force" in proc.stderr
    assert proc.stderr.count("\n") == 1 and not (out / "stats.json").exists()
    proc = _run(*args, "--out", str(out), "--force")
    assert proc.returncode == 0, proc.stderr
    assert (out / "stats.json").is_file() and (out / "notes.txt").read_text() == "mine\n"
    # a link among the report's files would send a write outside the folder: refused even with --force
    outside = tmp_path / "outside.json"
    outside.write_text("precious\n")
    (out / "stats.json").unlink()
    (out / "stats.json").symlink_to(outside)
    kept = {p.name: p.read_bytes() for p in out.iterdir() if not p.is_symlink()}
    proc = _run(*args, "--out", str(out), "--force")
    assert proc.returncode == 2 and "stats.json is a symbolic link" in proc.stderr and "even with --force" in \
        proc.stderr and proc.stderr.count("\n") == 1
    assert outside.read_text() == "precious\n" and (out / "stats.json").is_symlink()
    assert {p.name: p.read_bytes() for p in out.iterdir() if not p.is_symlink()} == kept  # nothing rewritten
    elsewhere = tmp_path / "elsewhere"  # the folder itself a link
    elsewhere.mkdir()
    (tmp_path / "linked").symlink_to(elsewhere, target_is_directory=True)
    proc = _run(*args, "--out", str(tmp_path / "linked"), "--force")
    assert proc.returncode == 2 and "is a symbolic link" in proc.stderr and not any(elsewhere.iterdir())


def test_predict_out_and_plot_are_not_overwritten_without_force_nor_written_through_a_link(
        run_dir: Path, klines_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from reformer.predictions import Predictions

    base = ["predict", "--checkpoint", str(run_dir), "--csv", str(klines_csv)]
    preds = tmp_path / "preds.csv"
    preds.write_text("old\n")
    capsys.readouterr()
    assert main([*base, "--all", "--out", str(preds)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{preds} exists" in err and "--force" in err and "\n" not in err and preds.read_text() == "old\n"
    assert main([*base, "--all", "--out", str(preds), "--force"]) == 0
    assert Predictions.from_csv(preds).first_out_of_sample == _first_test_bar(run_dir)
    outside = tmp_path / "outside.txt"
    outside.write_text("precious\n")
    link = tmp_path / "link.csv"
    link.symlink_to(outside)
    for args in ([*base, "--all", "--out", str(link)], [*base, "--all", "--out", str(link), "--force"],
                 [*base, "--plot", str(link), "--force"]):
        capsys.readouterr()
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip()
        assert "link.csv is a symbolic link" in err and "\n" not in err
    assert outside.read_text() == "precious\n" and link.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.csv", "outside.txt", "preds.csv"]  # no temp file


def test_series_predict_out_and_plot_are_guarded_too(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     one_thread: None) -> None:
    steps = np.arange(400)
    csv = tmp_path / "plant.csv"
    pd.DataFrame({"date": pd.date_range("2021-01-01", periods=400, freq="h").strftime("%Y-%m-%d %H:%M:%S"),
                  "load": 10 + np.sin(steps / 4), "level": 50 + np.cos(steps / 4)}).to_csv(csv, index=False)
    config = tmp_path / "series.toml"
    config.write_text("[data]\nseq_len = 32\nhorizon = 8\n[model]\npatch_len = 8\nstride = 8\nd_model = 8\n"
                      "n_heads = 2\nn_layers = 1\nd_ff = 16\nattention_type = \"full\"\n[train]\nepochs = 1\n"
                      "max_batches_per_epoch = 2\nbatch_size = 32\npatience = 0\ndevice = \"cpu\"\n")
    run = tmp_path / "run"
    assert main(["train", "--csv", str(csv), "--target", "level", "--config", str(config), "--out", str(run),
                 "--json"]) == 0
    outside = tmp_path / "outside.txt"
    outside.write_text("precious\n")
    (tmp_path / "plot.png").symlink_to(outside)
    forecast = tmp_path / "forecast.csv"
    forecast.write_text("old\n")
    base = ["predict", "--checkpoint", str(run), "--csv", str(csv)]
    capsys.readouterr()
    for args, words in (([*base, "--out", str(forecast)], f"{forecast} exists"),
                        ([*base, "--plot", str(tmp_path / "plot.png"), "--force"], "is a symbolic link")):
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip()
        assert words in err and "\n" not in err
    assert forecast.read_text() == "old\n" and outside.read_text() == "precious\n"
    assert main([*base, "--out", str(forecast), "--plot", str(tmp_path / "new.png"), "--force"]) == 0
    assert len(pd.read_csv(forecast)) == 8 and (tmp_path / "new.png").read_bytes()[:4] == b"\x89PNG"

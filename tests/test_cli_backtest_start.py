"""`reformer backtest --start/--end`: a checkpoint predicts every bar from --start on out of the candles before it,
the statistics and buy & hold cover exactly the chosen bars, and options that would be ignored are refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reformer.api import Kline
from reformer.cli import main
from reformer.data import write_klines

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def klines_csv(synthetic_year: list[Kline], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1,500 synthetic hourly candles in the export format."""
    path = tmp_path_factory.mktemp("k") / "klines.csv"
    write_klines(synthetic_year[-1500:], path)
    return path


@pytest.fixture(scope="module")
def bars(klines_csv: Path) -> pd.Series:
    return pd.read_csv(klines_csv)["timestamp"]


@pytest.fixture(scope="module")
def run_dir(klines_csv: Path, tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> Path:
    """A tiny model (configs/tiny.toml) trained on the candles: its test split is their last fifth."""
    out = tmp_path_factory.mktemp("run")
    assert main(["train", "--csv", str(klines_csv), "--config", str(REPO / "configs" / "tiny.toml"), "--out",
                 str(out), "--json"]) == 0
    return out


def _stats(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[dict, str]:
    capsys.readouterr()
    assert main(["backtest", *args, "--json"]) == 0
    captured = capsys.readouterr()
    return json.loads(captured.out), captured.err


def _error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    assert main(["backtest", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err, err
    return err


def _ms(moment: str) -> int:
    return int(pd.Timestamp(moment).value // 1_000_000)


def test_a_checkpoint_predicts_every_bar_from_start_on_out_of_the_candles_before_it(
        run_dir: Path, klines_csv: Path, bars: pd.Series, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    from reformer.pipelines import BacktestOptions, backtest_run

    start = int(bars.iloc[-200])  # inside the test split, far more than one window after the file's first bar
    stats, _ = _stats(capsys, "--csv", str(klines_csv), "--checkpoint", str(run_dir), "--start", str(start))
    assert _ms(stats["start"]) == start and _ms(stats["end"]) == int(bars.iloc[-1])
    assert stats["predictions"]["bars"] == 200  # every bar from --start on was predicted and traded
    frame = pd.read_csv(klines_csv)
    assert stats["buy_and_hold_return"] == pytest.approx(frame["close"].iloc[-1] / frame["open"].iloc[-199] - 1)
    # what `predict --all` over the whole file trades from the same bar (before, the checkpoint's first window
    # ended seq_len + warm-up bars after --start, and it sat flat until then)
    preds_csv = tmp_path / "preds.csv"
    assert main(["predict", "--checkpoint", str(run_dir), "--csv", str(klines_csv), "--all", "--out",
                 str(preds_csv)]) == 0
    file_stats, _ = _stats(capsys, "--csv", str(klines_csv), "--predictions", str(preds_csv), "--start", str(start))
    for key in ("start", "end", "n_trades", "exposure", "n_orders"):
        assert stats[key] == file_stats[key], key
    assert stats["total_return"] == pytest.approx(file_stats["total_return"], rel=1e-9)
    # positioned from the first fillable open: the prediction made at --start's close fills at the next open
    run = backtest_run(BacktestOptions(csv=klines_csv, checkpoint=run_dir, start=str(start)))
    held = run.result.positions
    assert held.index[0] == pd.Timestamp(start, unit="ms", tz="UTC")
    assert held.iloc[0] == 0 and held.iloc[1] != 0
    assert run.frame["timestamp"].iloc[0] == start


def test_a_late_start_reads_its_history_from_the_file_and_an_early_one_says_what_is_missing(
        run_dir: Path, klines_csv: Path, bars: pd.Series, capsys: pytest.CaptureFixture[str]) -> None:
    start = int(bars.iloc[-20])  # fewer bars after it than one window needs: they come from before it
    stats, _ = _stats(capsys, "--csv", str(klines_csv), "--checkpoint", str(run_dir), "--start", str(start),
                      "--in-sample")
    assert _ms(stats["start"]) == start and stats["predictions"]["bars"] == 20
    err = _error(capsys, "--csv", str(klines_csv), "--checkpoint", str(run_dir), "--start", str(int(bars.iloc[30])))
    assert "candles before --start" in err and f"and {klines_csv} holds 30:" in err, err
    need = int(err.split(" needs ")[1].split()[0])
    assert need > 30 and f"or --start {pd.Timestamp(int(bars.iloc[need]), unit='ms'):%Y-%m-%dT%H:%M:%SZ}" in err


def test_a_predictions_file_that_starts_after_start_moves_the_period_and_says_so(
        klines_csv: Path, bars: pd.Series, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frame = pd.read_csv(klines_csv)
    preds_csv = tmp_path / "late.csv"
    momentum = np.log(frame["close"]).diff(24)
    pd.DataFrame({"timestamp": frame["timestamp"], "prediction": momentum}).iloc[600:].to_csv(preds_csv, index=False)
    stats, err = _stats(capsys, "--csv", str(klines_csv), "--predictions", str(preds_csv),
                        "--start", str(int(bars.iloc[500])))
    assert _ms(stats["start"]) == int(bars.iloc[600])  # buy & hold does not run ahead of the strategy
    assert "has no prediction for the first 100 bars from --start" in err


def test_vol_target_sizes_from_the_first_bar_after_start(klines_csv: Path, bars: pd.Series, tmp_path: Path) -> None:
    from reformer.pipelines import BacktestOptions, backtest_run
    from reformer.strategy import BacktestConfig

    frame = pd.read_csv(klines_csv)
    preds_csv = tmp_path / "preds.csv"
    pd.DataFrame({"timestamp": frame["timestamp"], "prediction": np.where(np.arange(len(frame)) % 2, 1.0, -1.0)}
                 ).to_csv(preds_csv, index=False)
    config = BacktestConfig(vol_target=0.001, vol_window=48, stop_loss=0.0, take_profit=0.0, rebalance_band=0.0)
    run = backtest_run(BacktestOptions(csv=klines_csv, predictions=preds_csv, start=str(int(bars.iloc[500])),
                                       config=config))
    # the volatility of the 48 bars before --start sizes the first target (it used to be flat for 48 bars)
    assert (run.result.positions.iloc[1:48] != 0).all()


@pytest.mark.parametrize(("start", "end", "words"), [("2024-12-01", "2024-11-01", "is after"),
                                                     ("2024-12-01", "2024-12-01T00:00:00Z", "is the same time as")])
def test_a_start_not_before_end_is_refused_up_front(klines_csv: Path, tmp_path: Path, start: str, end: str,
                                                    words: str, capsys: pytest.CaptureFixture[str]) -> None:
    err = _error(capsys, "--csv", str(klines_csv), "--predictions", str(tmp_path / "never_read.csv"),
                 "--start", start, "--end", end)
    assert f"--start {start} {words} --end {end}: give a --start before --end" in err


@pytest.mark.parametrize(("flags", "message"), [
    (["--vol-target", "0.01"], "--vol-target sizes positions made from predictions; --positions are used as given: "
                               "drop one of them"),
    (["--long-threshold", "0.001"], "--long-threshold turns predictions into positions"),
    (["--short-threshold", "-0.001"], "--short-threshold turns predictions into positions"),
    (["--vol-window", "10"], "--vol-window sets the volatility window of --vol-target"),
    (["--in-sample"], "--in-sample chooses which predictions are traded"),
    (["--vol-forecast", "vol.csv"], "--vol-forecast sizes positions made from predictions"),
    (["--vol-target", "0.01", "--long-threshold", "0.001"], "--long-threshold, --vol-target shape positions made "
                                                            "from predictions; --positions are used as given"),
])
def test_signal_options_beside_positions_are_refused(klines_csv: Path, bars: pd.Series, tmp_path: Path,
                                                     flags: list[str], message: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    pos_csv = tmp_path / "pos.csv"
    pd.DataFrame({"timestamp": bars.iloc[::100], "position": 1.0}).to_csv(pos_csv, index=False)
    assert main(["backtest", "--csv", str(klines_csv), "--positions", str(pos_csv), "--json"]) == 0
    assert message in _error(capsys, "--csv", str(klines_csv), "--positions", str(pos_csv), *flags)


def test_vol_window_without_vol_target_or_beside_a_forecast_is_refused(
        klines_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    preds = ["--csv", str(klines_csv), "--predictions", str(tmp_path / "never_read.csv")]
    assert "add --vol-target" in _error(capsys, *preds, "--vol-window", "10")
    err = _error(capsys, *preds, "--vol-window", "10", "--vol-target", "0.01", "--vol-forecast", "vol.csv")
    assert "--vol-forecast replaces the trailing realised volatility that --vol-window measures" in err


def test_vol_target_help_says_its_unit(capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["backtest", "--help"]) == 0
    shown = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert "a per-bar volatility: the standard deviation of one-bar log returns (a fraction, not annualised" in shown

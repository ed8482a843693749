"""What a new user meets first: help, version, the options every command shares, errors, times, progress, plots."""

from __future__ import annotations

import functools
import re
import socket
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import typer

from reformer.cli import app, main
from reformer.data.csv_io import write_klines
from reformer.data.sync import format_ms
from reformer.data.synthetic import SyntheticMarketConfig, synthetic_klines

ROOT = Path(__file__).resolve().parents[1]
DB_HELP = "Kline store (SQLite). Default: $REFORMER_DB, else ~/.reformer/klines.sqlite."


def _commands(command: Any = None, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """Every (sub)command of `reformer` with its argv path."""
    command = typer.main.get_command(app) if command is None else command
    found = [(path, command)]
    for name, sub in getattr(command, "commands", {}).items():
        found += _commands(sub, (*path, name))
    return found


def _with(name: str) -> list[tuple[tuple[str, ...], Any]]:
    """The commands with an option called `name`."""
    return [(path, command) for path, command in _commands() if any(p.name == name for p in command.params)]


def _param(command: Any, name: str) -> Any:
    return next(p for p in command.params if p.name == name)


def _shown(text: str) -> str:
    """Help text with the box drawing and the line wrapping taken out."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


@pytest.fixture
def candles(tmp_path: Path) -> Path:
    """300 hourly candles in the export format."""
    path = tmp_path / "candles.csv"
    write_klines(synthetic_klines(SyntheticMarketConfig(n_bars=300, seed=1)), path)
    return path


@pytest.fixture
def positions(candles: Path, tmp_path: Path) -> Path:
    """Target positions flipping every 3 bars: about 100 trades."""
    times = pd.read_csv(candles)["timestamp"].to_numpy()
    path = tmp_path / "positions.csv"
    pd.DataFrame({"timestamp": times, "position": np.where(np.arange(len(times)) // 3 % 2, -1.0, 1.0)}).to_csv(
        path, index=False)
    return path


@pytest.fixture
def series_csv(tmp_path: Path) -> Path:
    """2000 hourly rows: too short for the ETT protocols (14400 rows)."""
    rng = np.random.default_rng(0)
    path = tmp_path / "series.csv"
    pd.DataFrame({"date": pd.date_range("2020-01-01", periods=2000, freq="h").astype(str),
                  "a": rng.normal(size=2000), "OT": rng.normal(size=2000)}).to_csv(path, index=False)
    return path


# ---- help and version ----------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [[], ["bench"]], ids=["reformer", "reformer bench"])
def test_no_command_prints_the_help_and_exits_0(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "Usage: reformer" in captured.out and "Commands" in captured.out
    assert captured.err == ""  # was an empty "error:  (see `reformer --help`)" line


@pytest.mark.parametrize(("path", "command"), _commands(), ids=lambda value: " ".join(value) or "reformer"
                         if isinstance(value, tuple) else "")
def test_flags_show_no_value_type_in_the_help(path: tuple[str, ...], command: Any,
                                              capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    assert main([*path, "--help"]) == 0
    shown = _shown(capsys.readouterr().out)
    assert "<bool>" not in shown and "--help Show this message and exit." in shown
    for param in command.params:  # an option that takes a value still shows its type
        if getattr(param, "is_flag", True) is False and param.opts[0].startswith("--") and not param.hidden:
            assert re.search(re.escape(param.opts[0]) + r" (<[^>]+>)", shown), (path, param.opts[0])


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"reformer-crypto {version('reformer-crypto')}\n"


# ---- --symbol and --db, the same in every command ---------------------------------------------------


def test_symbol_defaults_to_btcusdt_in_every_command(capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    commands = _with("symbol")
    assert {path[-1] for path, _ in commands} >= {"fetch", "stream", "import", "export", "train", "predict",
                                                  "backtest", "fake-exchange"}
    monkeypatch.setenv("COLUMNS", "250")
    for path, command in commands:
        symbol = _param(command, "symbol")
        assert not symbol.required and symbol.default == "BTCUSDT", path
        assert main([*path, "--help"]) == 0
        assert "[default: BTCUSDT]" in _shown(capsys.readouterr().out), path


def test_db_has_one_help_text(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    commands = _with("db")
    assert {path[-1] for path, _ in commands} >= {"fetch", "stream", "import", "export", "train", "predict",
                                                  "backtest"}
    monkeypatch.setenv("COLUMNS", "250")
    for path, command in commands:
        assert _param(command, "db").help == DB_HELP, path
        assert main([*path, "--help"]) == 0
        assert DB_HELP in _shown(capsys.readouterr().out), path


def test_every_symbol_is_normalised_by_the_shared_option() -> None:
    from reformer.cli.common import normalise_symbol

    for path, command in _with("symbol"):
        callback = _param(command, "symbol").callback
        assert callback is not None and callback(None, None, " btcUSDT ") == "BTCUSDT", path
    assert normalise_symbol(" ethusdt\t") == "ETHUSDT"
    with pytest.raises(ValueError, match="--symbol is empty"):
        normalise_symbol("  ")


def test_a_lower_case_symbol_finds_the_stored_series(candles: Path, positions: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "k.sqlite"
    assert main(["import", "--csv", str(candles), "--interval", "60", "--db", str(db)]) == 0  # BTCUSDT
    assert "BTCUSDT 60 linear candles" in capsys.readouterr().out
    assert main(["backtest", "--symbol", " btcusdt ", "--db", str(db), "--positions", str(positions),
                 "--json"]) == 0
    capsys.readouterr()
    monkeypatch.chdir(tmp_path)  # the default checkpoint is runs/SYMBOL_INTERVAL
    assert main(["predict", "--symbol", "btcusdt", "--db", str(db)]) == 2
    assert "BTCUSDT_60" in capsys.readouterr().err


# ---- help texts and defaults -----------------------------------------------------------------------------


def test_import_help_names_the_accepted_formats(capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    assert main(["import", "--help"]) == 0
    shown = _shown(capsys.readouterr().out)
    assert "shared BTC file" not in shown
    assert "the export format" in shown and "Bybit's kline CSV" in shown and "timestamp_string" in shown
    assert "any OHLCV file with a time column" in shown


def test_backtest_fees_default_to_bybits_base_tier(candles: Path, positions: Path,
                                                    capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    monkeypatch.setenv("COLUMNS", "250")
    assert main(["backtest", "--help"]) == 0
    shown = _shown(capsys.readouterr().out)
    assert "the category's base tier" in shown and "default 0.00055, spot 0.001" in shown
    assert main(["backtest", "--csv", str(candles), "--positions", str(positions), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["config"]["commission"] is None and stats["n_trades"] > 0
    assert stats["fee_rates"] == {"taker": 0.00055, "maker": 0.0002}


@pytest.mark.parametrize("command", ["evaluate", "train"])
def test_a_bad_protocol_names_the_choices(command: str, series_csv: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    extra = ["--target", "OT", "--out", str(tmp_path / "run")] if command == "train" else []
    assert main([command, "--csv", str(series_csv), "--protocol", "weekly", *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--protocol 'weekly' is invalid" in err
    assert all(name in err for name in ("ratio", "ett-hourly", "ett-15min")) and "ett_" not in err


def test_a_protocol_too_long_for_the_file_is_named_as_the_user_wrote_it(series_csv: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--csv", str(series_csv), "--protocol", "ett-hourly", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'ett-hourly' needs 14400 rows" in err and "ett_hour" not in err
    assert all(name in err for name in ("ratio", "ett-hourly", "ett-15min"))


# ---- train when the exchange cannot be reached --------------------------------------------------------------


def test_train_without_an_exchange_names_offline_and_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import reformer.data.sync as sync

    with socket.socket() as sock:  # a port nothing listens on: every connection is refused at once
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    monkeypatch.setattr(sync, "sync_klines_blocking",
                        functools.partial(sync.sync_klines_blocking, base_url=closed, max_retries=0))
    assert main(["train", "--db", str(tmp_path / "empty.sqlite"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert "--offline" in err and "--csv" in err and "max_retries" not in err


# ---- times for people -----------------------------------------------------------------------------------------


def test_times_are_shown_as_utc_dates() -> None:
    assert format_ms(1_764_889_200_000) == "2025-12-04 23:00 UTC"


def test_demo_prints_the_latest_candle_time_as_a_date(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import reformer.demo
    from reformer.demo import DemoResult

    metrics = {"mse": 1.0, "mae": 1.0, "directional_accuracy": 0.5, "ic": 0.0, "mse_skill": 0.0, "n": 10}
    latest = {"timestamp": 1_764_889_200_000, "predicted_return": 0.001, "direction": "up", "confidence": 0.6,
              "horizon": 4}
    backtest = {"total_return": 0.0, "sharpe_ratio": 0.0, "max_drawdown": 0.0, "n_trades": 0,
                "total_funding": 0.0, "buy_and_hold_return": 0.0}
    result = DemoResult(tmp_path, 10, 1, {"horizon": 4, "model": metrics, "baselines": {"zero": metrics}}, latest,
                        backtest, 1.0)
    monkeypatch.setattr(reformer.demo, "run_demo", lambda *args, **kwargs: result)
    assert main(["demo", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "latest closed candle 2025-12-04 23:00 UTC" in out and "1764889200000" not in out


# ---- progress -------------------------------------------------------------------------------------------------


def _fit(progress: bool) -> None:
    import torch

    from reformer.data.dataset import WindowDataset
    from reformer.model import ReformerConfig, ReformerModel
    from reformer.training import TrainConfig, fit

    x = torch.randn(48, 8, 2, generator=torch.Generator().manual_seed(0))
    train, val = WindowDataset(x, x[:, -1, 0], np.arange(32)), WindowDataset(x, x[:, -1, 0], np.arange(32, 48))
    model = ReformerModel(ReformerConfig(seq_len=8, d_model=8, n_heads=2, n_layers=1, n_hash_rounds=1, n_buckets=2,
                                         chunk_size=4, n_features=2))
    fit(model, train, val, TrainConfig(epochs=2, batch_size=16, device="cpu"), progress=progress)


@pytest.mark.usefixtures("one_thread")
def test_training_progress_shows_epochs_batches_and_an_eta_on_a_terminal(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich: stderr is a terminal
    _fit(progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    shown = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", captured.err)  # the terminal's colour and cursor codes
    assert re.search(r"epoch 2/2 .* 4/4 batches \d:\d\d:\d\d eta \d:\d\d:\d\d", shown), shown


@pytest.mark.usefixtures("one_thread")
def test_training_progress_is_quiet_off_a_terminal(capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TTY_COMPATIBLE", "0")  # a log file, a pipe, a test's capture
    _fit(progress=True)
    assert capsys.readouterr() == ("", "")


def test_the_demo_trains_with_the_progress_bar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import reformer.pipelines.crypto as crypto
    from reformer.demo import run_demo

    asked: dict[str, Any] = {}

    class Trained(Exception):
        pass

    def train_crypto(*args: Any, **kwargs: Any) -> None:
        asked.update(kwargs)
        raise Trained

    monkeypatch.setattr(crypto, "train_crypto", train_crypto)
    with pytest.raises(Trained):
        run_demo(tmp_path, n_bars=400, seq_len=64, epochs=1, say=lambda _: None)
    assert asked["progress"] is True


# ---- the trades plot ------------------------------------------------------------------------------------------


def _backtest(n_bars: int, every: int) -> tuple[Any, pd.DataFrame]:
    from reformer.strategy import BacktestConfig, backtest_positions

    rng = np.random.default_rng(0)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n_bars)))
    bars = pd.DataFrame({"open": np.r_[100.0, close[:-1]], "close": close},
                        index=pd.date_range("2024-01-01", periods=n_bars, freq="h", tz="UTC"))
    bars["high"] = bars[["open", "close"]].max(axis=1) * 1.003
    bars["low"] = bars[["open", "close"]].min(axis=1) * 0.997
    targets = pd.Series(np.where(np.arange(n_bars) // every % 2, -1.0, 1.0), index=bars.index)
    config = BacktestConfig(position_size=0.5, stop_loss=0.0, take_profit=0.0, commission=0.00055)
    return backtest_positions(targets, bars, config), bars


def test_many_trades_are_not_a_band_of_markers_and_their_pnl_is_plotted(tmp_path: Path) -> None:
    from matplotlib.collections import LineCollection, PathCollection
    from matplotlib.figure import Figure

    from reformer.strategy.plots import MAX_TRADE_MARKERS, plot_trade_pnl, plot_trades, save_report

    for n_bars, every, marked in ((3000, 2, False), (120, 4, True)):
        result, bars = _backtest(n_bars, every)
        assert (len(result.trades) > MAX_TRADE_MARKERS) is not marked
        price = plot_trades(result, bars)
        assert any(isinstance(c, PathCollection) for c in price.collections) is marked
        pnl = plot_trade_pnl(result, Figure().add_subplot())
        bars_drawn = [c for c in pnl.collections if isinstance(c, LineCollection)]
        assert len(bars_drawn) == 1 and len(bars_drawn[0].get_segments()) == result.n_trades
        running = pnl.figure.axes[-1].lines[0].get_ydata()
        assert np.isclose(running[-1], result.trades.loc[~result.trades["open"], "pnl"].sum())
        first = save_report(result, bars, tmp_path / f"a{n_bars}")["trades_plot"].read_bytes()
        assert first == save_report(result, bars, tmp_path / f"b{n_bars}")["trades_plot"].read_bytes()


# ---- comments say why, not when -------------------------------------------------------------------------------


def test_the_command_line_sources_cite_no_history_or_outside_documents() -> None:
    files = [*sorted((ROOT / "src" / "reformer" / "cli").glob("*.py")), ROOT / "src" / "reformer" / "demo.py",
             ROOT / "src" / "reformer" / "strategy" / "plots.py", ROOT / "src" / "reformer" / "training" / "loop.py",
             ROOT / "examples" / "predict.py"]
    history = re.compile(r"#.*\b20\d\d-\d\d-\d\d\b|\bissue-?\d+|\bstep \d+\b|the seed's|bybit-v5\.md|evaluation\.md|"
                         r"backtest-and-metrics\.md|shared/docs|shared BTC file")
    for path in files:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            assert not history.search(line), f"{path.relative_to(ROOT)}:{number}: {line.strip()}"

"""`reformer trade` at its edges, on the fake exchange on loopback: buy & hold on the dashboard starts at the first
traded candle, Ctrl-C reports the candles it processed, bad --max-candles, --state, --out and --dashboard are one
line and exit code 2 and leave nothing behind, a report never replaces another without --force, and a state of
other settings names them."""

from __future__ import annotations

import hashlib
import json
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from reformer.api import FakeExchange, Kline
from reformer.cli import main
from reformer.errors import UserInputError
from reformer.trade.dashboard import start_in_thread
from reformer.trade.paper import PaperSettings, PaperTrader
from reformer.trade.report import paper_report
from reformer.trade.state import PaperState

from .paper_helpers import CONFIG, KEY, SYMBOL
from .test_paper_cli import FLAGS, command

CAPITAL = 10_000.0
TRADED = 30


@pytest.fixture(scope="module")
def traded(market: list[Kline], checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state warmed up on the candles before market[1000], then trading TRADED candles from there."""
    state = tmp_path_factory.mktemp("traded") / "state"
    with FakeExchange({KEY: market}, now_ms=market[1000].start_time) as fake:
        assert main(command(fake, checkpoint, state)[3:]) == 0
        fake.set_now(market[1000 + TRADED].start_time)
        assert main(command(fake, checkpoint, state)[3:]) == 0
    return state


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def _digests(folder: Path) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.iterdir())}


def test_buy_and_hold_starts_at_the_capital_on_the_first_traded_candle(traded: Path) -> None:
    with PaperState(traded) as state:
        candles = state.candles(SYMBOL)
    first, last = candles[candles["step"] == 0].iloc[0], candles.iloc[-1]
    warm_up = candles[candles["step"] < 0]
    assert len(warm_up) > 100 and warm_up["close"].iloc[0] != first["close"]  # the warm-up is not the start
    with start_in_thread(traded, port=0) as server:
        account = httpx.get(server.url + "/api/account", timeout=10).json()
    hold = account["buy_and_hold"]
    assert len(hold) == len(account["equity"]) == TRADED
    assert hold[0] == account["equity"][0] == CAPITAL
    assert hold[-1] == pytest.approx(CAPITAL * last["close"] / first["close"], rel=1e-12)
    # the same buy & hold as `reformer trade report`'s
    report = paper_report(traded)
    assert hold[-1] == pytest.approx(CAPITAL * (1 + report.result.buy_and_hold_return), rel=1e-12)


def test_ctrl_c_reports_the_candles_this_run_processed(market: list[Kline], checkpoint: Path, tmp_path: Path) -> None:
    state, log = tmp_path / "state", tmp_path / "stderr.log"
    with FakeExchange({KEY: market}, now_ms=market[1000].start_time) as fake:
        assert main(command(fake, checkpoint, state)[3:]) == 0  # the warm-up
        fake.set_now(market[1005].start_time)
        follow = [a for a in command(fake, checkpoint, state) if a != "--catch-up"]
        with log.open("w") as stderr:
            process = subprocess.Popen([*follow, "--ws-url", fake.ws_url], stdout=subprocess.PIPE, stderr=stderr,
                                       text=True)
            try:
                deadline = time.monotonic() + 300
                while "following" not in log.read_text() and process.poll() is None:
                    assert time.monotonic() < deadline, log.read_text()
                    time.sleep(0.2)
                process.send_signal(signal.SIGINT)
                out, _ = process.communicate(timeout=60)
            finally:
                if process.poll() is None:
                    process.kill()
    assert process.returncode == 0, log.read_text()
    assert log.read_text().count(" processed: equity") == 5
    assert out.strip() == f"processed 5 candle time(s); state in {state}"
    with PaperState(state) as paper:
        assert paper.last_step() == 4


@pytest.mark.parametrize("count", ["0", "-1"])
def test_max_candles_below_1_is_refused_before_the_state_exists(count: str, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    args = ["trade", "--paper", "--checkpoint", str(tmp_path / "run"), "--state", str(state), "--base-url",
            "http://127.0.0.1:9", "--max-candles", count, *FLAGS]
    assert main(args) == 2
    assert f"--max-candles {count}: use 1 or more" in _one_line_error(capsys)
    assert not state.exists()


def test_a_taken_dashboard_port_names_the_dashboard_option(market: list[Kline], checkpoint: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    with socket.socket() as taken, FakeExchange({KEY: market}, now_ms=market[1000].start_time) as fake:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert main([*command(fake, checkpoint, state)[3:], "--dashboard", f"127.0.0.1:{port}"]) == 2
    err = _one_line_error(capsys)
    assert f"cannot listen on 127.0.0.1:{port}" in err and "choose another --dashboard HOST:PORT" in err
    assert "--port" not in err and "--host" not in err
    assert not state.exists()  # refused before the trader created its state


def test_a_file_as_state_or_out_is_named_and_left_alone(market: list[Kline], checkpoint: Path, traded: Path,
                                                         tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "notes.txt"
    file.write_text("mine\n")
    with FakeExchange({KEY: market}, now_ms=market[1000].start_time) as fake:
        for state in (file, file / "state"):
            assert main(command(fake, checkpoint, state)[3:]) == 2
            assert f"{file} is a file: --state must be a folder" in _one_line_error(capsys)
    assert main(["trade", "report", "--state", str(file)]) == 2
    assert f"{file} is a file: --state must be a folder" in _one_line_error(capsys)
    assert main(["trade", "report", "--state", str(traded), "--out", str(file)]) == 2
    assert f"{file} is a file: give --out a folder" in _one_line_error(capsys)
    assert file.read_text() == "mine\n" and sorted(tmp_path.iterdir()) == [file]


def test_a_report_replaces_another_only_with_force(traded: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report"
    assert main(["trade", "report", "--state", str(traded), "--out", str(out), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    written = _digests(out)
    assert set(written) == {"equity.png", "drawdown.png", "trades.png", "trades.csv", "stats.json"}
    assert json.loads((out / "stats.json").read_text())["final_equity"] == stats["final_equity"]
    (out / "stats.json").write_text("{}\n")  # the user's edit, which a second report must not silently replace
    assert main(["trade", "report", "--state", str(traded), "--out", str(out)]) == 2
    assert f"{out} is not empty: pass --force" in _one_line_error(capsys)
    assert (out / "stats.json").read_text() == "{}\n"
    assert main(["trade", "report", "--state", str(traded), "--out", str(out), "--force"]) == 0
    assert json.loads((out / "stats.json").read_text())["final_equity"] == stats["final_equity"]


def test_a_state_of_other_settings_names_them(traded: Path, checkpoint: Path) -> None:
    def settings(*symbols: str, interval: str = "60") -> PaperSettings:
        return PaperSettings(str(checkpoint), symbols, interval, "linear", CONFIG)

    with pytest.raises(UserInputError, match=f"holds a run with symbol {SYMBOL}, not {SYMBOL}, ETHUSDT: resume"):
        PaperTrader(traded, settings(SYMBOL, "ETHUSDT"))
    with pytest.raises(UserInputError, match=f"holds a run with symbol {SYMBOL}, not ETHUSDT: resume"):
        PaperTrader(traded, settings("ETHUSDT"))
    assert settings(SYMBOL, "ETHUSDT").same_run(settings(SYMBOL)) == f"symbols {SYMBOL}, ETHUSDT, not {SYMBOL}"
    assert settings(SYMBOL).same_run(settings(SYMBOL, interval="240")) == "interval 60, not 240"

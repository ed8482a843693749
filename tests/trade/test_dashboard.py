"""The dashboard over a small hand-made state: its JSON views against values worked out by hand, its refusal of
anything but reading, and the page itself in a real headless Chromium (Debian's, driven by Playwright) updating as
the test writes one more candle."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from reformer.errors import UserInputError
from reformer.trade.dashboard import DashboardThread, create_app, start_in_thread
from reformer.trade.state import PaperState

CHROMIUM = Path("/usr/bin/chromium")
HOUR = 3_600_000
T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC
CLOSES = [100.0, 102.0, 101.0, 104.0, 103.0, 106.0]
ATTENTION = [0.1, 0.2, 0.3, 0.4]
SETTINGS = {"symbols": ["BTCUSDT"], "interval": "60", "category": "linear",
            "config": {"initial_capital": 10_000.0, "category": "linear", "leverage": 2.0}}
# the engine's snapshot (`Engine.snapshot`) with the open long: one book per symbol, the rest of its state elided
SNAPSHOT = {"cash": 4_775.0, "books": [{"u": 50.0, "position": {"units": 50.0, "side": "long", "entry_price": 104.5,
                                                                 "liq_price": 52.8, "entry_bar": 4}}]}
FLAT = {"cash": 10_044.0, "books": [{"u": 0.0, "position": None}]}


def _candle(i: int, close: float) -> list[Any]:
    """start_time, OHLCV, turnover, mark OHLC, funding at the open and inside; it opens at the close before (the
    last of CLOSES after them)."""
    open_ = CLOSES[min(i, len(CLOSES)) - 1] if i > 0 else close
    return [T0 + i * HOUR, open_, max(open_, close) + 1, min(open_, close) - 1, close, 10.0, 10.0 * close,
            open_, max(open_, close) + 1, min(open_, close) - 1, close, 0.0, 0.0]


def _step(state: PaperState, i: int, close: float, equity: float, units: float,
          snapshot: dict[str, Any] | None = None, trades: pd.DataFrame | None = None) -> None:
    """One candle's transaction, as the trader writes it."""
    with state.transaction() as db:
        state.write_candle(db, "BTCUSDT", i, _candle(i, close))
        if trades is not None:
            state.write_trades(db, trades)
        state.write_step(db, i, T0 + i * HOUR, equity, {"BTCUSDT": units}, {"BTCUSDT": units != 0.0},
                         snapshot or {})
        state.write_prediction(db, "BTCUSDT", T0 + i * HOUR, 0.001 * (i + 1), 0.5 + 0.05 * i, 1.0 if i else 0.0,
                               ATTENTION)


# a long filled at candle 1's open (100), out at candle 3's open (101): +50 before fees
TRADE = pd.DataFrame([{"symbol": "BTCUSDT", "entry_time": pd.Timestamp(T0 + HOUR, unit="ms", tz="UTC"),
                       "exit_time": pd.Timestamp(T0 + 3 * HOUR, unit="ms", tz="UTC"), "side": "long", "units": 50.0,
                       "entry_price": 100.0, "exit_price": 101.0, "pnl": 44.0, "return": 0.0088, "fees": 6.0,
                       "funding": 0.0, "exit_reason": "signal"}])
EQUITY = [10_000.0, 10_100.0, 10_044.0, 10_044.0, 10_000.0, 10_123.45]
UNITS = [0.0, 50.0, 50.0, 0.0, 50.0, 50.0]


def _build(folder: Path, snapshot: dict[str, Any] | None = SNAPSHOT) -> None:
    with PaperState(folder, writable=True) as state:
        state.save_settings(SETTINGS)
        for i, close in enumerate(CLOSES):
            _step(state, i, close, EQUITY[i], UNITS[i], (snapshot if UNITS[i] else FLAT) if snapshot else {},
                  TRADE if i == 3 else None)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    _build(tmp_path)
    return tmp_path


@pytest.fixture
def server(state_dir: Path) -> Iterator[DashboardThread]:
    with start_in_thread(state_dir, port=0) as running:
        yield running


def _get(server: DashboardThread, path: str) -> Any:
    response = httpx.get(server.url + path, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def test_status_is_the_last_step(server: DashboardThread) -> None:
    status = _get(server, "/api/status")
    assert status["ready"] and status["symbols"] == ["BTCUSDT"] and status["category"] == "linear"
    assert status["step"] == 5 and status["time"] == "2024-01-01 05:00:00"
    assert status["equity"] == 10_123.45 and status["initial_capital"] == 10_000.0
    assert status["units"] == {"BTCUSDT": 50.0}


def test_market_has_candles_fills_position_and_prediction(server: DashboardThread) -> None:
    market = _get(server, "/api/market/BTCUSDT?bars=4")
    assert market["candles"]["time"][0] == "2024-01-01 02:00:00" and market["candles"]["close"] == CLOSES[2:]
    # the trade entered before the 4 bars shown: only its exit lies on them
    assert market["entries"] == []
    assert market["exits"] == [{"time": "2024-01-01 03:00:00", "price": 101.0, "side": "long", "reason": "signal",
                                "pnl": 44.0}]
    assert market["position"] == {"side": "long", "units": 50.0, "entry_time": "2024-01-01 04:00:00",
                                  "entry_price": 104.5, "liq_price": 52.8, "estimated": False}
    prediction = market["prediction"]
    assert prediction["time"] == "2024-01-01 05:00:00" and prediction["attention"] == ATTENTION
    assert prediction["prediction"] == pytest.approx(0.006) and prediction["target"] == 1.0
    every = _get(server, "/api/market/BTCUSDT")
    assert len(every["candles"]["time"]) == 6 and every["entries"][0]["price"] == 100.0


def test_account_is_equity_beside_buy_and_hold(server: DashboardThread) -> None:
    account = _get(server, "/api/account")
    assert account["equity"] == EQUITY and len(account["time"]) == 6
    # all equity long from the first close (100), no fees: capital × close / 100
    assert account["buy_and_hold"] == pytest.approx([100.0 * close for close in CLOSES])
    assert [trade["exit_reason"] for trade in account["trades"]] == ["signal"]
    assert account["trades"][0]["entry_time"] == "2024-01-01 01:00:00"


def test_without_a_snapshot_the_entry_is_the_open_the_side_began_at(tmp_path: Path) -> None:
    _build(tmp_path, snapshot=None)
    with start_in_thread(tmp_path, port=0) as running:
        position = _get(running, "/api/market/BTCUSDT")["position"]
    # long again from step 4, filled at candle 4's open (candle 3's close, 104)
    assert position == {"side": "long", "units": 50.0, "entry_time": "2024-01-01 04:00:00", "entry_price": 104.0,
                        "liq_price": None, "estimated": True}


def test_a_short_from_the_snapshot_and_buy_and_hold_in_the_coin(tmp_path: Path) -> None:
    from reformer.trade import dashboard_views as views

    _build(tmp_path)
    with PaperState(tmp_path, writable=True) as state:
        short = {"cash": 0.0, "books": [{"position": {"units": -30.0, "side": "short", "entry_price": 107.0,
                                                      "liq_price": 160.0, "entry_bar": 6}}]}
        _step(state, 6, 107.0, 10_050.0, -30.0, short)
        assert views.market(state, "BTCUSDT")["position"] == {
            "side": "short", "units": 30.0, "entry_time": "2024-01-01 06:00:00", "entry_price": 107.0,
            "liq_price": 160.0, "estimated": False}
        _step(state, 7, 106.0, 10_060.0, 0.0, FLAT)
        assert views.market(state, "BTCUSDT")["position"]["side"] == "flat"
        # an inverse contract's equity is the coin, which buy & hold keeps unchanged
        inverse = {**SETTINGS, "category": "inverse", "config": {"initial_capital": 1.5, "category": "inverse"}}
        assert views.buy_and_hold(state, state.equity(), inverse).tolist() == [1.5] * 8


def test_the_dashboard_only_reads(server: DashboardThread, state_dir: Path) -> None:
    before = hashlib.sha256((state_dir / "state.sqlite").read_bytes()).hexdigest()
    for method, path in [("POST", "/api/status"), ("POST", "/"), ("PUT", "/api/account"),
                         ("DELETE", "/api/market/BTCUSDT"), ("PATCH", "/static/dashboard.js"),
                         ("POST", "/api/nothing")]:
        response = httpx.request(method, server.url + path, timeout=10)
        assert response.status_code == 405, (method, path)
        assert response.headers["allow"] == "GET"
    assert hashlib.sha256((state_dir / "state.sqlite").read_bytes()).hexdigest() == before
    assert httpx.get(server.url + "/api/market/ETHUSDT", timeout=10).status_code == 404
    assert httpx.get(server.url + "/api/market/BTCUSDT?bars=0", timeout=10).status_code == 422
    assert httpx.get(server.url + "/static/state.sqlite", timeout=10).status_code == 404


def test_plotly_comes_from_the_installed_package(server: DashboardThread) -> None:
    from plotly.offline import get_plotlyjs

    response = httpx.get(server.url + "/static/plotly.min.js", timeout=30)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/javascript")
    assert response.text == get_plotlyjs()
    page = httpx.get(server.url + "/", timeout=10).text
    assert '<script src="/static/plotly.min.js">' in page and "http" not in page.split("<body>")[0]


def test_a_missing_state_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from reformer.cli import main

    with pytest.raises(UserInputError, match="reformer trade --paper"):
        create_app(tmp_path)
    assert main(["dashboard", "--state", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "holds no paper-trading state" in err


def test_a_taken_port_is_one_line(server: DashboardThread, state_dir: Path) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    with pytest.raises(UserInputError, match=f"cannot listen on 127.0.0.1:{port}.*--port"):
        start_in_thread(state_dir, port=port)


def test_the_page_shows_the_account_and_follows_new_candles(server: DashboardThread, state_dir: Path) -> None:
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's browser with `apt-get install chromium` "
                    "(`make test` does it when run as root)")
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.goto(server.url)
            expect(page.locator("#equity")).to_have_text("10,123.45", timeout=15_000)
            expect(page.locator("#position")).to_have_text("long 50", timeout=15_000)
            expect(page.locator("#liquidation")).to_contain_text("52.8")
            expect(page.locator("#confidence")).to_have_text("0.75")
            expect(page.locator("#connection")).to_have_text("live")
            # plotly drew the three charts: the attention bars, one per bar of the window
            expect(page.locator("#attention-chart .trace.bars .point")).to_have_count(len(ATTENTION), timeout=15_000)
            expect(page.locator("#price-chart .main-svg").first).to_be_visible()
            expect(page.locator("#equity-chart .scatterlayer .trace")).to_have_count(2)
            expect(page.locator("#trades tbody tr")).to_have_count(1)

            with PaperState(state_dir, writable=True) as state:
                _step(state, 6, 108.0, 10_234.56, 50.0, SNAPSHOT)
            expect(page.locator("#equity")).to_have_text("10,234.56", timeout=10_000)
            expect(page.locator("#updated")).to_have_text("2024-01-01 06:00:00 UTC")
            expect(page.locator("#last-close")).to_have_text("108", timeout=10_000)
            assert errors == []
        finally:
            browser.close()

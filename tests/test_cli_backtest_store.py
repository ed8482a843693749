"""`reformer backtest` on the store's own series uses what `reformer fetch --funding --mark` stored beside the
candles: the funding settlements, the mark candles and the first risk tier's maintenance margin; and says what is
missing when the store lacks them. The fake exchange on loopback, a real SQLite store in tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from reformer.api import FakeExchange, Kline
from reformer.cli import main
from reformer.data import DerivativesStore
from reformer.strategy import BacktestConfig, Instrument, backtest_positions

KEY = ("linear", "BTCUSDT", "60")
RANGE = ("--start", "2024-01-02T00:00:00Z", "--end", "2024-01-20T23:00:00Z")


def cli(*args: object) -> int:
    return main([str(a) for a in args])


def _positions(tmp_path: Path, db: Path) -> tuple[Path, pd.DataFrame]:
    with DerivativesStore(db) as store:
        frame = store.load_frame(*KEY)
    flips = frame["timestamp"].to_numpy()[::24]
    path = tmp_path / "positions.csv"
    pd.DataFrame({"timestamp": flips, "position": [1.0 if k % 2 else -1.0 for k in range(len(flips))]}).to_csv(
        path, index=False)
    return path, frame


def test_a_store_backtest_applies_the_stored_funding_mark_and_risk_tier(
        tmp_path: Path, synthetic_year: list[Kline], capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "k.sqlite"
    with FakeExchange({KEY: synthetic_year[:24 * 31]}) as fake:
        assert cli("fetch", "--symbol", "BTCUSDT", "--interval", "60", "--base-url", fake.base_url, "--db", db,
                   *RANGE, "--funding", "--mark") == 0
    positions, frame = _positions(tmp_path, db)
    capsys.readouterr()
    assert cli("backtest", "--db", db, "--positions", positions, "--leverage", "3", "--position-size", "3",
               "--json") == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["funding"] == "applied" and stats["funding_settlements"] > 50
    # the same backtest in Python with the stored series, as the command should have read them
    with DerivativesStore(db) as store:
        rates = store.load_funding(*KEY[:2])
        mark = store.load_mark_frame(*KEY)
        tier = store.load_risk_tiers(*KEY[:2])[0]
    expected = backtest_positions(pd.read_csv(positions).set_index("timestamp")["position"], frame,
                                  BacktestConfig(leverage=3, position_size=3), funding_rates=rates, mark=mark,
                                  instrument=Instrument("BTCUSDT",
                                                        maintenance_margin_rate=tier.maintenance_margin_rate))
    assert stats["total_funding"] == pytest.approx(expected.total_funding) and expected.total_funding != 0
    assert stats["final_equity"] == pytest.approx(expected.final_equity)
    no_mark = backtest_positions(pd.read_csv(positions).set_index("timestamp")["position"], frame,
                                 BacktestConfig(leverage=3, position_size=3), funding_rates=rates)
    assert no_mark.total_funding != pytest.approx(expected.total_funding)  # the mark price made a difference


def test_a_store_without_funding_says_so_and_how_to_fetch_it(
        tmp_path: Path, synthetic_year: list[Kline], capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "k.sqlite"
    with FakeExchange({KEY: synthetic_year[:24 * 31]}) as fake:
        assert cli("fetch", "--symbol", "BTCUSDT", "--interval", "60", "--base-url", fake.base_url, "--db", db,
                   *RANGE) == 0
    positions, _ = _positions(tmp_path, db)
    capsys.readouterr()
    assert cli("backtest", "--db", db, "--positions", positions, "--json") == 0
    captured = capsys.readouterr()
    stats = json.loads(captured.out)
    assert stats["funding"] == "none given" and stats["total_funding"] == 0.0
    assert "the store holds no funding for BTCUSDT" in captured.err and "--funding --mark" in captured.err


def test_a_portfolio_of_two_store_series_on_one_equity(tmp_path: Path, synthetic_year: list[Kline],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from reformer.strategy import Leg, backtest_portfolio

    db = tmp_path / "k.sqlite"
    month = synthetic_year[:24 * 31]
    eth = [k._replace(open=k.open / 20, high=k.high / 20, low=k.low / 20, close=k.close / 20) for k in month[::-1]]
    eth = [k._replace(start_time=m.start_time) for k, m in zip(eth, month, strict=True)]  # another path, same bars
    with FakeExchange({KEY: month, ("linear", "ETHUSDT", "60"): eth}) as fake:
        for symbol in ("BTCUSDT", "ETHUSDT"):
            assert cli("fetch", "--symbol", symbol, "--interval", "60", "--base-url", fake.base_url, "--db", db,
                       *RANGE, "--funding", "--mark") == 0
    with DerivativesStore(db) as store:
        frames = {s: store.load_frame("linear", s, "60") for s in ("BTCUSDT", "ETHUSDT")}
        stored = {s: (store.load_funding("linear", s), store.load_mark_frame("linear", s, "60"),
                      store.load_risk_tiers("linear", s)[0].maintenance_margin_rate) for s in frames}
    stamps = frames["BTCUSDT"]["timestamp"].to_numpy()[::12]
    rows = [(t, s, (1.0 if (k + j) % 2 else -1.0)) for k, t in enumerate(stamps)
            for j, s in enumerate(("BTCUSDT", "ETHUSDT"))]
    positions = tmp_path / "portfolio.csv"
    pd.DataFrame(rows, columns=["timestamp", "symbol", "position"]).to_csv(positions, index=False)
    capsys.readouterr()
    assert cli("backtest", "--db", db, "--symbols", "btcusdt,ETHUSDT", "--positions", positions, "--leverage", "3",
               "--position-size", "1.5", "--json") == 0
    stats = json.loads(capsys.readouterr().out)
    config = BacktestConfig(leverage=3, position_size=1.5)
    legs = {}
    for s, frame in frames.items():
        mine = [r for r in rows if r[1] == s]
        targets = pd.Series([r[2] for r in mine], index=pd.to_datetime([r[0] for r in mine], unit="ms", utc=True))
        rates, mark, mmr = stored[s]
        legs[s] = Leg(frame, positions=targets, funding_rates=rates, mark=mark,
                      instrument=Instrument(maintenance_margin_rate=mmr))
    expected = backtest_portfolio(legs, config)
    assert stats["final_equity"] == pytest.approx(expected.result.final_equity)
    assert set(stats["symbols"]) == {"BTCUSDT", "ETHUSDT"}
    assert stats["symbols"]["ETHUSDT"]["n_trades"] == expected.symbols["ETHUSDT"].n_trades > 10
    assert sum(share["pnl"] for share in stats["symbols"].values()) == pytest.approx(
        stats["final_equity"] - 10_000.0)
    assert cli("backtest", "--db", db, "--symbols", "BTCUSDT", "--positions", positions) == 2  # ETH rows: unnamed
    assert "ETHUSDT, which --symbols does not name" in capsys.readouterr().err
    assert cli("backtest", "--db", db, "--symbols", "BTCUSDT,ETHUSDT", "--csv", positions,
               "--positions", positions) == 2
    assert "--csv is for one symbol" in capsys.readouterr().err

"""Paper trading equals the backtest on the same candles, and survives restarts: the fake exchange on loopback,
a real checkpoint and a real SQLite state."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from reformer.api import FakeExchange, Kline
from reformer.errors import UserInputError
from reformer.trade.paper import PaperSettings, PaperTrader, run_paper
from reformer.trade.state import PaperState

from .paper_helpers import (
    CONFIG,
    HOUR,
    KEY,
    SYMBOL,
    assert_matches_backtest,
    backtest_of_state,
    state_tables,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def market(synthetic_year: list[Kline]) -> list[Kline]:
    return synthetic_year[: 24 * 60]


def settings(checkpoint: Path) -> PaperSettings:
    return PaperSettings(str(checkpoint), (SYMBOL,), "60", "linear", CONFIG)


def trade(fake: FakeExchange, state: Path, checkpoint: Path, max_steps: int | None = None) -> int:
    trader = PaperTrader(state, settings(checkpoint), say=lambda line: None)
    try:
        return asyncio.run(run_paper(trader, fake.base_url, max_steps=max_steps, follow=False))
    finally:
        trader.close()


def test_paper_trading_equals_the_backtest_on_the_same_candles(market: list[Kline], checkpoint: Path,
                                                               tmp_path: Path) -> None:
    state = tmp_path / "state"
    with FakeExchange({KEY: market}, now_ms=market[1000].start_time) as fake:
        assert trade(fake, state, checkpoint) == 0  # the warm-up only: candles before the start are not traded
        fake.set_now(market[1200].start_time)
        assert trade(fake, state, checkpoint) == 200  # every candle closed since, in order
    result = backtest_of_state(state)
    assert result.n_trades >= 3 and result.total_funding != 0 and result.total_fees > 0
    assert_matches_backtest(state, result)


def test_restarts_anywhere_leave_the_state_of_an_uninterrupted_run(market: list[Kline], checkpoint: Path,
                                                                    tmp_path: Path) -> None:
    whole, pieces = tmp_path / "whole", tmp_path / "pieces"
    with FakeExchange({KEY: market}, now_ms=market[1000].start_time) as fake:
        trade(fake, whole, checkpoint)
        trade(fake, pieces, checkpoint)
        fake.set_now(market[1150].start_time)
        assert trade(fake, whole, checkpoint) == 150
        for steps in (1, 7, 30, 2, 60):  # a new trader (a restart) for each piece
            trade(fake, pieces, checkpoint, max_steps=steps)
        assert trade(fake, pieces, checkpoint) == 150 - 100
    for mine, theirs in zip(state_tables(pieces), state_tables(whole), strict=True):
        if isinstance(mine, dict):
            assert mine == theirs
        else:
            assert mine.equals(theirs)


def test_wrong_input_is_refused_and_leaves_the_state_unchanged(market: list[Kline], checkpoint: Path,
                                                               tmp_path: Path) -> None:
    state = tmp_path / "state"
    with FakeExchange({KEY: market}, now_ms=market[1000].start_time) as fake:
        trade(fake, state, checkpoint)
        fake.set_now(market[1010].start_time)
        trade(fake, state, checkpoint)
    before = state_tables(state)
    with pytest.raises(UserInputError, match="trained on interval 60 candles and the stream is 240"):
        PaperTrader(state, PaperSettings(str(checkpoint), (SYMBOL,), "240", "linear", CONFIG))
    stale = market[:1005]  # an exchange whose newest candle is older than the state's last
    with FakeExchange({KEY: stale}, now_ms=stale[-1].start_time + HOUR) as fake, \
            pytest.raises(UserInputError, match="older than the last one this state processed"):
        trade(fake, state, checkpoint)
    holed = market[:1015] + market[1030:]  # the exchange has no candles for 15 hours
    with FakeExchange({KEY: holed}, now_ms=market[1100].start_time) as fake, \
            pytest.raises(UserInputError, match="has no 60 candles from"):
        trade(fake, state, checkpoint)
    after = state_tables(state)
    assert all(a.equals(b) if not isinstance(a, dict) else a == b for a, b in zip(after, before, strict=True))
    with pytest.raises(UserInputError, match=r"holds a run with --position-size 2\.0, not 0\.1: resume it"):
        PaperTrader(state, PaperSettings(str(checkpoint), (SYMBOL,), "60", "linear", CONFIG.__class__()))


def test_following_a_live_replay_through_dropped_connections_leaves_no_hole(market: list[Kline], checkpoint: Path,
                                                                            tmp_path: Path) -> None:
    state = tmp_path / "state"
    with FakeExchange({KEY: market}, now_ms=market[1000].start_time) as fake:
        trade(fake, state, checkpoint)  # the warm-up
        fake.replay(market[1000].start_time, speed=36_000)  # an hour candle closes every 0.1 s
        fake.drop_ws_every(0.7)  # and every connection is cut every 0.7 s
        trader = PaperTrader(state, settings(checkpoint), say=lambda line: None)
        try:
            done = asyncio.run(run_paper(trader, fake.base_url, ws_url=fake.ws_url, max_steps=60, follow=True))
        finally:
            trader.close()
    assert done == 60
    with PaperState(state) as paper:
        times = paper.equity()["time"].to_numpy()
    assert (times[1:] - times[:-1] == HOUR).all() and times[0] == market[1000].start_time  # every candle, in order
    assert_matches_backtest(state, backtest_of_state(state))

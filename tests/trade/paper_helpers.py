"""Shared by the paper-trading tests: a small trained checkpoint, a market, and the backtest of a state."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from reformer.api import Kline
from reformer.strategy import BacktestConfig, BacktestResult, Instrument, backtest_positions
from reformer.trade.state import PaperState

SYMBOL = "BTCUSDT"
KEY = ("linear", SYMBOL, "60")
HOUR = 3_600_000
TINY = {"d_model": 8, "n_heads": 2, "n_layers": 1, "n_hash_rounds": 1, "n_buckets": 2, "chunk_size": 16,
        "dropout": 0.0}
CONFIG = BacktestConfig(leverage=3, position_size=2.0, stop_loss=0.01, take_profit=0.02)


def train_checkpoint(candles: list[Kline], out: Path) -> Path:
    from reformer.data.dataset import klines_to_frame
    from reformer.pipelines import train_crypto
    from reformer.training import TrainConfig

    config = TrainConfig(epochs=1, batch_size=32, max_batches_per_epoch=2, patience=0, device="cpu")
    train_crypto(klines_to_frame(candles), seq_len=32, horizon=6, model_overrides=TINY, train_config=config,
                 out_dir=out, source={"symbol": SYMBOL, "interval": "60", "category": "linear"}, progress=False)
    return out


def backtest_of_state(state_dir: Path, symbol: str = SYMBOL, config: BacktestConfig = CONFIG) -> BacktestResult:
    """`backtest_positions` on the state's traded candles, with its targets, funding, mark candles and risk tier."""
    with PaperState(state_dir) as state:
        candles = state.candles(symbol)
        predictions = state.predictions(symbol)
        settings = state.settings()
    assert settings is not None
    traded = candles[candles["step"] >= 0].reset_index(drop=True)
    times = pd.DatetimeIndex(pd.to_datetime(traded["timestamp"], unit="ms", utc=True))
    bars = traded[["timestamp", "open", "high", "low", "close", "volume", "turnover"]]
    positions = pd.Series(predictions["target"].to_numpy(),
                          index=pd.to_datetime(predictions["timestamp"], unit="ms", utc=True))
    positions = positions[positions.index >= times[0]]
    at_open = pd.Series(traded["funding_open"].to_numpy(), index=times)
    inside = pd.Series(traded["funding_inside"].to_numpy(), index=times + pd.Timedelta(minutes=30))
    funding = pd.concat([at_open[at_open != 0], inside[inside != 0]]).sort_index()
    mark = pd.DataFrame({c: traded[f"mark_{c}"].to_numpy() for c in ("open", "high", "low", "close")}, index=times)
    mmr = settings["maintenance_margin_rates"][settings["symbols"].index(symbol)]
    return backtest_positions(positions, bars, config, funding_rates=funding, mark=mark,
                              instrument=Instrument(symbol, maintenance_margin_rate=mmr))


def state_tables(state_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict]:
    """Everything a run leaves: equity, trades, predictions of the first symbol, the engine's snapshot."""
    with PaperState(state_dir) as state:
        equity = state.equity()
        equity["units"] = equity["units"].map(lambda u: tuple(sorted(u.items())))
        equity["exposed"] = equity["exposed"].map(lambda u: tuple(sorted(u.items())))
        snapshot = state.snapshot()
        return equity, state.trades(), state.predictions(SYMBOL), snapshot or {}


def assert_matches_backtest(state_dir: Path, result: BacktestResult) -> None:
    with PaperState(state_dir) as state:
        equity = state.equity()["equity"].to_numpy()
        trades = state.trades()
    np.testing.assert_allclose(equity, result.equity.to_numpy(), rtol=0, atol=1e-9)
    closed = result.trades[~result.trades["open"]].reset_index(drop=True)
    assert len(trades) == len(closed)
    for column in ("units", "entry_price", "exit_price", "pnl", "fees", "funding"):
        np.testing.assert_allclose(trades[column].to_numpy(), closed[column].to_numpy(), rtol=0, atol=1e-9)
    assert list(trades["exit_reason"]) == list(closed["exit_reason"])

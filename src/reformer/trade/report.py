"""A paper-trading run's statistics: the backtest of the state's own candles, targets, funding and mark candles,
checked against the equity the trader recorded.

The trader stepped the backtest's engine one candle at a time; running the engine over the same inputs in one
go gives the same fills, so the report is `reformer backtest`'s result for the run, with every field, trade and
plot that has. The check makes the claim a fact for each report: a state whose recorded equity differs from its
recomputation by more than 1e-9 is reported as inconsistent rather than summarised.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import DataFormatError
from ..strategy import BacktestConfig, BacktestResult, Instrument, Leg, backtest_portfolio
from .state import PaperState

__all__ = ["PaperReport", "paper_report"]


@dataclass(frozen=True)
class PaperReport:
    """The run's result (the account's, for several symbols), its candles per symbol, and its latest state."""

    result: BacktestResult
    candles: dict[str, pd.DataFrame]
    """The traded candles per symbol (timestamp in epoch ms, OHLCV)."""
    symbols: list[str]
    steps: int


def paper_report(state_dir: str | os.PathLike[str]) -> PaperReport:
    """The statistics of the run in `state_dir` so far.

    Raises:
        UserInputError: no state there. DataFormatError: no candle traded yet, or a state whose recorded equity
            its recomputation does not reproduce.
    """
    with PaperState(state_dir) as state:
        settings = state.settings()
        if settings is None or state.last_step() < 0:
            raise DataFormatError(f"{state.path}: no candle has been traded yet; report once the trader has processed "
                                  "one")
        symbols = list(settings["symbols"])
        legs, frames = {}, {}
        for k, symbol in enumerate(symbols):
            candles = state.candles(symbol)
            traded = candles[candles["step"] >= 0].reset_index(drop=True)
            predictions = state.predictions(symbol)
            frames[symbol] = traded[["timestamp", "open", "high", "low", "close", "volume", "turnover"]]
            legs[symbol] = _leg(traded, predictions, settings["maintenance_margin_rates"][k])
        recorded = state.equity()["equity"].to_numpy()
        steps = state.last_step() + 1
    report = backtest_portfolio(legs, BacktestConfig(**settings["config"]))
    recomputed = report.result.equity.to_numpy()
    if len(recomputed) != len(recorded) or not np.allclose(recomputed, recorded, rtol=0, atol=1e-9):
        raise DataFormatError(f"{state_dir}: the recorded equity and its recomputation from the state's candles "
                              "differ; the state was changed by hand or by another version: start a new --state")
    return PaperReport(report.result, frames, symbols, steps)


def _leg(traded: pd.DataFrame, predictions: pd.DataFrame, mmr: float | None) -> Leg:
    """One symbol as the trader saw it: the targets from its first traded candle, the funding at each open and
    inside each bar (half a bar in, where the engine counts any time strictly inside), the mark candles."""
    times = pd.DatetimeIndex(pd.to_datetime(traded["timestamp"], unit="ms", utc=True))
    targets = pd.Series(predictions["target"].to_numpy(),
                        index=pd.to_datetime(predictions["timestamp"], unit="ms", utc=True))
    targets = targets[targets.index >= times[0]]
    if targets.empty:
        targets = pd.Series([0.0], index=times[:1])
    half = (times[1] - times[0]) / 2 if len(times) > 1 else pd.Timedelta(minutes=1)
    at_open = pd.Series(traded["funding_open"].to_numpy(), index=times)
    inside = pd.Series(traded["funding_inside"].to_numpy(), index=times + half)
    funding = pd.concat([at_open[at_open != 0], inside[inside != 0]]).sort_index()
    mark = None
    if traded["mark_open"].notna().all():
        mark = pd.DataFrame({c: traded[f"mark_{c}"].to_numpy() for c in ("open", "high", "low", "close")},
                            index=times)
    klines = traded[["timestamp", "open", "high", "low", "close", "volume", "turnover"]]
    return Leg(klines, positions=targets, funding_rates=funding if len(funding) else None, mark=mark,
               instrument=Instrument(maintenance_margin_rate=mmr))

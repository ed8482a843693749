"""Walk-forward: no prediction uses a model trained on data at or after its bar; plugs into run_backtest."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from reformer.data.synthetic import SyntheticMarketConfig, synthetic_frame
from reformer.model import ReformerConfig
from reformer.strategy import BacktestConfig, run_backtest
from reformer.training.loop import TrainConfig
from reformer.training.walkforward import WalkForwardConfig, WalkForwardPredictor


@pytest.fixture(scope="module")
def market() -> pd.DataFrame:
    return synthetic_frame(SyntheticMarketConfig(n_bars=1400, seed=4))


def _predictor(mode: str) -> WalkForwardPredictor:
    model = ReformerConfig(seq_len=32, d_model=16, n_heads=2, n_layers=1, chunk_size=16, n_buckets=4,
                           n_hash_rounds=1, dropout=0.0)
    train = TrainConfig(epochs=1, batch_size=32, max_batches_per_epoch=3, patience=0, seed=0)
    walk = WalkForwardConfig(horizon=6, train_windows=300, retrain_every=250, mode=mode)  # type: ignore[arg-type]
    return WalkForwardPredictor(model, train, walk)


@pytest.mark.parametrize("mode", ["rolling", "expanding"])
def test_no_prediction_uses_a_model_trained_on_its_bar_or_later(market: pd.DataFrame, mode: str) -> None:
    predictor = _predictor(mode)
    preds = predictor.predict_series(market)
    assert len(predictor.folds) >= 3 and preds.notna().all()
    bar_of = {t: i for i, t in enumerate(pd.to_datetime(market["timestamp"], unit="ms", utc=True))}
    rows = np.array([bar_of[t] for t in preds.index])
    covered = 0
    for fold in predictor.folds:
        in_fold = (rows >= fold.predict_first_bar) & (rows <= fold.predict_last_bar)
        covered += int(in_fold.sum())
        # the last training target closed at or before the first bar this model predicts
        assert fold.target_known_bar <= fold.predict_first_bar
        assert fold.train_last_bar < fold.predict_first_bar
    assert covered == len(preds)
    if mode == "rolling":
        widths = {f.train_last_bar - f.train_first_bar for f in predictor.folds}
        assert len(widths) == 1  # a fixed-size window
    else:
        assert len({f.train_first_bar for f in predictor.folds}) == 1  # always from the start


def test_walk_forward_feeds_run_backtest(market: pd.DataFrame) -> None:
    predictor = _predictor("rolling")
    result = run_backtest(predictor, market, BacktestConfig(commission=0.00055))
    assert result.equity.notna().all() and len(predictor.folds) >= 3

"""Walk-forward: no prediction uses a model trained on data at or after its bar; plugs into run_backtest."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

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
        # the last target a fold used (a validation one) closed before the first bar this model predicts
        assert fold.target_known_bar < fold.predict_first_bar
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


@pytest.mark.filterwarnings("ignore:1 gap\\(s\\) in the candles")
def test_each_fold_scales_by_its_training_windows_only_and_skips_targets_over_gaps(market: pd.DataFrame) -> None:
    from reformer.training import walkforward

    # candles 700-709 missing: a target across the hole would be a 16-bar return called a 6-bar one
    holed = market.drop(index=range(700, 710)).reset_index(drop=True)
    predictor = _predictor("rolling")
    fitted: list[tuple[np.ndarray, np.ndarray]] = []
    real_fit = walkforward.fit

    def spy(model, train, val, config, **kwargs):  # type: ignore[no-untyped-def]
        fitted.append((train.idx.copy(), val.idx.copy()))
        return real_fit(model, train, val, config, **kwargs)

    walkforward.fit = spy
    try:
        predictor.predict_series(holed)
    finally:
        walkforward.fit = real_fit
    times = holed["timestamp"].to_numpy()
    from reformer.data import DataLoader

    ends = DataLoader().prepare_inputs(holed, 32, normalization="none").end_bars
    for (train_idx, val_idx), fold in zip(fitted, predictor.folds, strict=True):
        for idx in (train_idx, val_idx):
            span = times[ends[idx] + 6] - times[ends[idx]]
            assert (span == 6 * 3_600_000).all()  # every target is a true 6-hour return
        # the scaler's bars are the training windows' (the record says which), not the embargo or validation
        assert fold.train_last_bar == ends[train_idx[-1]] and fold.val_last_bar == ends[val_idx[-1]]
        assert fold.train_last_bar + 6 < ends[val_idx[0]]
        assert fold.target_known_bar == fold.val_last_bar + 6 < fold.predict_first_bar


def test_window_bars_are_each_bar_of_the_windows_once() -> None:
    import torch

    from reformer.training.walkforward import _window_bars

    bars = torch.arange(20.0).view(20, 1)  # bar i has the value i
    ends = np.array([3, 4, 5, 9, 10])  # windows of 4 bars; a jump between 5 and 9
    windows = torch.stack([bars[e - 3: e + 1] for e in ends])  # (5, 4, 1)
    got = _window_bars(windows, ends, np.array([0, 1, 3, 4]))[:, 0].tolist()
    assert got == [0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 7.0, 8.0, 9.0, 10.0]  # 5 only in the window left out


def test_run_backtest_walks_a_model_forward(market: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    # run_backtest(model, klines, config) of the original design, one layer above the strategy: the model's
    # configuration, retrained fold by fold with the caller's TrainConfig (its own weights, fitted on everything,
    # would predict bars they saw); too little history is named as such
    import reformer
    from reformer.errors import UserInputError
    from reformer.model import ReformerModel
    from reformer.pipelines import run_backtest as run_model_backtest
    from reformer.pipelines import walk_forward_for

    assert reformer.run_backtest is run_model_backtest
    model = ReformerModel(ReformerConfig(seq_len=32, d_model=16, n_heads=2, n_layers=1, chunk_size=16,
                                         n_buckets=4, n_hash_rounds=1))
    walk = walk_forward_for(model)
    assert isinstance(walk, WalkForwardPredictor) and walk.model_config == model.config
    assert walk.train_config == TrainConfig() and walk.walk == WalkForwardConfig()  # defaults, not a preset
    assert walk_forward_for(pd.Series([0.1])) is None and walk_forward_for(lambda bars: bars) is None
    with pytest.raises(UserInputError, match="leave no bar to predict"):
        reformer.run_backtest(model, market, BacktestConfig())  # 1,400 bars: less than the default 180 days
    fast, walked = _predictor("rolling"), []
    real_predict = WalkForwardPredictor.predict_series

    def spy(self: WalkForwardPredictor, klines: pd.DataFrame) -> pd.Series:
        walked.append(self)
        return real_predict(self, klines)

    monkeypatch.setattr(WalkForwardPredictor, "predict_series", spy)
    result = reformer.run_backtest(model, market, BacktestConfig(commission=0.00055), train_config=fast.train_config,
                                   walk=fast.walk)
    (used,) = walked
    assert (used.model_config, used.train_config, used.walk) == (model.config, fast.train_config, fast.walk)
    assert len(used.folds) >= 3 and result.equity.notna().all()
    # predictions pass straight through to the strategy layer
    momentum = pd.Series(np.sign(market["close"].diff(6).to_numpy()) * 0.01,
                         index=pd.to_datetime(market["timestamp"], unit="ms", utc=True))
    pd.testing.assert_series_equal(reformer.run_backtest(momentum, market).equity,
                                   run_backtest(momentum, market).equity)


def test_the_strategy_layer_refuses_a_model_and_names_the_pipeline(market: pd.DataFrame) -> None:
    import reformer
    from reformer.errors import UserInputError
    from reformer.model import ReformerModel

    model = ReformerModel(ReformerConfig(seq_len=32, d_model=16, n_heads=2, n_layers=1, chunk_size=16,
                                         n_buckets=4, n_hash_rounds=1))
    with pytest.raises(UserInputError, match=r"use reformer\.run_backtest \(or reformer\.pipelines\.run_backtest\)"):
        run_backtest(model, market, BacktestConfig())
    with pytest.raises(UserInputError, match="not one"):
        reformer.run_backtest(torch.nn.Linear(2, 1), market)  # a torch module, but not a ReformerModel
    with pytest.raises(UserInputError, match="train_config apply to a ReformerModel"):
        reformer.run_backtest(_predictor("rolling"), market, train_config=TrainConfig())

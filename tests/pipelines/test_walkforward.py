"""Walk-forward: no prediction uses a model trained on data at or after its bar; plugs into run_backtest."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from reformer.data import DataLoader
from reformer.data.features import FeatureSpec
from reformer.data.synthetic import SyntheticMarketConfig, synthetic_frame
from reformer.model import ReformerConfig
from reformer.pipelines.walkforward import WalkForwardConfig, WalkForwardPredictor
from reformer.strategy import BacktestConfig, run_backtest
from reformer.training.loop import TrainConfig


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
    from reformer.data import StandardScaler
    from reformer.data.features import compute_features
    from reformer.pipelines import walkforward

    # candles 700-709 missing: a target across the hole would be a 16-bar return called a 6-bar one
    holed = market.drop(index=range(700, 710)).reset_index(drop=True)
    predictor = _predictor("rolling")
    fitted: list[tuple[np.ndarray, np.ndarray]] = []
    scalers: list[StandardScaler | None] = []
    real_fit, real_data = walkforward.fit, walkforward.crypto_data

    def spy(model, train, val, config, **kwargs):  # type: ignore[no-untyped-def]
        fitted.append((train.indices.copy(), val.indices.copy()))
        return real_fit(model, train, val, config, **kwargs)

    def data_spy(prepared, task):  # type: ignore[no-untyped-def]
        scalers.append(prepared.scaler)
        return real_data(prepared, task)

    walkforward.fit, walkforward.crypto_data = spy, data_spy
    try:
        predictor.predict_series(holed)
    finally:
        walkforward.fit, walkforward.crypto_data = real_fit, real_data
    times = holed["timestamp"].to_numpy()
    from reformer.data import DataLoader

    ends = DataLoader().prepare_inputs(holed, 32, normalization="none").end_bars
    values = compute_features(holed, FeatureSpec().resolve(True)).to_numpy(dtype=np.float64)
    for (train_idx, val_idx), scaler, fold in zip(fitted, scalers, predictor.folds, strict=True):
        for idx in (train_idx, val_idx):
            span = times[ends[idx] + 6] - times[ends[idx]]
            assert (span == 6 * 3_600_000).all()  # every target is a true 6-hour return
        # the scaler's bars are the training windows' (the record says which), not the embargo or validation
        assert fold.train_last_bar == ends[train_idx[-1]] and fold.val_last_bar == ends[val_idx[-1]]
        assert fold.train_first_bar == ends[train_idx[0]] - 31
        assert fold.train_last_bar + 6 < ends[val_idx[0]]
        assert fold.target_known_bar == fold.val_last_bar + 6 < fold.predict_first_bar
        expected = StandardScaler().fit(values[fold.train_first_bar: fold.train_last_bar + 1])
        assert scaler is not None
        np.testing.assert_array_equal(scaler.mean, expected.mean)
        np.testing.assert_array_equal(scaler.std, expected.std)


def test_changing_bars_after_a_block_s_first_bar_changes_nothing_in_its_model(market: pd.DataFrame) -> None:
    # no look-ahead, end to end: the bars from a block's first predicted bar on are changed; that block's model
    # (its record, loss, target scale) and every forecast up to that bar stay exactly what they were
    predictor = _predictor("rolling")
    preds = predictor.predict_series(market)
    cut = predictor.folds[1].predict_first_bar
    changed = market.copy()
    noise = np.exp(np.random.default_rng(0).normal(0.0, 0.02, len(market) - cut - 1))
    for column in ("open", "high", "low", "close", "volume"):
        changed.loc[cut + 1:, column] = changed.loc[cut + 1:, column].to_numpy() * noise
    again = _predictor("rolling")
    other = again.predict_series(changed)
    assert again.folds[:2] == predictor.folds[:2]
    until = pd.Timestamp(int(market["timestamp"].iloc[cut]), unit="ms", tz="UTC")
    pd.testing.assert_series_equal(other[:until], preds[:until])
    assert again.folds[2] != predictor.folds[2] and not other[until:].iloc[1:].equals(preds[until:].iloc[1:])


def test_the_loss_sees_targets_scaled_as_the_crypto_pipeline_scales_them(market: pd.DataFrame) -> None:
    # the predictor trains on returns / (std of its training windows' returns), as train_crypto does, not on raw
    # returns of ~1e-2 (under which a Huber loss is an MSE and the outputs are all but constant)
    from reformer.pipelines import walkforward

    predictor = _predictor("rolling")
    seen: list[tuple[np.ndarray, np.ndarray]] = []
    real_fit = walkforward.fit

    def spy(model, train, val, config, **kwargs):  # type: ignore[no-untyped-def]
        targets = [np.array([float(ds[i][1]) for i in range(len(ds))]) for ds in (train, val)]
        seen.append((targets[0], targets[1]))
        return real_fit(model, train, val, config, **kwargs)

    walkforward.fit = spy
    try:
        predictor.predict_series(market)
    finally:
        walkforward.fit = real_fit
    close = market["close"].to_numpy()
    ends = DataLoader().prepare_inputs(market, 32, normalization="none").end_bars
    assert len(seen) == len(predictor.folds) >= 3
    for (train, val), fold in zip(seen, predictor.folds, strict=True):
        assert np.std(train) == pytest.approx(1.0, rel=1e-5)  # the scale of the crypto pipeline's targets
        train_ends = ends[(ends >= fold.train_first_bar + 31) & (ends <= fold.train_last_bar)]
        raw = np.log(close[train_ends + 6] / close[train_ends])
        assert fold.target_scale == pytest.approx(float(np.std(raw)), rel=1e-12)
        np.testing.assert_allclose(train, raw / fold.target_scale, rtol=1e-5, atol=1e-6)
        assert 0.1 < np.std(val) < 10.0


def test_a_fold_is_the_crypto_pipeline_s_fit_on_the_data_layer_s_fold(market: pd.DataFrame,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # one engine: the predictor's folds are `walk_forward_folds`' (called once, through the DataLoader), and each
    # fold's forecasts are, bit for bit, those of the crypto pipeline's fit on the data layer's fold
    from reformer.data import dataset as dataset_module
    from reformer.data.windows import walk_forward_folds
    from reformer.model import ReformerModel
    from reformer.pipelines.crypto_eval import crypto_data, outputs_to_scores
    from reformer.training.loop import fit, predict_dataset

    walk = WalkForwardConfig(horizon=6, train_windows=300, retrain_every=250)
    assert walk.fold_windows == (249, 45) and walk.embargo == 7  # 300 = 249 training + 6 embargo + 45 validation
    calls = []

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(walk_forward_folds(*args, **kwargs))
        return calls[-1]

    monkeypatch.setattr(dataset_module, "walk_forward_folds", spy)
    predictor = _predictor("rolling")
    preds = predictor.predict_series(market)
    monkeypatch.undo()
    (used,) = calls
    # the same layout straight from the data layer, for the same settings
    ends = DataLoader().prepare_inputs(market, 32, normalization="none").end_bars
    expected = walk_forward_folds(ends, 6, None, 250, 249, 45, "rolling", 7, trainable=ends + 6 < len(market))
    assert len(used) == len(expected) == len(predictor.folds)
    for split, same, fold in zip(used, expected, predictor.folds, strict=True):
        for part in ("train", "val", "test"):
            np.testing.assert_array_equal(getattr(split, part), getattr(same, part))
        assert (fold.train_first_bar, fold.train_last_bar, fold.val_last_bar, fold.predict_first_bar,
                fold.predict_last_bar) == (ends[split.train[0]] - 31, ends[split.train[-1]], ends[split.val[-1]],
                                           ends[split.test[0]], ends[split.test[-1]])
    assert preds.index[0] == pd.Timestamp(int(market["timestamp"].iloc[ends[expected[0].test[0]]]), unit="ms",
                                          tz="UTC")
    folds = DataLoader().prepare_walk_forward(market, 32, 6, n_folds=None, test_windows=250, train_windows=249,
                                              val_windows=45, embargo=7)
    predictor_config = predictor.model_config.replace(n_features=len(folds[0].feature_names))
    start = 0
    for prepared, fold in zip(folds, predictor.folds, strict=True):
        data = crypto_data(prepared, "regression")
        model = ReformerModel(predictor_config)
        result = fit(model, data.train, data.val, predictor.train_config, progress=False)
        outputs, _ = predict_dataset(model, data.test)
        forecast, _ = outputs_to_scores(outputs, "regression", data.target_scale)
        assert result.best_val_loss == fold.best_val_loss and data.target_scale == fold.target_scale
        np.testing.assert_array_equal(forecast, preds.to_numpy()[start: start + len(forecast)])
        start += len(forecast)
    assert start == len(preds)


def test_settings_that_cannot_walk_are_refused(market: pd.DataFrame) -> None:
    from reformer.errors import ConfigError

    with pytest.raises(ConfigError, match="leaves no training window"):
        WalkForwardConfig(horizon=6, train_windows=7)  # 1 validation window and 6 embargo windows leave none
    assert WalkForwardConfig(horizon=6, train_windows=9).fold_windows == (2, 1)
    classifier = _predictor("rolling")
    classifier.model_config = classifier.model_config.replace(task="classification")
    with pytest.raises(ConfigError, match="forecasts returns"):
        classifier.predict_series(market)


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

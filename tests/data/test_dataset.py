"""DataLoader facade: windows, targets, causality, embargo, train-only scaling, inference windows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from reformer.api.types import Kline
from reformer.data.dataset import DataLoader, DatasetConfig, PreparedDataset, klines_to_frame
from reformer.data.features import FeatureSpec
from reformer.data.scaling import StandardScaler, normalize_windows
from reformer.data.windows import target_periods_disjoint
from reformer.errors import ConfigError, DataFormatError, UserInputError

from ..synthetic import candle_slice

SEQ_LEN, HORIZON = 48, 12


@pytest.fixture(scope="module", params=["synthetic", "real"])
def candles(request: pytest.FixtureRequest) -> pd.DataFrame:
    """3,000 hourly candles: synthetic ones (tests/synthetic.py), then a slice of the real BTC file."""
    return candle_slice(request, real_start=30_000, synthetic_start=4_000)


@pytest.fixture(scope="module")
def prepared(candles: pd.DataFrame) -> PreparedDataset:
    return DataLoader().prepare_dataset(candles, SEQ_LEN, HORIZON)


def test_shapes_targets_and_timestamps(candles: pd.DataFrame, prepared: PreparedDataset) -> None:
    warmup = prepared.spec.warmup
    n_windows = len(candles) - warmup - SEQ_LEN + 1 - HORIZON
    assert prepared.features.shape == (n_windows, SEQ_LEN, len(prepared.feature_names))
    assert prepared.features.dtype == torch.float32 and torch.isfinite(prepared.features).all()
    assert prepared.targets.shape == (n_windows,) and prepared.targets.dtype == torch.float32
    ends = prepared.end_bars
    assert ends[0] == warmup + SEQ_LEN - 1 and ends[-1] == len(candles) - 1 - HORIZON
    np.testing.assert_array_equal(prepared.timestamps, candles["timestamp"].to_numpy()[ends])
    close = candles["close"].to_numpy()
    np.testing.assert_allclose(prepared.targets.numpy(), np.log(close[ends + HORIZON] / close[ends]), rtol=1e-6)


def test_klines_list_equals_frame(candles: pd.DataFrame, prepared: PreparedDataset) -> None:
    klines = [Kline(int(r.timestamp), r.open, r.high, r.low, r.close, r.volume, r.turnover)
              for r in candles.itertuples()]
    from_list = DataLoader().prepare_dataset(klines, SEQ_LEN, HORIZON)
    torch.testing.assert_close(from_list.features, prepared.features, rtol=0, atol=0)
    assert from_list.feature_names == prepared.feature_names


@pytest.mark.parametrize("form", ["start_time", "datetime column", "DatetimeIndex"])
def test_other_time_forms_give_the_same_dataset(candles: pd.DataFrame, prepared: PreparedDataset, form: str) -> None:
    # a datetime column's int64 is its own unit (us or ns): read as ms it moved every bar ~55,000 years ahead
    if form == "start_time":
        frame = candles.rename(columns={"timestamp": "start_time"})
    elif form == "datetime column":
        frame = candles.assign(timestamp=pd.to_datetime(candles["timestamp"], unit="ms"))
    else:
        frame = candles.set_index(pd.to_datetime(candles["timestamp"], unit="ms", utc=True)).drop(columns="timestamp")
    assert klines_to_frame(frame)["timestamp"].tolist() == candles["timestamp"].tolist()
    other = DataLoader().prepare_dataset(frame, SEQ_LEN, HORIZON)
    torch.testing.assert_close(other.features, prepared.features, rtol=0, atol=0)
    assert np.array_equal(other.timestamps, prepared.timestamps)


@pytest.mark.parametrize("normalization", ["train", "window", "none"])
def test_windows_are_causal(candles: pd.DataFrame, normalization: str) -> None:
    loader = DataLoader()
    base = loader.prepare_dataset(candles, SEQ_LEN, HORIZON, normalization=normalization)  # type: ignore[arg-type]
    rng = np.random.default_rng(3)
    # t in the test region, so the training rows (and a train-fitted scaler) are untouched
    t = int(base.end_bars[base.split.test[0]] + rng.integers(0, 200))
    perturbed = candles.copy()
    for column in ("open", "high", "low", "close", "volume", "turnover"):
        perturbed.loc[t + 1:, column] *= np.exp(rng.normal(0, 0.05, len(candles) - t - 1))
    other = loader.prepare_dataset(perturbed, SEQ_LEN, HORIZON, normalization=normalization)  # type: ignore[arg-type]
    upto = base.end_bars <= t
    torch.testing.assert_close(other.features[upto], base.features[upto], rtol=0, atol=0)
    assert not torch.equal(other.features[~upto], base.features[~upto])


def test_splits_respect_the_embargo(prepared: PreparedDataset) -> None:
    ends, split = prepared.end_bars, prepared.split
    for earlier, later in ((split.train, split.val), (split.train, split.test), (split.val, split.test)):
        assert target_periods_disjoint(ends, earlier, later, HORIZON)
        assert ends[later].min() - ends[earlier].max() >= HORIZON
    sizes = np.array(split.sizes()) / len(prepared)
    np.testing.assert_allclose(sizes, [0.7, 0.1, 0.2], atol=0.01)


def test_scaler_is_fitted_on_train_only(candles: pd.DataFrame, prepared: PreparedDataset) -> None:
    assert prepared.scaler is not None
    train_flat = prepared.features[prepared.split.train].reshape(-1, len(prepared.feature_names))
    np.testing.assert_allclose(train_flat.mean(0).numpy(), 0.0, atol=0.05)  # rows repeat across windows
    changed = candles.copy()
    first_val_bar = int(prepared.end_bars[prepared.split.val[0]])
    changed.loc[first_val_bar:, ["open", "high", "low", "close"]] *= 3.0
    changed.loc[first_val_bar:, ["volume", "turnover"]] *= 10.0
    other = DataLoader().prepare_dataset(changed, SEQ_LEN, HORIZON)
    assert other.scaler is not None
    assert other.scaler.to_dict() == prepared.scaler.to_dict()
    torch.testing.assert_close(other.features[other.split.train], prepared.features[prepared.split.train])


def test_scaler_round_trip_and_inference_windows(candles: pd.DataFrame, prepared: PreparedDataset) -> None:
    assert prepared.scaler is not None
    scaler = StandardScaler.from_dict(prepared.scaler.to_dict())
    inputs = DataLoader(prepared.spec).prepare_inputs(candles, SEQ_LEN, scaler=scaler)
    assert inputs.end_bars[-1] == len(candles) - 1  # the latest bar has a window
    position = np.searchsorted(inputs.end_bars, prepared.end_bars[-1])
    torch.testing.assert_close(inputs.features[position], prepared.features[-1])
    with pytest.raises(ConfigError, match="scaler"):
        DataLoader().prepare_inputs(candles, SEQ_LEN)
    meta = prepared.metadata()
    assert FeatureSpec.from_dict(meta["spec"]) == prepared.spec
    assert DatasetConfig.from_dict(meta["config"]) == prepared.config


def test_per_window_normalisation_and_classification(candles: pd.DataFrame) -> None:
    data = DataLoader().prepare_dataset(candles, SEQ_LEN, HORIZON, normalization="window", task="classification",
                                        class_threshold=0.004)
    assert data.scaler is None and data.targets.dtype == torch.int64
    np.testing.assert_array_equal(data.targets.numpy(), np.digitize(data.forward_returns, [-0.004, 0.004 + 1e-15]))
    stats = data.features[:, :, :3].mean(1)
    np.testing.assert_allclose(stats.numpy(), 0.0, atol=1e-4)
    raw = DataLoader().prepare_dataset(candles, SEQ_LEN, HORIZON, normalization="none")
    expected, _, _ = normalize_windows(raw.features[:5].numpy().astype(np.float64))
    torch.testing.assert_close(data.features[:5], torch.from_numpy(expected), rtol=1e-4, atol=1e-4)


def test_torch_dataset_batches(prepared: PreparedDataset) -> None:
    loader = torch.utils.data.DataLoader(prepared.train, batch_size=32, shuffle=False)
    x, y = next(iter(loader))
    assert x.shape == (32, SEQ_LEN, len(prepared.feature_names)) and y.shape == (32,)
    assert len(prepared.train) + len(prepared.val) + len(prepared.test) <= len(prepared)
    with pytest.raises(UserInputError):
        prepared.subset("holdout")  # type: ignore[arg-type]


def test_walk_forward_datasets(candles: pd.DataFrame) -> None:
    folds = DataLoader().prepare_walk_forward(candles, SEQ_LEN, HORIZON, n_folds=3, test_windows=300,
                                              train_windows=1200, val_windows=100)
    assert len(folds) == 3
    for fold in folds:
        split, ends = fold.split, fold.end_bars
        assert target_periods_disjoint(ends, split.train, split.val, HORIZON)
        assert target_periods_disjoint(ends, split.val, split.test, HORIZON)
        train_flat = fold.features[split.train].reshape(-1, fold.features.shape[-1])
        np.testing.assert_allclose(train_flat.mean(0).numpy(), 0.0, atol=0.05)
    assert folds[0].scaler is not None and folds[1].scaler is not None
    assert folds[0].scaler.to_dict() != folds[1].scaler.to_dict()
    # without a training scaler the folds share one window tensor, equal to a single preparation's
    windowed = DataLoader().prepare_walk_forward(candles, SEQ_LEN, HORIZON, n_folds=3, test_windows=300,
                                                 train_windows=1200, val_windows=100, normalization="window")
    assert all(fold.features is windowed[0].features for fold in windowed)
    single = DataLoader().prepare_dataset(candles, SEQ_LEN, HORIZON, normalization="window")
    assert torch.equal(windowed[0].features, single.features)


def test_turnover_optional_and_bad_candles(candles: pd.DataFrame) -> None:
    no_turnover = candles.drop(columns="turnover")
    data = DataLoader().prepare_dataset(no_turnover, SEQ_LEN, HORIZON)
    assert "turnover_z" not in data.feature_names and "turnover_z" not in data.spec.groups
    with pytest.raises(DataFormatError, match="turnover"):
        DataLoader(FeatureSpec(allow_missing_turnover=False)).prepare_dataset(no_turnover, SEQ_LEN, HORIZON)
    with pytest.raises(UserInputError, match="fetch more"):
        DataLoader().prepare_dataset(candles.iloc[:200], SEQ_LEN, HORIZON)
    shuffled = candles.iloc[[1, 0, *range(2, 400)]]
    with pytest.raises(DataFormatError, match="strictly increase"):
        klines_to_frame(shuffled)
    broken = candles.iloc[:400].copy()
    broken["close"] = broken["close"].astype(object)
    broken.loc[5, "close"] = "n/a"
    with pytest.raises(DataFormatError, match="row 5, column 'close'"):
        klines_to_frame(broken)
    with pytest.raises(ConfigError, match="embargo"):
        DataLoader().prepare_dataset(candles, SEQ_LEN, HORIZON, embargo=HORIZON - 1)


def test_bar_runs_split_at_gaps_and_keep_calendar_months_whole() -> None:
    from reformer.data.windows import bar_runs, gap_free_ends

    hour = 3_600_000
    times = np.array([0, 1, 2, 3, 6, 7, 8, 20, 21]) * hour  # gaps after bars 3 and 6
    assert bar_runs(times).tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2]
    assert bar_runs(np.arange(50) * hour).max() == 0
    months = pd.date_range("2020-01-01", periods=30, freq="MS", tz="UTC").as_unit("ms").asi8  # 28-31 day steps
    assert bar_runs(months).max() == 0
    runs = bar_runs(times)
    # windows needing 1 bar before and 1 after: only those whose 3 bars share a run
    assert gap_free_ends(np.arange(1, 8), runs, 1, 1).tolist() == [1, 2, 5]


def test_windows_never_span_a_gap_in_the_candles(candles: pd.DataFrame) -> None:
    holed = pd.concat([candles.iloc[:1400], candles.iloc[1500:]]).reset_index(drop=True)  # 100 hours missing
    with pytest.warns(UserWarning, match=r"1 gap\(s\) in the candles .* windows span one and are left out"):
        data = DataLoader().prepare_dataset(holed, SEQ_LEN, HORIZON)
    warmup = data.spec.warmup
    times = holed["timestamp"].to_numpy()
    first, last = data.end_bars - warmup - SEQ_LEN + 1, data.end_bars + HORIZON
    spans = times[last] - times[first]
    assert (spans == (last - first) * 3_600_000).all()  # every kept window's bars and target are contiguous
    # exactly the windows that fit on either side of the hole: the same as preparing the two pieces apart
    per_side = [len(piece) - warmup - SEQ_LEN + 1 - HORIZON for piece in (holed.iloc[:1400], holed.iloc[1400:])]
    assert len(data.end_bars) == sum(per_side)
    # targets are the true h-hour returns: no window's target crosses the hole
    close = holed["close"].to_numpy()
    assert np.allclose(data.forward_returns, np.log(close[data.end_bars + HORIZON] / close[data.end_bars]))

    with pytest.warns(UserWarning, match="gap"):
        inputs = DataLoader().prepare_inputs(holed, SEQ_LEN, normalization="window")
    assert inputs.end_bars[-1] == len(holed) - 1 and 1400 + warmup + SEQ_LEN - 1 == int(
        inputs.end_bars[np.argmax(inputs.end_bars >= 1400)])

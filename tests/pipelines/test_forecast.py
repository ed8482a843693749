"""LSTF protocol: Repeat reproduced on ETTh1, every test window scored, RevIN inverse, patch shapes, baselines."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from reformer.data.dataset import series_windows
from reformer.data.timeseries import load_timeseries_csv, lstf_splits
from reformer.errors import ConfigError
from reformer.model import ForecastConfig, PatchReformerForecaster, RevIN, n_patches, patchify
from reformer.pipelines.lstf import (
    blend_weight,
    drop_last_windows,
    evaluate_forecaster,
    evaluate_forecasters,
    init_linear_skip,
)
from reformer.training.baselines import LinearForecaster, repeat_forecast

from ..synthetic import write_ett_like_csv

# Repeat on ETTh1 as published (train-only z-score, every test window), MSE / MAE.
REPEAT_M = {96: (1.294, 0.713), 192: (1.325, 0.733), 336: (1.330, 0.746), 720: (1.335, 0.755)}
REPEAT_S = {24: (0.034, 0.139), 96: (0.069, 0.203), 720: (0.129, 0.283)}


@pytest.mark.parametrize(("features", "horizon"), [("M", h) for h in REPEAT_M] + [("S", h) for h in REPEAT_S])
def test_repeat_reproduces_the_published_etth1_numbers(etth1_csv: Path, features: str, horizon: int) -> None:
    series = load_timeseries_csv(etth1_csv, features=features)  # type: ignore[arg-type]
    splits = lstf_splits(series, seq_len=96, pred_len=horizon, protocol="ett_hour")
    test = series_windows(splits.test, 96, horizon)
    metrics = evaluate_forecaster(lambda x: repeat_forecast(x, horizon), test, batch_size=1000)
    expected_mse, expected_mae = (REPEAT_M if features == "M" else REPEAT_S)[horizon]
    assert metrics.mse == pytest.approx(expected_mse, abs=0.01)
    assert metrics.mae == pytest.approx(expected_mae, abs=0.01)
    assert metrics.n_windows == 2880 - horizon + 1  # every test window, no drop_last


@pytest.mark.parametrize(("features", "horizon"), [("M", 96), ("S", 720)])
def test_repeat_scores_every_test_window_of_a_series_in_etth1s_layout(tmp_path: Path, features: str,
                                                                       horizon: int) -> None:
    # the published numbers above belong to ETTh1 itself; on a synthetic file of its layout and length the same
    # pipeline (ett-hour borders, train-only z-score, every test window) is checked against Repeat done by hand
    path = tmp_path / "ett_like.csv"
    raw = write_ett_like_csv(path)
    if features == "S":
        raw = raw[:, -1:]  # OT, the default target
    series = load_timeseries_csv(path, features=features)  # type: ignore[arg-type]
    splits = lstf_splits(series, seq_len=96, pred_len=horizon, protocol="ett_hour")
    metrics = evaluate_forecaster(lambda x: repeat_forecast(x, horizon), series_windows(splits.test, 96, horizon),
                                  batch_size=1000)
    train = raw[:8640]
    test = ((raw - train.mean(axis=0)) / train.std(axis=0))[8640 + 2880 - 96:14400]
    starts = np.arange(len(test) - 96 - horizon + 1)
    errors = np.stack([test[s + 96:s + 96 + horizon] - test[s + 95] for s in starts])  # (windows, h, c)
    assert metrics.n_windows == len(starts) == 2880 - horizon + 1
    assert metrics.mse == pytest.approx(float(np.mean(errors**2)), rel=1e-5)
    assert metrics.mae == pytest.approx(float(np.mean(np.abs(errors))), rel=1e-5)


def test_metrics_cover_every_window_even_with_a_ragged_last_batch() -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(size=(40, 3)).astype(np.float32)
    windows = series_windows(data, seq_len=5, horizon=4)
    assert len(windows) == 40 - 5 - 4 + 1

    def predict(x: torch.Tensor) -> torch.Tensor:
        return x[:, :4] * 0.5  # (b, t, c), any deterministic function of the input

    by_hand_sq, by_hand_abs = [], []
    for start in range(len(windows)):
        x, y = data[start:start + 5], data[start + 5:start + 9]
        err = x[:4] * 0.5 - y
        by_hand_sq.append(np.square(err))
        by_hand_abs.append(np.abs(err))
    metrics = evaluate_forecaster(predict, windows, batch_size=7)  # 32 windows: 4 full batches + 4
    assert metrics.n_windows == 32
    assert metrics.mse == pytest.approx(float(np.mean(by_hand_sq)), rel=1e-6)
    assert metrics.mae == pytest.approx(float(np.mean(by_hand_abs)), rel=1e-6)
    target_only = evaluate_forecaster(predict, windows, target_only=True, batch_size=7)
    assert target_only.mse == pytest.approx(float(np.mean(np.stack(by_hand_sq)[..., -1])), rel=1e-6)


def test_leading_windows_are_scored_as_a_drop_last_loader_would() -> None:
    # PatchTST's ETTh1 test loader: batch 128, drop_last=True -> the first n - n % 128 windows
    assert [drop_last_windows(n, 128) for n in (2785, 2689, 2545, 2161, 127, 128)] == [2688, 2688, 2432, 2048, 0, 128]
    with pytest.raises(ValueError, match="batch_size"):
        drop_last_windows(10, 0)
    rng = np.random.default_rng(1)
    data = rng.normal(size=(60, 2)).astype(np.float32)
    windows = series_windows(data, seq_len=6, horizon=3)  # 52 windows
    leading = drop_last_windows(len(windows), 16)  # 48: the 4 latest are left out
    assert leading == 48

    def predict(x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"half": x[:, -3:] * 0.5, "zero": torch.zeros_like(x[:, :3])}

    scores = evaluate_forecasters(predict, windows, batch_size=10, leading=leading)  # the cut falls mid-batch
    alone = series_windows(data[: leading + 6 + 3 - 1], seq_len=6, horizon=3)  # exactly the leading windows
    assert len(alone) == leading
    for name in ("half", "zero"):
        expected = evaluate_forecasters(predict, alone, batch_size=7)[name]
        got = scores[f"{name}@leading"]
        assert got.n_windows == leading and scores[name].n_windows == 52
        assert got.mse == pytest.approx(expected.mse, rel=1e-9) and got.mae == pytest.approx(expected.mae, rel=1e-9)
        assert got.mse != pytest.approx(scores[name].mse, rel=1e-6)  # the four left-out windows count in the full
    assert set(evaluate_forecasters(predict, windows)) == {"half", "zero"}  # no subset unless asked

def test_window_set_items_match_batches() -> None:
    data = np.arange(60, dtype=np.float32).reshape(20, 3)
    windows = series_windows(data, seq_len=6, horizon=2)
    x, y = windows[3]
    np.testing.assert_array_equal(x.numpy(), data[3:9])
    np.testing.assert_array_equal(y.numpy(), data[9:11])
    xb, yb = windows.batch(torch.tensor([3, 0]))
    assert xb.shape == (2, 6, 3) and yb.shape == (2, 2, 3)
    np.testing.assert_array_equal(xb[0].numpy(), x.numpy())


@pytest.mark.parametrize("affine", [True, False])
def test_revin_is_invertible(affine: bool) -> None:
    torch.manual_seed(0)
    revin = RevIN(4, affine=affine)
    if affine:
        with torch.no_grad():
            revin.gamma.uniform_(0.5, 2.0)  # type: ignore[union-attr]
            revin.beta.normal_()  # type: ignore[union-attr]
    x = torch.randn(3, 50, 4) * torch.tensor([1.0, 10.0, 0.1, 3.0]) + torch.tensor([5.0, -2.0, 0.0, 100.0])
    normed, stats = revin.normalize(x)
    if not affine:
        torch.testing.assert_close(normed.mean(dim=1), torch.zeros(3, 4), atol=1e-4, rtol=0)
        torch.testing.assert_close(normed.std(dim=1, unbiased=False), torch.ones(3, 4), atol=1e-3, rtol=0)
    torch.testing.assert_close(revin.denormalize(normed, stats), x, atol=1e-3, rtol=1e-5)


def test_patchify_shapes_and_contents() -> None:
    x = torch.arange(2 * 336 * 7, dtype=torch.float32).reshape(2, 336, 7)
    patches = patchify(x, patch_len=16, stride=8)
    assert n_patches(336, 16, 8) == 42
    assert patches.shape == (2 * 7, 42, 16)
    # row b*c + j is channel j of window b; patch k covers steps [8k, 8k + 16)
    torch.testing.assert_close(patches[1 * 7 + 3, 5], x[1, 40:56, 3])
    # the last patch runs past the end: padded by repeating the last value
    torch.testing.assert_close(patches[0, -1, :8], x[0, 328:, 0])
    torch.testing.assert_close(patches[0, -1, 8:], x[0, -1, 0].expand(8))


@pytest.mark.parametrize("attention", ["full", "lsh"])
def test_forecaster_maps_windows_to_horizons(attention: str) -> None:
    config = ForecastConfig(seq_len=48, horizon=12, n_channels=3, patch_len=8, stride=4, d_model=16, n_heads=2,
                            n_layers=1, d_ff=32, attention_type=attention, chunk_size=4, n_buckets=4)
    model = PatchReformerForecaster(config)
    x = torch.randn(5, 48, 3, requires_grad=True)
    y = model(x)
    assert y.shape == (5, 12, 3)
    y.square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    with pytest.raises(ConfigError, match="seq_len=48"):
        model(torch.randn(5, 40, 3))


def test_forecaster_is_shift_and_scale_equivariant_with_revin() -> None:
    config = ForecastConfig(seq_len=32, horizon=8, n_channels=2, patch_len=8, stride=8, d_model=16, n_heads=2,
                            n_layers=1, d_ff=32, attention_type="full", dropout=0.0)
    model = PatchReformerForecaster(config).eval()
    x = torch.randn(4, 32, 2)
    with torch.no_grad():
        base, moved = model(x), model(3.0 * x + 7.0)
    torch.testing.assert_close(moved, 3.0 * base + 7.0, atol=1e-3, rtol=1e-4)


def test_linear_baseline_recovers_a_linear_process() -> None:
    rng = np.random.default_rng(1)
    n, l, t = 400, 6, 3
    x = rng.normal(size=(n, l, 2))
    # y_k = x_last + 0.5 (x_last - x_first) * (k + 1): linear in the centred window
    slope = (x[:, -1] - x[:, 0])[:, None, :] * 0.5 * np.arange(1, t + 1)[None, :, None]
    y = x[:, -1:, :] + slope
    model = LinearForecaster(ridge=1e-9).fit(x, y)
    np.testing.assert_allclose(model.predict(x[:5]), y[:5], atol=1e-4)
    with pytest.raises(ConfigError):
        LinearForecaster().predict(x)


def test_linear_skip_starts_at_the_least_squares_fit_and_learns_only_the_residual() -> None:
    # a process that is exactly linear in the RevIN frame: y_k = x_last + 0.5 (x_last - x_first) (k + 1)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 32, 2)).astype(np.float32)
    slope = (x[:, -1] - x[:, 0])[:, None, :] * 0.5 * np.arange(1, 9)[None, :, None]
    y = (x[:, -1:, :] + slope).astype(np.float32)
    config = ForecastConfig(seq_len=32, horizon=8, n_channels=2, patch_len=8, stride=8, d_model=16, n_heads=2,
                            n_layers=1, d_ff=32, attention_type="full", dropout=0.0, linear_skip=True)
    model = PatchReformerForecaster(config).eval()
    with torch.no_grad():  # the encoder's head starts at zero and the skip at zero: the forecast is x_last
        torch.testing.assert_close(model(torch.from_numpy(x[:4])), torch.from_numpy(x[:4, -1:]).expand(-1, 8, -1))
    init_linear_skip(model, x, y, ridge=1e-9)
    with torch.no_grad():
        torch.testing.assert_close(model(torch.from_numpy(x[:16])), torch.from_numpy(y[:16]), atol=1e-3, rtol=1e-3)
    assert model.skip is not None and not model.skip.weight.requires_grad  # fixed: the encoder learns the residual
    with pytest.raises(ConfigError, match="linear_skip=True"):
        init_linear_skip(PatchReformerForecaster(ForecastConfig(seq_len=32, horizon=8, n_channels=2)), x, y)
    with pytest.raises(ConfigError, match="linear_skip=True"):
        PatchReformerForecaster(ForecastConfig(seq_len=32, horizon=8, n_channels=2)).set_linear_skip(
            torch.zeros(8, 32), torch.zeros(8))
    with pytest.raises(ConfigError, match=r"expected W \(horizon=8, seq_len=32\)"):
        model.set_linear_skip(torch.zeros(32, 8), torch.zeros(8))


def test_blend_weight_is_the_validation_least_squares_mix() -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(size=(400, 3)).astype(np.float32)  # (rows, c)
    windows = series_windows(data, seq_len=8, horizon=4)
    # first = truth + noise_a, second = truth + noise_b with independent noise of variances 1 and 4:
    # the optimal weight of `first` is 4 / (1 + 4) = 0.8
    x_all, y_all = windows.batch(slice(None))
    noise_a = torch.from_numpy(rng.normal(scale=1.0, size=y_all.shape).astype(np.float32))
    noise_b = torch.from_numpy(rng.normal(scale=2.0, size=y_all.shape).astype(np.float32))
    lookup = {tuple(x.flatten()[:8].tolist()): i for i, x in enumerate(x_all)}

    def predictor(noise: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        def predict(x: torch.Tensor) -> torch.Tensor:
            rows = [lookup[tuple(w.flatten()[:8].tolist())] for w in x]
            return y_all[rows] + noise[rows]
        return predict

    weight = blend_weight(predictor(noise_a), predictor(noise_b), windows, batch_size=64)
    assert abs(weight - 0.8) < 0.03
    assert blend_weight(predictor(noise_b), predictor(noise_a), windows) == pytest.approx(1 - weight, abs=0.03)
    # identical forecasts: no information, weight 0; a perfect first forecast: weight 1
    same = predictor(noise_a)
    assert blend_weight(same, same, windows) == 0.0
    assert blend_weight(predictor(torch.zeros_like(noise_a)), same, windows) == pytest.approx(1.0)


@pytest.mark.parametrize("loss", ["l1", "huber"])
def test_forecaster_trains_on_its_loss_and_selects_epochs_on_validation_mse(loss: str) -> None:
    from reformer.pipelines.lstf import train_forecaster
    from reformer.training.loop import TrainConfig

    rng = np.random.default_rng(0)
    steps = np.arange(700)
    series = np.stack([np.sin(steps / 4), np.cos(steps / 7)], axis=1) + 0.3 * rng.standard_t(2, size=(700, 2))
    train, val = series_windows(series[:500], 32, 8), series_windows(series[500:], 32, 8)
    config = ForecastConfig(seq_len=32, horizon=8, n_channels=2, patch_len=8, stride=8, d_model=8, n_heads=2,
                            n_layers=1, d_ff=16, attention_type="full")
    torch.manual_seed(0)
    model = PatchReformerForecaster(config)
    fitted = train_forecaster(model, train, val, TrainConfig(epochs=3, batch_size=32, max_batches_per_epoch=3,
                                                             patience=0, loss=loss), progress=False)
    recorded = fitted.history[fitted.best_epoch - 1]["val_loss"]
    mse = evaluate_forecaster(model.eval(), val).mse  # the restored best weights, scored by MSE
    assert recorded == pytest.approx(mse, rel=1e-4)
    x, y = val.batch(slice(None))
    with torch.no_grad():
        l1 = float((model(x) - y).abs().mean())
    assert abs(recorded - l1) > 1e-3  # heavy-tailed noise: the validation figure is not the training loss
    with pytest.raises(ConfigError, match="a forecaster trains with"):
        train_forecaster(model, train, val, TrainConfig(epochs=1, loss="cross_entropy"), progress=False)


def test_one_ridge_solver_serves_the_linear_forecaster_and_the_ridge_baseline(monkeypatch: pytest.MonkeyPatch) -> None:
    from reformer.training import baselines

    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(200, 5)), rng.normal(size=(200, 2))
    alpha = 0.7
    weights, intercept = baselines.solve_ridge(x, y, alpha)
    # the augmented system [x 1] with no penalty on the intercept's row, solved directly
    design = np.concatenate([x, np.ones((200, 1))], axis=1)
    penalty = alpha * np.eye(6)
    penalty[-1, -1] = 0.0
    augmented = np.linalg.solve(design.T @ design + penalty, design.T @ y)
    np.testing.assert_allclose(np.vstack([weights, intercept]), augmented, rtol=1e-10, atol=1e-12)
    # alpha = 0 with a repeated column: singular, the minimum-norm solution splits the weight evenly
    twin = np.concatenate([x[:, :1], x[:, :1]], axis=1)
    w0, _ = baselines.solve_ridge(twin, 2.0 * x[:, 0], 0.0)
    np.testing.assert_allclose(w0, [1.0, 1.0], atol=1e-8)

    calls: list[float] = []
    real = baselines.solve_ridge

    def counting(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        calls.append(alpha)
        return real(x, y, alpha)

    monkeypatch.setattr(baselines, "solve_ridge", counting)
    windows = rng.normal(size=(50, 8, 2))
    baselines.LinearForecaster(ridge=1e-3).fit(windows, rng.normal(size=(50, 4, 2)))
    baselines.fit_ridge(x, y[:, 0], 2.0)
    assert calls == [pytest.approx(1e-3 * 100), 2.0]  # the forecaster's penalty is ridge * (windows * channels)

"""fit: learning, early stopping, best checkpoint, exact resume, metrics.csv; TrainConfig validation."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch

from reformer.data.dataset import WindowDataset
from reformer.errors import ConfigError, UserInputError
from reformer.model import ReformerConfig, ReformerModel
from reformer.training import EpochEnd, TrainConfig, fit, load_checkpoint, lr_at_step

SEQ, FEATURES = 8, 2
MODEL = ReformerConfig(seq_len=SEQ, d_model=8, n_heads=2, n_layers=1, n_hash_rounds=1, n_buckets=2, chunk_size=4,
                       n_features=FEATURES, dropout=0.1)


pytestmark = pytest.mark.usefixtures("one_thread")


def _datasets(val_sign: float = 1.0) -> tuple[WindowDataset, WindowDataset]:
    """y = x[last bar, feature 0] (learnable); the validation relation is multiplied by `val_sign`."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(144, SEQ, FEATURES, generator=generator)
    y = x[:, -1, 0].clone()
    y[96:] *= val_sign
    return WindowDataset(x, y, torch.arange(96).numpy()), WindowDataset(x, y, torch.arange(96, 144).numpy())


def _config(**changes: object) -> TrainConfig:
    return TrainConfig(epochs=4, batch_size=16, lr=5e-3, patience=0, device="cpu").replace(**changes)


def test_loss_decreases_and_best_checkpoint_is_lowest_val(tmp_path: Path) -> None:
    train, val = _datasets()
    result = fit(ReformerModel(MODEL), train, val, _config(), out_dir=tmp_path, progress=False,
                 on_epoch=lambda end: {"val_mean_pred": float(end.val_predictions.mean())})
    losses = [row["train_loss"] for row in result.history]
    # 6 batches an epoch with dropout 0.1 on an 8-wide model: the epoch losses are noisy, the trend is not
    assert min(losses[1:]) < 0.6 * losses[0] and losses[-1] < 0.7 * losses[0]
    val_losses = [row["val_loss"] for row in result.history]
    assert result.best_val_loss == min(val_losses)
    assert result.best_epoch == val_losses.index(min(val_losses)) + 1
    assert result.best_checkpoint == tmp_path / "best" and not result.stopped_early
    _, meta = load_checkpoint(tmp_path)
    assert meta["metrics"]["epoch"] == result.best_epoch and meta["metrics"]["val_loss"] == result.best_val_loss
    with (tmp_path / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["epoch", "train_loss", "val_loss", "lr", "seconds", "val_mean_pred"]
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert math.isclose(float(rows[-1]["val_loss"]), val_losses[-1], rel_tol=1e-9)


def test_early_stopping_stops_after_patience(tmp_path: Path) -> None:
    # the validation relation is the opposite of the training one: learning makes val loss worse
    train, val = _datasets(val_sign=-1.0)
    result = fit(ReformerModel(MODEL), train, val, _config(epochs=12, patience=2), progress=False)
    assert result.stopped_early
    assert len(result.history) == result.best_epoch + 2 < 12


def test_time_limit_stops_after_the_epoch_that_crosses_it() -> None:
    train, val = _datasets()
    result = fit(ReformerModel(MODEL), train, val, _config(epochs=12, max_seconds=1e-9), progress=False)
    assert result.stopped_early and len(result.history) == 1 and result.best_epoch == 1
    unlimited = fit(ReformerModel(MODEL), train, val, _config(epochs=3, max_seconds=3600.0), progress=False)
    assert len(unlimited.history) == 3 and not unlimited.stopped_early


def test_resume_replays_the_uninterrupted_run(tmp_path: Path) -> None:
    train, val = _datasets()
    full = fit(ReformerModel(MODEL), train, val, _config(), out_dir=tmp_path / "full", progress=False)

    def interrupt(end: EpochEnd) -> None:
        if end.epoch == 3:
            raise KeyboardInterrupt  # dies before epoch 3 is recorded: last/ holds epoch 2

    with pytest.raises(KeyboardInterrupt):
        fit(ReformerModel(MODEL), train, val, _config(), out_dir=tmp_path / "cut", progress=False, on_epoch=interrupt)
    resumed = fit(ReformerModel(MODEL.replace(seed=99)), train, val, _config(), out_dir=tmp_path / "cut",
                  resume=tmp_path / "cut", progress=False)
    for key in ("train_loss", "val_loss", "lr"):
        assert [r[key] for r in resumed.history] == [r[key] for r in full.history]
    assert resumed.best_epoch == full.best_epoch
    # a finished run has nothing to resume until its epoch limit is raised
    with pytest.raises(UserInputError, match=r"already trained 4 of its epochs \(limit 4\); raise the epoch limit"):
        fit(ReformerModel(MODEL), train, val, _config(), out_dir=tmp_path / "cut", resume=tmp_path / "cut",
            progress=False)
    longer = fit(ReformerModel(MODEL), train, val, _config(epochs=5), out_dir=tmp_path / "cut",
                 resume=tmp_path / "cut", progress=False)
    assert [r["epoch"] for r in longer.history] == [1, 2, 3, 4, 5]


def test_resume_of_an_early_stopped_run_asks_for_more_patience(tmp_path: Path) -> None:
    train, val = _datasets(val_sign=-1.0)  # validation gets worse as training learns: stops after 1 bad epoch
    stopped = fit(ReformerModel(MODEL), train, val, _config(patience=1), out_dir=tmp_path, progress=False)
    assert stopped.stopped_early
    with pytest.raises(UserInputError, match=r"stopped early .* raise the patience to train on"):
        fit(ReformerModel(MODEL), train, val, _config(patience=1), out_dir=tmp_path, resume=tmp_path,
            progress=False)
    more = fit(ReformerModel(MODEL), train, val, _config(patience=3), out_dir=tmp_path, resume=tmp_path,
               progress=False)
    assert len(more.history) > len(stopped.history)


def test_lr_schedule_warms_up_then_decays() -> None:
    config = TrainConfig(lr=1.0, warmup_fraction=0.1)
    assert lr_at_step(0, 100, config) == pytest.approx(0.1)
    assert lr_at_step(9, 100, config) == pytest.approx(1.0)
    assert lr_at_step(10, 100, config) == pytest.approx(1.0)
    assert lr_at_step(55, 100, config) == pytest.approx(0.5)
    assert lr_at_step(99, 100, config) < 0.001


@pytest.mark.parametrize(("field", "value"), [("epochs", 0), ("lr", -1.0), ("loss", "l2"), ("warmup_fraction", 1.0),
                                              ("max_batches_per_epoch", 0), ("device", "tpu"), ("patience", -1),
                                              ("max_seconds", 0), ("max_seconds", "1h")])
def test_train_config_rejects_bad_values(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        TrainConfig(**{field: value})  # type: ignore[arg-type]


def test_train_config_round_trip_and_unknown_keys() -> None:
    config = TrainConfig(epochs=3, max_batches_per_epoch=5)
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="unknown"):
        TrainConfig.from_dict({"epoch": 3})


def test_the_trained_model_is_the_model_its_checkpoint_rebuilds(tmp_path: Path) -> None:
    # LSH active (256 positions > 2 x chunk 16 x 1 round): each epoch reseeds the training rotations, and the
    # eval rotations must not follow them, or validation (and `reformer train`'s test metrics) would score
    # another hash than the one a loaded checkpoint uses (before the fix: outputs 0.30 apart after 3 epochs)
    config = ReformerConfig(seq_len=256, d_model=8, n_heads=2, n_layers=2, n_hash_rounds=1, n_buckets=4,
                            chunk_size=16, n_features=FEATURES, dropout=0.0)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(96, 256, FEATURES, generator=generator)
    y = x[:, -1, 0].clone()
    train, val = WindowDataset(x, y, torch.arange(64).numpy()), WindowDataset(x, y, torch.arange(64, 96).numpy())
    model = ReformerModel(config)
    assert config.kernel_for(256, model.attention_type).value == "lsh"
    fit(model, train, val, _config(epochs=3, batch_size=16), out_dir=tmp_path, progress=False)
    loaded, _ = load_checkpoint(tmp_path)  # best/
    model.eval()
    with torch.no_grad():
        trained = model(x[64:])
        assert torch.equal(trained, loaded(x[64:]))
        model.reseed(12345)  # a new training stream leaves inference alone
        assert torch.equal(model(x[64:]), trained)

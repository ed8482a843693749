"""Checkpoint descriptions are typed records: what is written reads back equal, and a corrupt or hand-edited
`checkpoint.json` is refused when the checkpoint is opened, with one line naming the file and the key."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reformer.data import DatasetConfig, FeatureSpec, StandardScaler
from reformer.errors import DataFormatError
from reformer.training.meta import CandleData, CandleMeta, SeriesData, SeriesMeta, TrainState

REPO = Path(__file__).resolve().parents[2]
WHERE = Path("run/best/checkpoint.json")


def _scaler(n: int) -> StandardScaler:
    return StandardScaler().fit(np.random.default_rng(0).normal(size=(50, n)))


def _candle_meta() -> CandleMeta:
    return CandleMeta(task="regression", horizon=24, feature_spec=FeatureSpec(), feature_names=("a", "b", "c"),
                      dataset=DatasetConfig(seq_len=64, horizon=24), scaler=_scaler(3),
                      data=CandleData(1_600_000_000_000, 1_600_360_000_000, 101, 3_600_000,
                                      {"symbol": "BTCUSDT", "interval": "60"}),
                      target_scale=0.012, val_rmse=0.02,
                      evaluation={"splits": {"test": {"first_timestamp": 1_600_300_000_000}}})


def _series_meta() -> SeriesMeta:
    return SeriesMeta(("HUFL", "OT"), "OT", "MS", _scaler(2), 96, "lstf",
                      SeriesData("ETTh1.csv", 17420, 3_600_000, 0, 3_600_000 * 17419, 8640),
                      ensemble_members=("../members/seed_1",))


def _json_round_trip(document: dict[str, Any]) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(json.dumps(document, allow_nan=True))
    return loaded


def test_candle_meta_reads_back_what_it_wrote() -> None:
    meta = _candle_meta()
    document = _json_round_trip(meta.to_dict())
    assert document["kind"] == "crypto" and document["data"]["symbol"] == "BTCUSDT"  # the layout checkpoints use
    again = CandleMeta.from_dict(document, WHERE)
    assert again.to_dict() == document
    assert again.feature_spec == meta.feature_spec and again.dataset == meta.dataset
    assert again.data.interval == "60" and again.data.bar_ms == 3_600_000
    assert again.test_start == 1_600_300_000_000
    assert again.scaler is not None and np.allclose(again.scaler.std, meta.scaler.std)  # type: ignore[union-attr]


def test_a_realized_vol_description_reads_back_its_target_scaling_and_s2() -> None:
    meta = dataclasses.replace(_candle_meta(), task="realized-vol", dataset=DatasetConfig(64, 24, "realized-vol"),
                               target_scale=1.1, target_offset=-8.3, residual_var=0.31)
    document = _json_round_trip(meta.to_dict())
    assert (document["task"], document["target_offset"], document["residual_var"]) == ("realized-vol", -8.3, 0.31)
    again = CandleMeta.from_dict(document, WHERE)
    assert again.to_dict() == document and (again.task, again.dataset.task) == ("realized-vol", "realized-vol")
    assert (again.target_scale, again.target_offset, again.residual_var) == (1.1, -8.3, 0.31)
    # a return model's description stays as it was: no offset, no s2, and both read back as their defaults
    plain = _json_round_trip(_candle_meta().to_dict())
    assert "target_offset" not in plain and "residual_var" not in plain
    assert (CandleMeta.from_dict(plain, WHERE).target_offset, CandleMeta.from_dict(plain, WHERE).residual_var) == (
        0.0, None)


def test_series_meta_and_train_state_read_back_what_they_wrote() -> None:
    meta = _series_meta()
    again = SeriesMeta.from_dict(_json_round_trip(meta.to_dict()), WHERE)
    assert again.to_dict() == meta.to_dict()
    assert again.same_training_data(meta) and again.ensemble_members == ("../members/seed_1",)
    state = TrainState(epoch=3, step=30, best_epoch=2, best_val_loss=math.inf, bad_epochs=1,
                       history=({"epoch": 1.0, "val_loss": 0.5},))
    assert TrainState.from_dict(_json_round_trip(state.to_dict()), WHERE) == state


def _without(document: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in document.items() if k != key}


@pytest.mark.parametrize(("edit", "named"), [
    (lambda d: _without(d, "horizon"), "missing key 'horizon'"),
    (lambda d: {**d, "horizon": "24"}, "'horizon' must be an integer"),
    (lambda d: {**d, "horizon": True}, "'horizon' must be an integer"),
    (lambda d: {**d, "task": "ranking"}, "'task' must be"),
    (lambda d: {**d, "feature_names": []}, "'feature_names' must be a non-empty list"),
    (lambda d: {**d, "feature_spec": {**d["feature_spec"], "colour": 1}}, "bad 'feature_spec'"),
    (lambda d: {**d, "dataset": {**d["dataset"], "seq_len": 0}}, "bad 'dataset'"),
    (lambda d: {**d, "scaler": {"mean": [0.0], "std": [0.0]}}, "bad 'scaler'"),
    (lambda d: {**d, "data": {**d["data"], "last_timestamp": -5}}, "'last_timestamp' must be a non-negative"),
    (lambda d: {**d, "kind": "series"}, "not a candle model's checkpoint"),
    (lambda d: {**d, "target_offset": "low"}, "'target_offset' must be a number"),
    (lambda d: {**d, "residual_var": [0.3]}, "'residual_var' must be a number or null"),
])
def test_a_corrupt_candle_description_is_one_line_naming_file_and_key(edit: Any, named: str) -> None:
    document = edit(_json_round_trip(_candle_meta().to_dict()))
    with pytest.raises(DataFormatError) as info:
        CandleMeta.from_dict(document, WHERE)
    message = str(info.value)
    assert named in message and str(WHERE) in message and "\n" not in message


@pytest.mark.parametrize(("edit", "named"), [
    (lambda d: {**d, "target": "price"}, "'target' must be one of feature_names"),
    (lambda d: {**d, "features": "X"}, "'features' must be"),
    (lambda d: {**d, "scaler": {"mean": [0.0], "std": [1.0]}}, "one mean and std for each of the 2"),
    (lambda d: {**d, "ensemble_members": [3]}, "'ensemble_members' must be a list of paths"),
    (lambda d: {**d, "data": {**d["data"], "step_ms": 0}}, "'step_ms' must be a positive integer"),
])
def test_a_corrupt_series_description_is_one_line_naming_file_and_key(edit: Any, named: str) -> None:
    document = edit(_json_round_trip(_series_meta().to_dict()))
    with pytest.raises(DataFormatError, match=named):
        SeriesMeta.from_dict(document, WHERE)


def test_predict_on_a_hand_edited_checkpoint_names_the_key(tmp_path: Path) -> None:
    """End to end: a run trained by the CLI, its best/checkpoint.json edited, then `reformer predict`."""
    from reformer.data import SyntheticMarketConfig, synthetic_frame

    frame = synthetic_frame(SyntheticMarketConfig(n_bars=900, seed=2))
    csv = tmp_path / "candles.csv"
    frame.to_csv(csv, index=False)
    run = tmp_path / "run"
    base = [sys.executable, "-m", "reformer.cli"]
    train = subprocess.run([*base, "train", "--config", str(REPO / "configs" / "tiny.toml"), "--csv", str(csv),
                            "--out", str(run), "--epochs", "1"], capture_output=True, text=True, timeout=600)
    assert train.returncode == 0, train.stderr
    meta_file = run / "best" / "checkpoint.json"
    document = json.loads(meta_file.read_text())
    document["target_scale"] = "large"
    meta_file.write_text(json.dumps(document))
    predict = subprocess.run([*base, "predict", "--checkpoint", str(run), "--csv", str(csv)], capture_output=True,
                             text=True, timeout=600)
    assert predict.returncode != 0
    lines = predict.stderr.strip().splitlines()
    assert len(lines) == 1 and "'target_scale' must be a number" in lines[0] and str(meta_file) in lines[0]

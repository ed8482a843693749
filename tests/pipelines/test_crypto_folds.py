"""Walk-forward evaluation beside the baselines: fold layout, no look-ahead, pooled scores, CLI, bad settings."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from reformer.cli import main
from reformer.data import SyntheticMarketConfig, synthetic_frame, write_klines
from reformer.errors import ConfigError, UserInputError
from reformer.pipelines.crypto import first_unseen_bar
from reformer.pipelines.crypto_folds import FoldSettings, evaluate_walk_forward
from reformer.training import TrainConfig, read_meta
from reformer.training.metrics import information_coefficient, regression_metrics

from ..synthetic import Candles

SEQ, HORIZON = 32, 12
TINY = {"d_model": 8, "n_heads": 2, "n_layers": 1, "n_hash_rounds": 1, "n_buckets": 2, "chunk_size": 16,
        "dropout": 0.0}
FOLDS = FoldSettings(n_folds=3, test_windows=120, val_windows=80)
CONFIG = TrainConfig(epochs=2, batch_size=32, max_batches_per_epoch=3, patience=0, device="cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return synthetic_frame(SyntheticMarketConfig(n_bars=900, seed=11))


def _run(frame: pd.DataFrame, out: Path | None = None) -> dict[str, Any]:
    return evaluate_walk_forward(frame, seq_len=SEQ, horizon=HORIZON, folds=FOLDS, model_overrides=TINY,
                                 train_config=CONFIG, out_dir=out)


@pytest.fixture(scope="module")
def run(frame: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("wf")
    return _run(frame, out), out


def test_folds_test_consecutive_blocks_after_their_own_training_and_validation(
        run: tuple[dict[str, Any], Path], frame: pd.DataFrame) -> None:
    report, out = run
    folds = report["folds"]
    assert [f["test_windows"] for f in folds] == [120] * 3 and all(f["val_windows"] == 80 for f in folds)
    stamps = frame["timestamp"].to_numpy()
    bar = int(stamps[1] - stamps[0])
    for before, after in itertools.pairwise(folds):  # one window per bar: contiguous, disjoint blocks
        assert after["test_first_timestamp"] == before["test_last_timestamp"] + bar
    # expanding: every fold trains from the first window, on more windows than the one before
    assert len({f["train_first_timestamp"] for f in folds}) == 1
    assert folds[0]["train_windows"] < folds[1]["train_windows"] < folds[2]["train_windows"]
    table = pd.read_csv(out / "predictions.csv", comment="#")
    assert len(table) == report["pooled"]["windows"] == 360 and (np.diff(table["timestamp"]) == bar).all()
    assert list(table["fold"]) == [0] * 120 + [1] * 120 + [2] * 120
    assert (out / "fold_2" / "best" / "model.safetensors").is_file()
    for k, fold in enumerate(folds):  # a fold's checkpoint knows its held-out bars, as a train run's does
        assert first_unseen_bar(out / f"fold_{k}")[0] == fold["test_first_timestamp"]
        assert read_meta(out / f"fold_{k}" / "best")["val_rmse"] > 0
    assert json.loads((out / "walkforward.json").read_text())["pooled"] == report["pooled"]
    assert report["settings"]["model"]["n_features"] == len(read_meta(out / "fold_0" / "best")["feature_names"])


def test_pooled_scores_are_the_scores_of_every_fold_s_forecasts_together(run: tuple[dict[str, Any], Path]) -> None:
    report, out = run
    table = pd.read_csv(out / "predictions.csv", comment="#")
    pooled = report["pooled"]
    for name, metrics in (("prediction", pooled["model"]), *pooled["baselines"].items()):
        expected = regression_metrics(table[name].to_numpy(), table["realised"].to_numpy())
        assert metrics["mse"] == pytest.approx(expected["mse"], rel=1e-9)
        if name != "zero":
            assert metrics["ic"] == pytest.approx(expected["ic"], abs=1e-12)
    versus = pooled["ic_minus_ridge"]
    assert versus["difference"] == pytest.approx(pooled["model"]["ic"] - pooled["baselines"]["ridge"]["ic"])
    assert versus["ci95"][0] < versus["difference"] < versus["ci95"][1]
    for k, fold in enumerate(report["folds"]):  # each fold's own scores are its block's
        part = table[table["fold"] == k]
        assert fold["model"]["ic"] == pytest.approx(information_coefficient(part["prediction"], part["realised"]))
    summary = report["summary"]
    assert summary["model_ic_by_fold"] == [f["model"]["ic"] for f in report["folds"]]
    assert summary["folds_model_above_ridge"] == sum(
        f["model"]["ic"] > f["baselines"]["ridge"]["ic"] for f in report["folds"])
    assert len(pooled["baselines"]["ridge"]["alpha"]) == 3  # ridge refitted per fold


def test_a_fold_sees_nothing_after_its_first_test_bar(run: tuple[dict[str, Any], Path], frame: pd.DataFrame,
                                                     tmp_path: Path) -> None:
    """Change every candle after the last bar of fold 1's first test window: fold 1's training (its validation
    history), its ridge and its first forecasts, and all of fold 0's forecasts, are unchanged (fold 0's scores are
    not: its last targets reach into the change); fold 1's later windows see it."""
    report, out = run
    stamps = frame["timestamp"].to_numpy()
    first_end = int(np.searchsorted(stamps, report["folds"][1]["test_first_timestamp"]))
    changed = frame.copy()
    later = changed.index[first_end + 1:]
    for column in ("open", "high", "low", "close"):
        changed.loc[later, column] *= 1.5
    changed.loc[later, "volume"] *= 3.0
    again = _run(changed, tmp_path / "changed")
    before, after = (pd.read_csv(path / "predictions.csv", comment="#") for path in (out, tmp_path / "changed"))
    fold0 = before["fold"] == 0
    pd.testing.assert_frame_equal(after.loc[fold0, ["prediction", "ridge", "momentum"]],
                                  before.loc[fold0, ["prediction", "ridge", "momentum"]], check_exact=True)
    history = [pd.read_csv(d / "fold_1" / "metrics.csv")["val_loss"].to_numpy() for d in (out, tmp_path / "changed")]
    np.testing.assert_array_equal(history[0], history[1])
    assert again["pooled"]["baselines"]["ridge"]["alpha"][1] == report["pooled"]["baselines"]["ridge"]["alpha"][1]
    row = int(np.flatnonzero(before["fold"] == 1)[0])
    for column in ("prediction", "ridge", "momentum"):  # its inputs end at the last unchanged bar
        assert after[column].iloc[row] == before[column].iloc[row], column
    assert after["prediction"].iloc[row + 1] != before["prediction"].iloc[row + 1]  # the next window sees it


def test_every_fold_s_targets_close_before_its_validation_and_test_blocks(run: tuple[dict[str, Any], Path],
                                                                          frame: pd.DataFrame) -> None:
    _, out = run
    bar = int(frame["timestamp"].iloc[1] - frame["timestamp"].iloc[0])
    for k in range(3):
        splits = read_meta(out / f"fold_{k}" / "best")["evaluation"]["splits"]
        # a window ending at bar t has its target at t + h: train's last target closes by val's first window end
        assert splits["train"]["last_timestamp"] + HORIZON * bar <= splits["val"]["first_timestamp"]
        assert splits["val"]["last_timestamp"] + HORIZON * bar <= splits["test"]["first_timestamp"]


def test_within_fold_ic_centres_each_fold_s_forecast(run: tuple[dict[str, Any], Path]) -> None:
    report, out = run
    table = pd.read_csv(out / "predictions.csv", comment="#")
    centred = table["prediction"] - table.groupby("fold")["prediction"].transform("mean")
    within = report["pooled"]["ic_within_folds"]
    assert within["model"] == pytest.approx(information_coefficient(centred, table["realised"]))
    assert set(within) == {"model", "momentum", "ridge"}


def test_an_existing_walk_forward_run_is_not_overwritten(run: tuple[dict[str, Any], Path],
                                                         frame: pd.DataFrame) -> None:
    _, out = run
    kept = (out / "walkforward.json").read_text()
    with pytest.raises(UserInputError, match="holds a walk-forward run already"):
        _run(frame, out)
    assert (out / "walkforward.json").read_text() == kept


def test_a_fold_trains_on_at_least_as_many_windows_as_it_validates_on(frame: pd.DataFrame) -> None:
    # 3 folds of 200 test and 150 val windows leave the first fold fewer than 150 training windows
    with pytest.raises(UserInputError, match="too few"):
        evaluate_walk_forward(frame, seq_len=SEQ, horizon=HORIZON, model_overrides=TINY, train_config=CONFIG,
                              folds=FoldSettings(n_folds=3, test_windows=200, val_windows=150))
    with pytest.raises(ConfigError, match="train_windows=1"):
        FoldSettings(train_windows=1)


def test_a_classifier_s_predictions_carry_its_probabilities(frame: pd.DataFrame, tmp_path: Path) -> None:
    report = evaluate_walk_forward(frame, seq_len=SEQ, horizon=HORIZON, folds=FOLDS, model_overrides=TINY,
                                   train_config=CONFIG, task="classification", class_threshold=0.002,
                                   out_dir=tmp_path)
    table = pd.read_csv(tmp_path / "predictions.csv", comment="#")
    np.testing.assert_allclose(table[["p_down", "p_flat", "p_up"]].sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(table["prediction"], table["p_up"] - table["p_down"], atol=1e-12)
    accuracy = float((table[["p_down", "p_flat", "p_up"]].to_numpy().argmax(axis=1) == table["class"]).mean())
    assert report["pooled"]["model"]["accuracy"] == pytest.approx(accuracy)


def test_an_ensemble_scores_its_members_mean_and_its_first_member_is_the_single_run(
        run: tuple[dict[str, Any], Path], frame: pd.DataFrame, tmp_path: Path) -> None:
    single, single_out = run
    report = evaluate_walk_forward(frame, seq_len=SEQ, horizon=HORIZON, folds=FOLDS, model_overrides=TINY,
                                   train_config=CONFIG, out_dir=tmp_path, ensemble=2)
    table, alone = (pd.read_csv(path / "predictions.csv", comment="#") for path in (tmp_path, single_out))
    np.testing.assert_array_equal(table["prediction_seed0"], alone["prediction"])  # seed 0 is the single model
    assert not np.allclose(table["prediction_seed1"], table["prediction_seed0"])
    np.testing.assert_allclose(table["prediction"], (table["prediction_seed0"] + table["prediction_seed1"]) / 2)
    np.testing.assert_array_equal(table["ridge"], alone["ridge"])
    pooled = report["pooled"]
    assert pooled["model"]["ic"] == pytest.approx(information_coefficient(table["prediction"], table["realised"]))
    assert report["folds"][0]["member_ic"][0] == pytest.approx(single["folds"][0]["model"]["ic"])
    assert report["settings"]["ensemble"] == 2 and len(report["folds"][0]["best_epoch"]) == 2
    assert (tmp_path / "fold_2" / "seed_1" / "best" / "model.safetensors").is_file()
    with pytest.raises(ConfigError, match="ensemble=0"):
        evaluate_walk_forward(frame, seq_len=SEQ, horizon=HORIZON, folds=FOLDS, ensemble=0)


def test_bad_fold_settings_are_named() -> None:
    with pytest.raises(ConfigError, match="train_windows"):
        FoldSettings(mode="rolling")
    with pytest.raises(ConfigError, match="n_folds=0"):
        FoldSettings(n_folds=0)
    with pytest.raises(ConfigError, match="'sideways'"):
        FoldSettings(mode="sideways")  # type: ignore[arg-type]


def test_too_few_windows_for_the_folds_is_a_user_error(frame: pd.DataFrame) -> None:
    with pytest.raises(UserInputError):
        evaluate_walk_forward(frame, seq_len=SEQ, horizon=HORIZON, model_overrides=TINY, train_config=CONFIG,
                              folds=FoldSettings(n_folds=10, test_windows=200, val_windows=80))


@pytest.fixture(scope="module")
def candle_slice(candle_source: Candles, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The last 1,500 hourly candles of the synthetic series, then of the real BTC file."""
    path = tmp_path_factory.mktemp("candles") / "candle_slice.csv"
    write_klines(candle_source.klines[-1500:], path)
    return path


def test_cli_walk_forward_json(candle_slice: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text("[data]\nseq_len = 32\nhorizon = 24\n[model]\nd_model = 8\nn_heads = 2\nn_layers = 1\n"
                      "chunk_size = 16\nn_buckets = 2\n[train]\nepochs = 1\nbatch_size = 32\n"
                      "max_batches_per_epoch = 2\ndevice = \"cpu\"\n")
    out = tmp_path / "wf"
    assert main(["train", "--csv", str(candle_slice), "--config", str(config), "--walk-forward", "2",
                 "--fold-test", "200", "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["pooled"]["windows"] == 400 and report["pooled"]["horizon"] == 24
    assert set(report["pooled"]["baselines"]) == {"zero", "momentum", "ridge"}
    assert report["settings"]["val_windows"] > 0 and report["run_dir"] == str(out)
    assert (out / "fold_1" / "metrics.csv").is_file()
    # the out-of-sample predictions backtest as they are
    first = report["pooled"]["first_timestamp"]
    assert main(["backtest", "--csv", str(candle_slice), "--predictions", str(out / "predictions.csv"),
                 "--start", str(first), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert pd.Timestamp(stats["start"]) == pd.to_datetime(first, unit="ms", utc=True) and stats["n_trades"] > 0


@pytest.mark.parametrize(("args", "words"), [
    (["--walk-forward", "2", "--fold-mode", "rolling"], "add --fold-train W"),
    (["--walk-forward", "2", "--fold-mode", "sideways"], "--fold-mode 'sideways' is invalid"),
    (["--fold-test", "100"], "add --walk-forward N"),
    (["--ensemble", "3"], "with --walk-forward N): add one of them"),
    (["--walk-forward", "2", "--ensemble", "0"], "--ensemble 0 is invalid"),
    (["--walk-forward", "2", "--resume"], "drop --resume"),
    (["--walk-forward", "-1"], "positive whole numbers"),
    (["--walk-forward", "40", "--fold-test", "500"], "window"),
])
def test_cli_bad_walk_forward_settings_exit_2_with_one_line(candle_slice: Path, tmp_path: Path, args: list[str],
                                                            words: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--csv", str(candle_slice), "--out", str(tmp_path / "wf"), *args]) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1

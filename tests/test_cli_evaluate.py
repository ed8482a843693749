"""`reformer evaluate` end to end on a small synthetic CSV (tiny model, one short epoch), and its input errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from reformer.cli import main

TINY = ["--seq-len", "48", "--horizon", "12", "--epochs", "1", "--max-batches", "2", "--batch-size", "16",
        "--patch-len", "8", "--stride", "8", "--d-model", "8", "--n-heads", "2", "--n-layers", "1", "--d-ff", "16",
        "--threads", "1"]


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    steps = np.arange(600)
    frame = pd.DataFrame({
        "date": pd.date_range("2020-01-01", periods=600, freq="h").strftime("%Y-%m-%d %H:%M:%S"),
        "load": np.sin(steps * 2 * np.pi / 24) + 0.1 * rng.normal(size=600),
        "temp": np.cos(steps * 2 * np.pi / 24) + 0.1 * rng.normal(size=600),
        "OT": np.sin(steps * 2 * np.pi / 24 + 1.0) + 0.1 * rng.normal(size=600),
    })
    path = tmp_path_factory.mktemp("evaluate") / "small.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("attention", ["full", "lsh"])
def test_evaluate_json_schema(small_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                              attention: str) -> None:
    out = tmp_path / "result.json"
    code = main(["evaluate", "--csv", str(small_csv), "--protocol", "ratio", "--features", "M", "--json",
                 "--attention", attention, "--chunk-size", "4", "--out", str(out), "--drop-last-batch", "16", *TINY])
    assert code == 0
    stdout = capsys.readouterr().out
    payload = json.loads(stdout)  # exactly one JSON object on stdout
    assert stdout.strip().count("\n") == 0
    assert set(payload["model"]) == {"name", "mse", "mae"}
    assert set(payload["baselines"]) == {"repeat", "linear"}
    for metrics in (payload["model"], payload["baselines"]["repeat"], payload["baselines"]["linear"]):
        assert np.isfinite(metrics["mse"]) and metrics["mse"] > 0 and metrics["mae"] > 0
    # ratio split of 600 rows: test = last 120 rows -> 120 - 12 + 1 windows
    assert payload["n_windows"] == 120 - 12 + 1
    assert (payload["protocol"], payload["seq_len"], payload["horizon"], payload["seed"]) == ("ratio", 48, 12, 0)
    assert payload["config"]["attention_type"] == attention
    assert payload["train"]["device_used"] == ("cuda:0" if torch.cuda.is_available() else "cpu")  # --device auto
    assert json.loads(out.read_text())["model"] == payload["model"]
    blend = payload["blend"]
    assert 0.0 <= blend["weight"] <= 1.0 and np.isfinite(blend["mse"]) and blend["mae"] > 0
    # a clean sinusoid: the closed-form linear map must beat repeating the last value by far
    assert payload["baselines"]["linear"]["mse"] < 0.5 * payload["baselines"]["repeat"]["mse"]
    # the leading windows a drop_last loader of batch 16 keeps: 109 - 109 % 16 = 96, the 13 latest left out
    subset = payload["drop_last"]
    assert (subset["batch_size"], subset["n_windows"], subset["n_dropped"]) == (16, 96, 13)
    for name in ("model", "repeat", "linear", "blend"):
        assert np.isfinite(subset[name]["mse"]) and subset[name]["mae"] > 0
        assert subset[name]["mse"] != payload.get(name, payload["baselines"].get(name, payload["blend"]))["mse"]


def test_evaluate_table_and_target_only(small_csv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["evaluate", "--csv", str(small_csv), "--protocol", "ratio", "--features", "MS", *TINY])
    assert code == 0
    text = capsys.readouterr().out
    assert "repeat" in text and "linear" in text and "MSE" in text and "109 test windows" in text


@pytest.mark.parametrize(("args", "needle"), [
    (["--target", "nope"], "nope"),
    (["--protocol", "weekly"], "weekly"),
    (["--seq-len", "2000"], "seq_len"),
    (["--horizon", "200"], "horizon"),
    (["--features", "X"], "features"),
    (["--device", "tpu"], "device"),
    (["--ensemble", "0"], "--ensemble"),
    (["--drop-last-batch", "-1"], "--drop-last-batch"),
    (["--attention", "foo"], "attention_type='foo' is invalid"),
    pytest.param(["--device", "cuda"], "CUDA", marks=pytest.mark.skipif(torch.cuda.is_available(),
                                                                        reason="CUDA is there: no error to see")),
])
def test_bad_input_gives_one_line_and_exit_2(small_csv: Path, args: list[str], needle: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    base = {"--protocol": "ratio", "--seq-len": "48", "--horizon": "12", "--features": "M", "--target": "OT"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    argv = ["evaluate", "--csv", str(small_csv), "--json", "--epochs", "1"]
    for flag, value in base.items():
        argv += [flag, value]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip().count("\n") == 0 and needle in captured.err


def test_missing_file_from_the_console_script_has_no_traceback(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "reformer.cli", "evaluate", "--csv", str(tmp_path / "none.csv"),
                           "--json"], capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().count("\n") == 0 and "none.csv" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_linear_skip_never_ends_worse_than_its_start_on_validation(small_csv: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["evaluate", "--csv", str(small_csv), "--protocol", "ratio", "--features", "M", "--json",
                 "--linear-skip", *TINY])
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    train = payload["train"]
    assert payload["config"]["linear_skip"] is True and "linear skip" in payload["model"]["name"]
    assert train["start_val_mse"] is not None and train["selected"] in (
        "trained", "start (training never beat the linear start on validation)")
    # the start is the least-squares map in the RevIN frame: close to the linear baseline on a clean sinusoid
    assert payload["model"]["mse"] < 0.5 * payload["baselines"]["repeat"]["mse"]


def test_an_ensemble_scores_the_mean_of_its_members(small_csv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def run(*extra: str) -> dict:
        assert main(["evaluate", "--csv", str(small_csv), "--protocol", "ratio", "--features", "M", "--json",
                     *TINY, *extra]) == 0
        return json.loads(capsys.readouterr().out)

    ensemble = run("--ensemble", "3", "--seed", "4")
    members = ensemble["train"]["members"]
    assert ensemble["train"]["ensemble"] == 3 and [m["seed"] for m in members] == [4, 5, 6]
    assert "mean of 3 seeds 4-6" in ensemble["model"]["name"] and ensemble["seed"] == 4
    # each member is exactly the model a single run with its seed trains
    single = run("--seed", "5")
    assert members[1]["test_mse"] == pytest.approx(single["model"]["mse"], rel=1e-9)
    assert members[1]["val_mse"] == single["train"]["val_mse"]
    # the squared error of a mean forecast is at most the members' mean squared error (Jensen), and the members
    # differ, so the ensemble is strictly better than their average here
    assert len({round(m["test_mse"], 9) for m in members}) == 3
    assert ensemble["model"]["mse"] < float(np.mean([m["test_mse"] for m in members]))
    # the same holds on validation, where the members' scores are their selected epochs'
    assert ensemble["train"]["ensemble_val_mse"] <= float(np.mean([min(m["val_mse"]) for m in members])) * (1 + 1e-5)


def test_a_kept_ensemble_forecasts_with_its_members_mean(small_csv: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    from reformer.errors import ConfigError, DataFormatError
    from reformer.model import ForecastConfig
    from reformer.pipelines.lstf import run_lstf
    from reformer.pipelines.series_models import forecast_all, load_series_models
    from reformer.training import TrainConfig
    from reformer.training.checkpoint import update_meta

    def lstf(**extra: object) -> object:
        return run_lstf(small_csv, protocol="ratio", seq_len=48, horizon=12, ensemble=2,
                        model=ForecastConfig(patch_len=8, stride=8, d_model=8, n_heads=2, n_layers=1, d_ff=16),
                        train_config=TrainConfig(epochs=1, max_batches_per_epoch=2, batch_size=16, seed=3),
                        **extra)  # type: ignore[arg-type]

    torch.set_num_threads(1)
    run = tmp_path / "run"
    kept, evaluated = lstf(out_dir=run), lstf()
    assert kept.model.mse == evaluated.model.mse  # type: ignore[attr-defined]
    models, meta = load_series_models(run)
    assert [m.config.seed for m in models] == [3, 4] and meta.ensemble_members == ("../members/seed_4/best",)
    assert json.loads((run / "evaluation.json").read_text())["model"]["mse"] == kept.model.mse  # type: ignore[attr-defined]
    # predict's forecast is the members' mean: member 0 alone (best/ without its member list) and member 1 alone
    alone = tmp_path / "first"
    shutil.copytree(run / "best", alone)
    update_meta(alone, ensemble_members=[])
    both, first, second = (forecast_all(path, small_csv) for path in (run, alone, run / "members" / "seed_4"))
    horizon = [f"h{k}" for k in range(1, 13)]
    np.testing.assert_allclose(both[horizon], (first[horizon] + second[horizon]) / 2, rtol=1e-5, atol=1e-6)
    assert not np.allclose(first[horizon], second[horizon])
    assert main(["predict", "--checkpoint", str(run), "--csv", str(small_csv), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["forecast"]) == 12
    # a lost member is named; an ensemble is not resumed
    shutil.rmtree(run / "members")
    with pytest.raises(DataFormatError, match="an ensemble member of"):
        forecast_all(run, small_csv)
    with pytest.raises(ConfigError, match="ensemble=2 with resume"):
        lstf(out_dir=run, resume=True)

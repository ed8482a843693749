"""Many symbols, one model: one calendar split for all, per-symbol scalers, no look-ahead across symbols."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from reformer.data import SyntheticMarketConfig, compute_features, prepare_symbols, synthetic_frame
from reformer.data.scaling import StandardScaler
from reformer.errors import UserInputError
from reformer.pipelines import MultiSymbolReport, train_symbols
from reformer.training import TrainConfig
from reformer.training.meta import CandleMeta, MultiSymbolMeta

SEQ, HORIZON, HOUR = 32, 12, 3_600_000
TINY = {"d_model": 8, "n_heads": 2, "n_layers": 1, "n_hash_rounds": 1, "n_buckets": 2, "chunk_size": 16,
        "dropout": 0.0, "seed": 3}
CONFIG = TrainConfig(epochs=2, batch_size=32, max_batches_per_epoch=3, patience=0, device="cpu", seed=7)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    # BBB starts 50 bars later and ends earlier: the calendar, not each symbol's window count, places the borders
    late = SyntheticMarketConfig().start_time + 50 * HOUR
    return {"AAA": synthetic_frame(SyntheticMarketConfig(n_bars=700, seed=5)),
            "BBB": synthetic_frame(SyntheticMarketConfig(n_bars=600, seed=6, start_time=late, start_price=300.0))}


def _train(frames: dict[str, pd.DataFrame], out_dir: Path) -> MultiSymbolReport:
    return train_symbols(frames, seq_len=SEQ, horizon=HORIZON, model_overrides=TINY, train_config=CONFIG,
                         out_dir=out_dir, source={"interval": "60"}, progress=False)


@pytest.fixture(scope="module")
def report(frames: dict[str, pd.DataFrame], tmp_path_factory: pytest.TempPathFactory) -> MultiSymbolReport:
    return _train(frames, tmp_path_factory.mktemp("multi"))


def test_the_calendar_split_is_shared(report: MultiSymbolReport) -> None:
    split = report.split
    assert split.embargo_ms == HORIZON * HOUR
    ends = {symbol: {name: d.prepared.timestamps[getattr(d, name).indices] for name in ("train", "val", "test")}
            for symbol, d in report.data.items()}
    for symbol_ends in ends.values():
        assert symbol_ends["train"].max() <= split.val_start - split.embargo_ms
        assert split.val_start <= symbol_ends["val"].min() and symbol_ends["val"].max() <= split.test_start - \
            split.embargo_ms
        assert symbol_ends["test"].min() >= split.test_start
    # across symbols: every training target closes before any symbol's validation window ends, and so on
    last_train = max(e["train"].max() for e in ends.values())
    assert last_train + HORIZON * HOUR <= min(e["val"].min() for e in ends.values())
    assert max(e["val"].max() for e in ends.values()) + HORIZON * HOUR <= min(e["test"].min() for e in ends.values())
    # the borders sit at 70% and 80% of the union of the symbols' window end times
    union = np.unique(np.concatenate([d.prepared.timestamps for d in report.data.values()]))
    assert split.val_start == union[round(0.7 * len(union))]
    assert split.test_start == union[round(0.7 * len(union)) + round(0.1 * len(union))]


def test_each_scaler_is_fitted_on_its_own_training_rows(report: MultiSymbolReport,
                                                        frames: dict[str, pd.DataFrame]) -> None:
    meta = MultiSymbolMeta.read(report.run_dir)
    assert list(meta.symbols) == ["AAA", "BBB"]
    for symbol, frame in frames.items():
        prepared = report.data[symbol].prepared
        train_ends = prepared.end_bars[prepared.split.train]
        values = compute_features(frame, meta.feature_spec).to_numpy(dtype=np.float64)
        by_hand = StandardScaler().fit(values[int(train_ends[0]) - SEQ + 1: int(train_ends[-1]) + 1])
        stored = meta.symbols[symbol].scaler
        assert stored is not None and stored.mean is not None and stored.std is not None
        np.testing.assert_allclose(stored.mean, by_hand.mean, rtol=1e-12)  # type: ignore[arg-type]
        np.testing.assert_allclose(stored.std, by_hand.std, rtol=1e-12)  # type: ignore[arg-type]
        assert meta.symbols[symbol].target_scale == pytest.approx(
            float(np.std(prepared.forward_returns[prepared.split.train])))
    assert not np.allclose(meta.symbols["AAA"].scaler.mean, meta.symbols["BBB"].scaler.mean)  # type: ignore[union-attr]


def test_another_symbols_test_period_changes_no_weight(report: MultiSymbolReport, frames: dict[str, pd.DataFrame],
                                                       tmp_path: Path) -> None:
    changed = frames["BBB"].copy()
    after = changed["timestamp"].to_numpy() > report.split.test_start
    factor = np.exp(np.random.default_rng(0).normal(0.0, 0.05, int(after.sum())))
    for column in ("open", "high", "low", "close", "volume", "turnover"):
        changed.loc[after, column] = changed.loc[after, column].to_numpy() * factor
    again = _train({"AAA": frames["AAA"], "BBB": changed}, tmp_path / "run")
    before_weights = load_file(str(report.run_dir / "best" / "model.safetensors"))
    after_weights = load_file(str(again.run_dir / "best" / "model.safetensors"))
    assert before_weights.keys() == after_weights.keys()
    assert all(torch.equal(before_weights[k], after_weights[k]) for k in before_weights)
    assert again.evaluation["per_symbol"]["AAA"] == report.evaluation["per_symbol"]["AAA"]
    # the change did reach B's test windows: the check above could fail
    assert again.evaluation["per_symbol"]["BBB"]["model"] != report.evaluation["per_symbol"]["BBB"]["model"]


def test_evaluation_per_symbol_and_pooled(report: MultiSymbolReport) -> None:
    evaluation = json.loads((report.run_dir / "evaluation.json").read_text())
    assert evaluation["symbols"] == ["AAA", "BBB"]
    for block in (*evaluation["per_symbol"].values(), evaluation["pooled"]):
        assert set(block["baselines"]) == {"zero", "momentum", "ridge"} and "ic" in block["model"]
    tests = [evaluation["per_symbol"][s]["splits"]["test"]["windows"] for s in ("AAA", "BBB")]
    assert evaluation["pooled"]["model"]["n"] == sum(tests)
    assert evaluation["split"] == report.split.to_dict()
    assert all(evaluation["per_symbol"][s]["val_rmse"] > 0 for s in ("AAA", "BBB"))


def test_the_checkpoint_describes_each_symbol(report: MultiSymbolReport) -> None:
    meta = MultiSymbolMeta.read(report.run_dir)
    bbb = meta.for_symbol("BBB")
    assert isinstance(bbb, CandleMeta) and bbb.data.source["symbol"] == "BBB"
    assert bbb.test_start == report.evaluation["per_symbol"]["BBB"]["splits"]["test"]["first_timestamp"]
    assert bbb.scaler is not None and bbb.scaler.to_dict() == meta.symbols["BBB"].scaler.to_dict()  # type: ignore[union-attr]
    with pytest.raises(UserInputError, match="not trained on 'CCC'"):
        meta.for_symbol("CCC")
    with pytest.raises(UserInputError, match=r"one model of several symbols \(AAA, BBB\): name the one"):
        CandleMeta.read(report.run_dir)
    assert CandleMeta.read(report.run_dir, "BBB").to_dict() == bbb.to_dict()


def test_symbols_of_other_intervals_or_periods_are_refused(frames: dict[str, pd.DataFrame]) -> None:
    four_hours = synthetic_frame(SyntheticMarketConfig(n_bars=300, seed=1, interval_ms=4 * HOUR))
    with pytest.raises(UserInputError, match="bar steps differ"):
        prepare_symbols({"AAA": frames["AAA"], "FOUR": four_hours}, SEQ, HORIZON)
    start = int(frames["AAA"]["timestamp"].iloc[600])
    listed_late = synthetic_frame(SyntheticMarketConfig(n_bars=300, seed=2, start_time=start))
    with pytest.raises(UserInputError, match="NEW has no training window"):
        prepare_symbols({"AAA": frames["AAA"], "NEW": listed_late}, SEQ, HORIZON)


def test_cli_trains_one_model_on_stored_symbols(frames: dict[str, pd.DataFrame], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from reformer.cli import main
    from reformer.data import KlineStore

    db = tmp_path / "klines.db"
    with KlineStore(db) as store:
        for symbol, frame in frames.items():
            columns = frame[["timestamp", "open", "high", "low", "close", "volume", "turnover"]]
            store.insert("linear", symbol, "60", columns.itertuples(index=False, name=None))
    config = tmp_path / "tiny.toml"
    config.write_text(f"[data]\nseq_len = {SEQ}\nhorizon = {HORIZON}\n[model]\n" + "".join(
        f"{k} = {v}\n" for k, v in TINY.items()) + "[train]\nepochs = 1\nmax_batches_per_epoch = 2\ndevice = \"cpu\"\n")
    out = tmp_path / "run"
    assert main(["train", "--symbols", "aaa, bbb", "--db", str(db), "--offline", "--config", str(config),
                 "--out", str(out), "--json"]) == 0
    evaluation = json.loads(capsys.readouterr().out)
    assert evaluation["symbols"] == ["AAA", "BBB"] and evaluation["run_dir"] == str(out)
    assert MultiSymbolMeta.read(out).symbols["BBB"].data.source == {"interval": "60", "category": "linear",
                                                                    "symbol": "BBB"}
    assert main(["train", "--symbols", "AAA,BBB", "--db", str(db), "--offline", "--config", str(config),
                 "--out", str(tmp_path / "table")]) == 0
    assert "Pooled over AAA, BBB" in capsys.readouterr().out
    # a run of several symbols resumes like one of one (and so does a restarted torchrun job)
    assert main(["train", "--symbols", "AAA,BBB", "--db", str(db), "--offline", "--config", str(config),
                 "--out", str(out), "--resume", "--epochs", "2", "--json"]) == 0
    capsys.readouterr()
    assert len((out / "metrics.csv").read_text().strip().splitlines()) == 1 + 2  # header, epoch 1, epoch 2
    # predict and backtest take any trained symbol, each with its own scaler and out-of-sample period
    predicted = {}
    for symbol in ("AAA", "BBB"):
        assert main(["predict", "--checkpoint", str(out), "--symbol", symbol, "--db", str(db), "--json"]) == 0
        predicted[symbol] = json.loads(capsys.readouterr().out)
        meta = MultiSymbolMeta.read(out).for_symbol(symbol)
        assert predicted[symbol]["timestamp"] == int(frames[symbol]["timestamp"].iloc[-1])
        assert meta.test_start is not None
        assert main(["backtest", "--checkpoint", str(out), "--symbol", symbol, "--db", str(db), "--json"]) == 0
        stats = json.loads(capsys.readouterr().out)
        first = pd.Timestamp(stats["predictions"]["first_out_of_sample"])
        assert first == pd.Timestamp(meta.test_start, unit="ms", tz="UTC") and stats["n_orders"] > 0
    assert predicted["AAA"]["predicted_return"] != predicted["BBB"]["predicted_return"]
    assert main(["predict", "--checkpoint", str(out), "--symbol", "CCC", "--db", str(db)]) == 2
    assert "not trained on 'CCC'; pick one of AAA, BBB" in capsys.readouterr().err


@pytest.mark.parametrize(("flags", "words"), [(["--csv", "x.csv"], "--csv is not supported"),
                                              (["--walk-forward", "3"], "--walk-forward is not supported"),
                                              ([], "two or more different")])
def test_cli_refuses_symbols_with_a_clashing_flag(flags: list[str], words: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from reformer.cli import main

    symbols = "AAA" if not flags else "AAA,BBB"
    assert main(["train", "--symbols", symbols, *flags, "--db", str(tmp_path / "none.db"), "--offline"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err


def test_correlated_synthetic_symbols_share_a_factor() -> None:
    from reformer.data import correlated_frames

    frames = correlated_frames(["AAA", "BBB"], SyntheticMarketConfig(n_bars=2000, seed=4), correlation=0.8)
    returns = [np.diff(np.log(frame["close"].to_numpy())) for frame in frames.values()]
    assert np.corrcoef(*returns)[0, 1] > 0.4  # ~ rho^2 = 0.64
    independent = correlated_frames(["AAA", "BBB"], SyntheticMarketConfig(n_bars=2000, seed=4), correlation=0.0)
    assert abs(np.corrcoef(*[np.diff(np.log(f["close"].to_numpy())) for f in independent.values()])[0, 1]) < 0.1
    for frame in frames.values():
        assert (frame["high"] >= frame[["open", "close"]].max(axis=1)).all()
        assert (frame["low"] <= frame[["open", "close"]].min(axis=1)).all()
    assert prepare_symbols(frames, SEQ, HORIZON).split.val_start > 0  # candles the pipeline takes

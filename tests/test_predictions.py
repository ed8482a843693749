"""`reformer.predictions.Predictions`: the CSV round trip with its metadata line, files without it, validation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reformer.errors import DataFormatError, UserInputError
from reformer.predictions import Predictions, interval_of_step, interval_words, write_predictions_csv

TIMES = pd.date_range("2024-10-22", periods=6, freq="h", tz="UTC")
RETURNS = pd.Series(np.random.default_rng(0).normal(0.0, 0.01, len(TIMES)), index=TIMES)


def _regression() -> Predictions:
    return Predictions(RETURNS, interval="60", horizon=24, first_out_of_sample=TIMES[2], source="runs/btc 1h/best")


def test_round_trip_keeps_values_exactly_and_the_metadata(tmp_path: Path) -> None:
    path = _regression().to_csv(tmp_path / "preds.csv")
    lines = path.read_text().splitlines()
    assert lines[0] == ("# reformer predictions: interval=60 horizon=24 first_out_of_sample=2024-10-22T02:00:00Z "
                        "source=runs/btc 1h/best")
    assert lines[1] == "timestamp,prediction" and lines[2].startswith("1729555200000,")  # epoch ms
    back = Predictions.from_csv(path)
    pd.testing.assert_series_equal(back.values, _regression().values, check_exact=True)
    assert (back.interval, back.horizon, back.source) == ("60", 24, "runs/btc 1h/best")
    assert back.first_out_of_sample == TIMES[2]
    # the table stays readable by plain pandas
    table = pd.read_csv(path, comment="#")
    assert list(table.columns) == ["timestamp", "prediction"] and table["timestamp"].dtype == np.int64


def test_a_classifier_s_probabilities_round_trip(tmp_path: Path) -> None:
    probs = pd.DataFrame({"p_down": [0.2, 0.5], "p_flat": [0.3, 0.1], "p_up": [0.5, 0.4]}, index=TIMES[:2])
    values = probs.assign(prediction=probs["p_up"] - probs["p_down"])[["prediction", "p_down", "p_flat", "p_up"]]
    back = Predictions.from_csv(Predictions(values, interval="240", horizon=6).to_csv(tmp_path / "c.csv"))
    pd.testing.assert_frame_equal(back.values, Predictions(values).values, check_exact=True)
    assert back.interval == "240" and back.first_out_of_sample is None


def test_a_file_without_the_metadata_line_reads_with_unknown_metadata(tmp_path: Path) -> None:
    path = tmp_path / "hand.csv"
    pd.DataFrame({"timestamp": TIMES.as_unit("ms").asi8, "prediction": RETURNS.to_numpy()}).to_csv(path, index=False)
    back = Predictions.from_csv(path)
    assert (back.interval, back.horizon, back.first_out_of_sample, back.source) == (None, None, None, str(path))
    pd.testing.assert_series_equal(back.values, _regression().values, check_exact=True)
    with pytest.raises(UserInputError, match="out-of-sample period starts is unknown"):
        back.out_of_sample()
    other = tmp_path / "other.csv"  # another tool's comment line: skipped, nothing read from it
    other.write_text("# exported by my notebook\ntimestamp,prediction\n2024-10-22T00:00:00Z,0.5\n")
    assert Predictions.from_csv(other).interval is None and Predictions.from_csv(other).values.iloc[0] == 0.5


def test_out_of_sample_keeps_the_rows_from_the_first_unseen_bar_on() -> None:
    kept = _regression().out_of_sample()
    assert list(kept.values.index) == list(TIMES[2:]) and kept.first_out_of_sample == TIMES[2]
    assert kept.interval == "60" and kept.horizon == 24


def test_metadata_is_normalised() -> None:
    naive = pd.Series([0.1, 0.2], index=TIMES[:2].tz_localize(None))
    preds = Predictions(naive, interval="1h", first_out_of_sample=int(TIMES[1].value // 1_000_000))
    assert preds.interval == "60" and preds.first_out_of_sample == TIMES[1]
    assert str(preds.values.index.tz) == "UTC" and len(preds) == 2
    with pytest.raises(UserInputError, match="interval"):
        Predictions(naive, interval="7h")
    with pytest.raises(UserInputError, match="horizon=0"):
        Predictions(naive, horizon=0)
    with pytest.raises(UserInputError, match="unique and ascending"):
        Predictions(naive.iloc[::-1])


@pytest.mark.parametrize(("text", "message"), [
    ("{meta}\ntimestamp,prediction\n{t1},0.1\n{t0},0.2\n", "line 4: timestamp 2024-10-22 00:00:00+00:00 comes "
                                                           "before the previous line's"),
    ("{meta}\ntimestamp,prediction\n{t0},0.1\n{t0},0.2\n", "line 4: timestamp 2024-10-22 00:00:00+00:00 repeats "
                                                           "line 3"),
    ("{meta}\ntimestamp,prediction\n{t0},0.1\n{t1},abc\n", "line 4"),
    ("timestamp,prediction\n{t0},0.1\n{t1},abc\n", "line 3"),
    ("# reformer predictions: interval=7h\ntimestamp,prediction\n{t0},0.1\n", "line 1: interval='7h' is invalid"),
    ("# reformer predictions: first_out_of_sample=soon\ntimestamp,prediction\n{t0},0.1\n",
     "line 1: first_out_of_sample='soon' is invalid"),
    ("# reformer predictions: target=volatility\ntimestamp,prediction\n{t0},0.1\n",
     "line 1: target='volatility' is invalid"),
    ("{meta}\ntime,pred\n{t0},0.1\n", "missing column"),
    ("{meta}\ntimestamp,prediction\n", "no data rows"),
])
def test_a_bad_file_is_one_line_naming_the_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    meta = "# reformer predictions: interval=60 horizon=24"
    path.write_text(text.format(meta=meta, t0=TIMES[0].value // 1_000_000, t1=TIMES[1].value // 1_000_000))
    with pytest.raises(DataFormatError) as caught:
        Predictions.from_csv(path)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_volatility_model_s_predictions_keep_their_target_and_variance_and_are_not_traded(tmp_path: Path) -> None:
    from reformer import BacktestConfig, run_backtest

    log_variance = np.log(np.linspace(1e-4, 3e-4, len(TIMES)))
    values = pd.DataFrame({"prediction": log_variance, "variance": np.exp(log_variance + 0.1)}, index=TIMES)
    preds = Predictions(values, interval="60", horizon=24, source="runs/vol", target="log-variance")
    path = preds.to_csv(tmp_path / "vol.csv")
    assert path.read_text().splitlines()[0] == "# reformer predictions: interval=60 horizon=24 target=log-variance " \
                                               "source=runs/vol"
    back = Predictions.from_csv(path)
    assert back.target == "log-variance"
    pd.testing.assert_frame_equal(back.values, preds.values, check_exact=True)
    assert Predictions.from_csv(_regression().to_csv(tmp_path / "r.csv")).target == "return"  # the default
    bars = pd.DataFrame({"open": 100.0, "high": 101.0, "low": 99.0, "close": 100.0}, index=TIMES)
    with pytest.raises(UserInputError, match="runs/vol forecast the log realised variance"):
        run_backtest(back, bars, BacktestConfig())
    with pytest.raises(UserInputError, match="target='price' is invalid"):
        Predictions(RETURNS, target="price")


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match=r"nowhere\.csv"):
        Predictions.from_csv(tmp_path / "nowhere.csv")


def test_a_walk_forward_table_keeps_its_columns_and_reads_back_its_predictions(tmp_path: Path) -> None:
    table = pd.DataFrame({"timestamp": TIMES.as_unit("ms").asi8, "fold": [0, 0, 0, 1, 1, 1],
                          "realised": 0.0, "prediction": RETURNS.to_numpy(), "ridge": 0.5})
    path = write_predictions_csv(tmp_path / "predictions.csv", table, interval="60", horizon=24,
                                 first_out_of_sample=int(table["timestamp"].iloc[0]), source="runs/wf")
    assert list(pd.read_csv(path, comment="#").columns) == ["timestamp", "fold", "realised", "prediction", "ridge"]
    back = Predictions.from_csv(path)
    assert back.first_out_of_sample == TIMES[0] and len(back.out_of_sample()) == len(TIMES)
    pd.testing.assert_series_equal(back.values, _regression().values, check_exact=True)


def test_the_strategy_reader_returns_the_values(tmp_path: Path) -> None:
    from reformer.strategy.io import read_predictions_csv

    path = _regression().to_csv(tmp_path / "preds.csv")
    pd.testing.assert_series_equal(read_predictions_csv(path), _regression().values, check_exact=True)


def test_writing_through_a_symbolic_link_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.txt"
    target.write_text("keep me\n")
    link = tmp_path / "out" / "preds.csv"
    link.parent.mkdir()
    link.symlink_to(target)
    with pytest.raises(UserInputError, match="symbolic link"):
        _regression().to_csv(link)
    assert target.read_text() == "keep me\n" and link.is_symlink()


def test_intervals_from_bar_steps_and_in_words() -> None:
    assert [interval_of_step(ms) for ms in (60_000, 3_600_000, 14_400_000, 86_400_000, 30 * 86_400_000, 7)] == \
        ["1", "60", "240", "D", "M", None]
    assert [interval_words(code) for code in ("15", "60", "240", "D", "W", "M")] == \
        ["15-minute", "1-hour", "4-hour", "1-day", "1-week", "1-month"]
    assert json.dumps(_regression().out_of_sample().first_out_of_sample.isoformat())  # JSON-ready for stats.json


def test_run_backtest_refuses_in_sample_predictions_and_trades_the_out_of_sample_ones() -> None:
    from reformer import BacktestConfig, run_backtest

    predictions = _regression()
    index = predictions.values.index
    step = index[1] - index[0]
    times = index.append(pd.DatetimeIndex([index[-1] + step]))
    prices = np.linspace(100.0, 110.0, len(times))
    bars = pd.DataFrame({"open": prices, "high": prices * 1.01, "low": prices * 0.99, "close": prices}, index=times)
    assert predictions.first_out_of_sample is not None and index[0] < predictions.first_out_of_sample
    with pytest.raises(UserInputError, match=r"before the model's out-of-sample period.*out_of_sample\(\)"):
        run_backtest(predictions, bars, BacktestConfig())
    unseen = predictions.out_of_sample()
    traded = run_backtest(unseen, bars[bars.index >= unseen.first_out_of_sample], BacktestConfig())
    expected = run_backtest(unseen.values, bars[bars.index >= unseen.first_out_of_sample], BacktestConfig())
    assert traded.to_dict() == expected.to_dict()

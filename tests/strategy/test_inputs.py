"""Input handling: klines formats, sparse positions, predictions and predictors, bad inputs (test 8)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reformer.api.types import Kline
from reformer.errors import DataFormatError, UserInputError
from reformer.strategy import BacktestConfig, backtest_positions, run_backtest, to_bar_frame

TIMES = pd.date_range("2024-01-01", periods=6, freq="h", tz="UTC")
BARS = pd.DataFrame({"open": [100.0, 101, 102, 103, 104, 105], "high": [101.0, 102, 103, 104, 105, 106],
                     "low": [99.0, 100, 101, 102, 103, 104], "close": [101.0, 102, 103, 104, 105, 106]},
                    index=TIMES)
CONFIG = BacktestConfig(stop_loss=0.0, take_profit=0.0)


def test_epoch_ms_column_and_kline_lists_give_the_same_result() -> None:
    ms = (TIMES.asi8 // 1_000_000) if TIMES.unit == "ns" else TIMES.as_unit("ms").asi8
    frame = BARS.reset_index(drop=True).assign(timestamp=ms)
    klines = [Kline(int(m), *row, 1.0, 100.0) for m, row in zip(ms, BARS.itertuples(index=False), strict=True)]
    positions = pd.Series([1.0], index=TIMES[:1])
    expected = backtest_positions(positions, BARS, CONFIG).equity
    for source in (frame, klines):
        pd.testing.assert_series_equal(backtest_positions(positions, source, CONFIG).equity, expected,
                                       check_index_type=False, check_freq=False)
    # positions may also be keyed by epoch ms
    by_ms = backtest_positions(pd.Series([1.0], index=ms[:1]), BARS, CONFIG).equity
    pd.testing.assert_series_equal(by_ms, expected)


@pytest.mark.parametrize("unit", ["ns", "us", "ms"])
def test_a_datetime_timestamp_column_is_read_as_times(unit: str) -> None:
    # int64 of a datetime column is its native unit, not ms: read as ms it put hourly bars in year 55969 and made
    # the annualisation factor 8.76 instead of 8,760
    frame = BARS.reset_index(drop=True).assign(timestamp=TIMES.as_unit(unit).tz_localize(None))
    result = backtest_positions(pd.Series([1.0], index=TIMES[:1]), frame, CONFIG)
    expected = backtest_positions(pd.Series([1.0], index=TIMES[:1]), BARS, CONFIG)
    assert result.periods_per_year == expected.periods_per_year == 8_760.0
    assert result.start == expected.start and result.sharpe_ratio == expected.sharpe_ratio


def test_sparse_positions_hold_until_the_next_row_and_are_flat_before() -> None:
    result = backtest_positions(pd.Series([1.0, 0.0], index=[TIMES[2], TIMES[4]]), BARS, CONFIG)
    held = result.positions.to_numpy()
    assert (held[:3] == 0).all() and (held[3:5] > 0).all() and held[5] == 0


def test_predictions_thresholds_and_predictors() -> None:
    predictions = pd.Series([0.01, 0.02, -0.01, 0.0, np.nan, 0.01], index=TIMES)
    config = BacktestConfig(stop_loss=0.0, take_profit=0.0, long_threshold=0.005, short_threshold=-0.005)
    direct = run_backtest(predictions, BARS, config)
    np.testing.assert_array_equal(np.sign(direct.positions.to_numpy()), [0, 1, 1, -1, 0, 0])

    class Source:
        def predict_series(self, klines: pd.DataFrame) -> pd.Series:
            return predictions.loc[klines.index]

    for predictor in (Source(), lambda klines: predictions):
        pd.testing.assert_series_equal(run_backtest(predictor, BARS, config).equity, direct.equity)
    probabilities = pd.DataFrame({"p_up": [0.6, 0.2], "p_down": [0.3, 0.7]}, index=TIMES[:2])
    from_probabilities = run_backtest(probabilities, BARS, config)
    assert from_probabilities.positions.iloc[1] > 0 and from_probabilities.positions.iloc[2] < 0


def test_allow_short_false_treats_short_targets_as_flat() -> None:
    config = BacktestConfig(stop_loss=0.0, take_profit=0.0, allow_short=False)
    result = backtest_positions(pd.Series([-1.0], index=TIMES[:1]), BARS, config)
    assert (result.positions == 0).all() and result.trades.empty


@pytest.mark.parametrize("bad", [1.5, -1.01, np.nan])
def test_a_position_outside_the_range_names_its_row(bad: float) -> None:
    positions = pd.Series([0.0, 1.0, bad], index=TIMES[:3])
    with pytest.raises(UserInputError, match=r"positions row 2 .*\[-1, 1\]"):
        backtest_positions(positions, BARS, CONFIG)


def test_a_time_that_is_not_a_bar_names_its_row() -> None:
    positions = pd.Series([1.0, 0.0], index=[TIMES[0], TIMES[1] + pd.Timedelta(minutes=30)])
    with pytest.raises(UserInputError, match="positions row 1 has time 2024-01-01 01:30:00"):
        backtest_positions(positions, BARS, CONFIG)
    predictions = pd.Series([0.1], index=[TIMES[-1] + pd.Timedelta(hours=1)])
    with pytest.raises(UserInputError, match="predictions row 0"):
        run_backtest(predictions, BARS, CONFIG)
    with pytest.raises(UserInputError, match="row 1 repeats"):
        backtest_positions(pd.Series([1.0, 0.0], index=[TIMES[0], TIMES[0]]), BARS, CONFIG)


def test_malformed_klines_are_rejected() -> None:
    with pytest.raises(DataFormatError, match="close"):
        to_bar_frame(BARS.drop(columns="close"))
    with pytest.raises(DataFormatError, match="strictly increas"):
        to_bar_frame(BARS.iloc[::-1])
    with pytest.raises(DataFormatError, match="at least 2"):
        to_bar_frame(BARS.iloc[:1])
    broken = BARS.copy()
    broken.iloc[3, 0] = -1.0
    with pytest.raises(DataFormatError, match="row 3"):
        to_bar_frame(broken)
    with pytest.raises(UserInputError, match="Series"):
        backtest_positions([1.0, 0.0], BARS, CONFIG)
    with pytest.raises(UserInputError, match="predict_series"):
        run_backtest(42, BARS, CONFIG)


def test_semicolon_separated_predictions_read_as_the_comma_file(tmp_path: Path) -> None:
    from reformer.strategy.io import read_predictions_csv

    rows = ["timestamp,prediction", "1704067200000,0.01", "1704070800000,-0.02"]
    comma, semi = tmp_path / "comma.csv", tmp_path / "semi.csv"
    comma.write_text("\n".join(rows) + "\n")
    semi.write_text("\n".join(row.replace(",", ";") for row in rows) + "\n")
    pd.testing.assert_series_equal(read_predictions_csv(semi), read_predictions_csv(comma))


def test_predictions_under_the_metadata_line_are_read_in_order(tmp_path: Path) -> None:
    from reformer.strategy.io import read_predictions_csv

    rows = ["# reformer predictions: interval=60 horizon=24 first_out_of_sample=2024-01-01T01:00:00Z",
            "timestamp,prediction", "1704067200000,0.01", "1704070800000,-0.02"]
    path = tmp_path / "preds.csv"
    path.write_text("\n".join(rows) + "\n")
    assert read_predictions_csv(path).tolist() == [0.01, -0.02]
    path.write_text("\n".join([*rows[:2], rows[3], rows[2]]) + "\n")  # the lines below the header count from 3
    with pytest.raises(DataFormatError, match=r"line 4: timestamp 2024-01-01 00:00:00\+00:00 comes before"):
        read_predictions_csv(path)


def test_save_report_never_writes_through_a_symbolic_link(tmp_path: Path) -> None:
    import json

    from reformer.strategy.plots import REPORT_FILES, save_report

    result = backtest_positions(pd.Series([1.0], index=TIMES[:1]), BARS, CONFIG)
    outside = tmp_path / "outside.csv"
    outside.write_text("precious\n")
    out = tmp_path / "report"
    out.mkdir()
    (out / "trades.csv").symlink_to(outside)
    with pytest.raises(UserInputError, match=r"trades\.csv is a symbolic link"):
        save_report(result, BARS, out)
    assert outside.read_text() == "precious\n" and [p.name for p in out.iterdir()] == ["trades.csv"]
    (out / "trades.csv").unlink()
    paths = save_report(result, BARS, out, extra={"predictions": {"in_sample": True}})
    assert json.loads(paths["stats"].read_text())["predictions"] == {"in_sample": True}
    assert sorted(p.name for p in out.iterdir()) == sorted(REPORT_FILES.values())  # no temporary file left behind

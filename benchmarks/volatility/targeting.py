"""Volatility targeting on the study's test period: the model's forecast against trailing realised volatility.

    python3 benchmarks/volatility/targeting.py OUT CANDLES.csv L [TARGET]

An always-long BTC position sized to a per-bar volatility target (default 0.002, about 19% a year: below the
usual hourly volatility, so the size cap of 1 seldom binds), over the test bars of OUT/ctx_<L>/predictions.csv,
through the backtest engine (next-bar fills, default fees; the whole equity at size 1), sized by:
- the Reformer's forecast, sqrt(variance / 24), one a day (`run_backtest(volatility=...)`);
- HAR-RV's forecast from the same file, the same way;
- the trailing realised volatility of the last 24 bars taken when the forecasts are made and held as long (the
  forecasts' own cadence), and of the last 24 and of the last 168 bars updated every bar (`vol_window`).
For each: the realised per-bar volatility of the strategy's returns over the period, its ratio to the target, and
the root mean square of ln(daily realised volatility / target) over the days (how far a day strays). Writes
OUT/targeting.json.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from reformer.data.csv_io import read_klines
from reformer.data.dataset import klines_to_frame
from reformer.predictions import LOG_VARIANCE, Predictions
from reformer.strategy import BacktestConfig, realized_volatility, run_backtest


def tracking(equity: pd.Series, target: float) -> dict[str, float]:
    returns = np.log(equity).diff().dropna()
    daily = returns.groupby(returns.index.floor("D")).std(ddof=1).dropna()
    daily = daily[daily > 0]
    realised = float(returns.std(ddof=1))
    return {"realised_per_bar": realised, "ratio_to_target": realised / target,
            "rms_log_daily_ratio": float(np.sqrt(np.mean(np.log(daily / target) ** 2))), "days": len(daily)}


def main() -> int:
    out, candles, length = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    target = float(sys.argv[4]) if len(sys.argv) > 4 else 0.002
    forecast = Predictions.from_csv(out / f"ctx_{length}" / "predictions.csv")
    table = pd.read_csv(out / f"ctx_{length}" / "predictions.csv", comment="#")
    times = pd.to_datetime(table["timestamp"], unit="ms", utc=True)
    first, last = times.iloc[0], times.iloc[-1] + pd.Timedelta(hours=24)
    frame = klines_to_frame(read_klines(candles))
    bar_times = pd.to_datetime(frame["timestamp"], unit="ms", utc=True)
    # 200 bars before the first forecast: the trailing windows' warm-up; they trade only from `first` on
    frame = frame[(bar_times >= first - pd.Timedelta(hours=200)) & (bar_times <= last)].reset_index(drop=True)
    bar_times = pd.to_datetime(frame["timestamp"], unit="ms", utc=True)
    always_long = pd.Series(np.where(bar_times >= first, 1.0, np.nan), index=bar_times)
    har = Predictions(pd.DataFrame({"prediction": np.log(table["har"].to_numpy()),
                                    "variance": table["har"].to_numpy()}, index=times),
                      interval="60", horizon=forecast.horizon, target=LOG_VARIANCE, source="HAR-RV")
    # the trailing volatility sampled when the forecasts are made and held as long: the same cadence as theirs
    daily_trailing = realized_volatility(frame.set_index(bar_times)["close"], 24).reindex(times)
    results = {}
    for name, window, volatility in (("reformer_forecast", 24, forecast), ("har_forecast", 24, har),
                                     ("trailing_24_daily", 24, daily_trailing), ("trailing_24", 24, None),
                                     ("trailing_168", 168, None)):
        config = BacktestConfig(vol_target=target, vol_window=window, position_size=1.0, stop_loss=0.0,
                                take_profit=0.0)
        result = run_backtest(always_long, frame, config, volatility=volatility)
        equity = result.equity[result.equity.index >= first]
        results[name] = {**tracking(equity, target), "exposure": result.exposure,
                         "total_return": result.total_return}
    report = {"context": length, "target_per_bar": target, "target_annualised": target * math.sqrt(24 * 365),
              "first": str(first), "last": str(last), "results": results}
    (out / "targeting.json").write_text(json.dumps(report, indent=2) + "\n")
    for name, row in results.items():
        print(f"{name:>18}: realised {row['realised_per_bar']:.5f} per bar ({row['ratio_to_target']:.3f} x target), "
              f"RMS ln(daily / target) {row['rms_log_daily_ratio']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

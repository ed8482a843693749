"""Causal features computed from OHLCV(+turnover) candles.

Every feature at bar t uses bars <= t only (backward rolling windows, `adjust=False` EWMs, no centring, no
negative shifts), so perturbing candles after t changes nothing at or before t (tested).

Each feature documents its *warm-up*: the number of leading bars that are NaN. Recursive indicators (EWM-based:
RSI, MACD, ATR) depend on where the series starts (freqtrade's "recursive-analysis" problem); their warm-up is
extended until the weight of the seed value has decayed below `FeatureSpec.recursive_tolerance`, so a value after
the warm-up is the same, to that tolerance, whether the history began 200 or 20,000 bars earlier.

| group          | columns: definition                                     | warm-up (leading NaN bars)  |
|----------------|---------------------------------------------------------|-----------------------------|
| `log_return`   | `log_return_{k}`: ln(C_t / C_{t-k}), k in return_horizons | k                         |
| `realized_vol` | `realized_vol_{w}`: sqrt(sum of last w squared r_1)     | w                           |
| `rsi`          | `rsi_{n}`: 100 - 100/(1 + RS), Wilder avg gain/loss      | max(n, settle(1/n) + 1)     |
| `macd`         | `macd`: line = (EMA_fast - EMA_slow) / C_t              | L = max(slow-1, settle(2/(slow+1))) |
|                | `macd_signal`: EMA_sig(line) / C_t; `macd_hist`: (line - signal) / C_t |                      |
|                |                                                         | L + max(sig-1, settle(2/(sig+1))) |
| `bollinger`    | `bollinger_pct_b`: (C - lower)/(upper - lower), ddof=0  | w - 1                       |
| `atr`          | `atr_ratio`: Wilder ATR(n) / C_t                        | max(n-1, settle(1/n))       |
| `volume_z`     | `volume_z`: rolling z-score of ln(1 + volume)           | w - 1 (w = zscore_window)   |
| `turnover_z`   | `turnover_z`: rolling z-score of ln(1 + turnover)       | w - 1                       |
| `signed_volume` | `signed_volume_z`: sign(C - O) * volume_z (order-flow proxy, as OBV's increments) | w - 1 |
| `candle`       | `body_ratio` (C-O)/(H-L), `upper_wick_ratio`, `lower_wick_ratio` | 0                  |
| `time`         | `hour_sin/cos`, `dow_sin/cos` (UTC, from the open time) | 0                           |

With the defaults (tolerance 1e-3): log_return_1/4/24: 1/4/24, realized_vol_24: 24, rsi_14: 95, macd: 90,
macd_signal/hist: 121, bollinger_pct_b: 19, atr_ratio: 94, volume_z/turnover_z: 167, candle and time: 0; the
frame's warm-up is 167.

settle(alpha) = ceil(ln(tol) / ln(1 - alpha)): bars until the seed value's weight (1 - alpha)^k falls below tol;
with `recursive_tolerance=None` only the `ta`-style minimum-period NaNs remain.

MACD is divided by the close because the raw MACD is in price units and scales with the price level (BTC went
from 6k to 126k); MACD / C is a dimensionless, roughly stationary momentum measure. Likewise ATR / C.
Degenerate denominators give neutral values, never inf: a flat Bollinger band gives %B = 0.5, a zero-range candle
gives ratios 0, a constant volume window gives z = 0, RSI with no losses is 100.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from reformer.errors import ConfigError, DataFormatError

__all__ = ["DEFAULT_FEATURE_GROUPS", "FEATURE_GROUPS", "FeatureSpec", "compute_features"]

DEFAULT_FEATURE_GROUPS: tuple[str, ...] = (
    "log_return", "realized_vol", "rsi", "macd", "bollinger", "atr", "volume_z", "turnover_z", "candle", "time",
)
"""The groups of `FeatureSpec()`."""
FEATURE_GROUPS: tuple[str, ...] = (*DEFAULT_FEATURE_GROUPS, "signed_volume")
"""Every known group (`signed_volume` is opt-in)."""
_PRICE_COLUMNS = ("open", "high", "low", "close", "volume")
_MS_PER_HOUR = 3_600_000
_MS_PER_DAY = 24 * _MS_PER_HOUR


@dataclass(frozen=True)
class FeatureSpec:
    """Which features to compute and with which windows; JSON-serialisable (stored in checkpoints).

    All windows are in bars.
    """

    groups: tuple[str, ...] = DEFAULT_FEATURE_GROUPS
    """Feature groups to compute, in output order; each one of `FEATURE_GROUPS`."""
    return_horizons: tuple[int, ...] = (1, 4, 24)
    """k of the k-bar log returns ln(C_t / C_{t-k})."""
    vol_window: int = 24
    """Window of the realised volatility."""
    rsi_window: int = 14
    """RSI period n (Wilder smoothing, alpha = 1/n)."""
    macd_fast: int = 12
    """MACD fast EMA span."""
    macd_slow: int = 26
    """MACD slow EMA span."""
    macd_signal: int = 9
    """MACD signal EMA span."""
    bollinger_window: int = 20
    """Bollinger moving-average window."""
    bollinger_std: float = 2.0
    """Bollinger band width in (population) standard deviations."""
    atr_window: int = 14
    """ATR period n (Wilder smoothing)."""
    zscore_window: int = 168
    """Rolling window of the volume / turnover z-scores."""
    allow_missing_turnover: bool = True
    """If the candles have no turnover column, drop `turnover_z` (True) or raise (False)."""
    recursive_tolerance: float | None = 1e-3
    """Extend recursive warm-ups until the seed value's weight is below this; None keeps only the minimum periods."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "groups", tuple(self.groups))
        object.__setattr__(self, "return_horizons", tuple(int(k) for k in self.return_horizons))
        unknown = [g for g in self.groups if g not in FEATURE_GROUPS]
        if unknown or not self.groups or len(set(self.groups)) != len(self.groups):
            raise ConfigError(f"FeatureSpec.groups={self.groups!r} is invalid: "
                              f"give distinct names from {FEATURE_GROUPS}")
        if "log_return" in self.groups and not self.return_horizons:
            raise ConfigError("FeatureSpec.return_horizons is empty: give at least one k >= 1, e.g. (1,)")
        for name in ("vol_window", "rsi_window", "macd_fast", "macd_signal", "atr_window"):
            _check_window(name, getattr(self, name), 1)
        for name in ("bollinger_window", "zscore_window"):
            _check_window(name, getattr(self, name), 2)
        for k in self.return_horizons:
            _check_window("return_horizons", k, 1)
        _check_window("macd_slow", self.macd_slow, self.macd_fast + 1)
        if not self.bollinger_std > 0:
            raise ConfigError(f"FeatureSpec.bollinger_std={self.bollinger_std} must be > 0, e.g. 2.0")
        tol = self.recursive_tolerance
        if tol is not None and not 0 < tol < 1:
            raise ConfigError(f"FeatureSpec.recursive_tolerance={tol} must be in (0, 1) or None, e.g. 1e-3")

    # ---- serialisation -------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict (tuples become lists)."""
        out = asdict(self)
        out["groups"] = list(self.groups)
        out["return_horizons"] = list(self.return_horizons)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSpec:
        """Inverse of `to_dict`.

        Raises:
            DataFormatError: unknown keys (e.g. a checkpoint from a newer version).
        """
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise DataFormatError(f"FeatureSpec: unknown keys {unknown}; expected a subset of {sorted(known)}")
        kwargs = dict(data)
        for key in ("groups", "return_horizons"):
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key])
        return cls(**kwargs)

    def to_json(self) -> str:
        """JSON text of `to_dict`."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FeatureSpec:
        """Inverse of `to_json`."""
        return cls.from_dict(json.loads(text))

    # ---- derived ---------------------------------------------------------------------------------------------
    def resolve(self, has_turnover: bool) -> FeatureSpec:
        """The spec actually computable on candles with/without turnover.

        Raises:
            DataFormatError: turnover is missing, `turnover_z` is requested and `allow_missing_turnover` is False.
        """
        if has_turnover or "turnover_z" not in self.groups:
            return self
        if not self.allow_missing_turnover:
            raise DataFormatError("candles have no 'turnover' column but FeatureSpec.groups has 'turnover_z': "
                                  "add turnover, drop 'turnover_z', or set allow_missing_turnover=True")
        return replace(self, groups=tuple(g for g in self.groups if g != "turnover_z"))

    def columns(self) -> tuple[str, ...]:
        """Output column names, in order (for a spec with `turnover_z`, assumes turnover is present)."""
        return tuple(name for group in self.groups for name in self._group_columns(group))

    def warmups(self) -> dict[str, int]:
        """Leading NaN bars per output column."""
        return {name: warm for group in self.groups for name, warm in self._group_warmups(group).items()}

    @property
    def warmup(self) -> int:
        """Leading NaN bars of the whole feature frame (max over columns)."""
        return max(self.warmups().values())

    def _settle(self, alpha: float) -> int:
        """Bars until a recursion with weight `alpha` on the new value forgets its seed to `recursive_tolerance`
        ((1 - alpha)^k <= tol); alpha = 1 (a window of 1) keeps no memory at all."""
        tol = self.recursive_tolerance
        return 0 if tol is None or alpha >= 1.0 else math.ceil(math.log(tol) / math.log(1.0 - alpha))

    def _group_columns(self, group: str) -> tuple[str, ...]:
        return tuple(self._group_warmups(group))

    def _group_warmups(self, group: str) -> dict[str, int]:
        if group == "log_return":
            return {f"log_return_{k}": k for k in self.return_horizons}
        if group == "realized_vol":
            return {f"realized_vol_{self.vol_window}": self.vol_window}
        if group == "rsi":
            n = self.rsi_window
            return {f"rsi_{n}": max(n, self._settle(1.0 / n) + 1)}  # its EWMs start at bar 1
        if group == "macd":
            line = max(self.macd_slow - 1, self._settle(2.0 / (self.macd_slow + 1)))
            signal = line + max(self.macd_signal - 1, self._settle(2.0 / (self.macd_signal + 1)))
            return {"macd": line, "macd_signal": signal, "macd_hist": signal}
        if group == "bollinger":
            return {"bollinger_pct_b": self.bollinger_window - 1}
        if group == "atr":
            return {"atr_ratio": max(self.atr_window - 1, self._settle(1.0 / self.atr_window))}
        if group in ("volume_z", "turnover_z"):
            return {group: self.zscore_window - 1}
        if group == "signed_volume":
            return {"signed_volume_z": self.zscore_window - 1}
        if group == "candle":
            return {"body_ratio": 0, "upper_wick_ratio": 0, "lower_wick_ratio": 0}
        assert group == "time", group
        return {"hour_sin": 0, "hour_cos": 0, "dow_sin": 0, "dow_cos": 0}


def _check_window(name: str, value: int, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"FeatureSpec.{name}={value!r} must be an integer >= {minimum}")


# ---- the feature functions (Series in, Series out, same index) -------------------------------------------------

def log_return(close: pd.Series, k: int = 1) -> pd.Series:
    """ln(C_t / C_{t-k}); warm-up k."""
    return np.log(close / close.shift(k))


def realized_vol(close: pd.Series, window: int) -> pd.Series:
    """sqrt(sum_{i=t-w+1..t} r_i^2) of 1-bar log returns (not annualised); warm-up w."""
    squared = log_return(close, 1) ** 2
    return np.sqrt(squared.rolling(window, min_periods=window).sum())


def _wilder(series: pd.Series, n: int) -> pd.Series:
    # RMA: m_t = m_{t-1} + (x_t - m_{t-1}) / n, seeded with the first value (pandas skips leading NaNs)
    return series.ewm(alpha=1.0 / n, adjust=False).mean()


def rsi(close: pd.Series, n: int = 14) -> pd.Series:
    """RSI in [0, 100]: 100 - 100 / (1 + avg_gain / avg_loss), Wilder averages from bar 1; 100 if no losses."""
    diff = close.diff()
    gain = _wilder(diff.clip(lower=0.0), n)
    loss = _wilder((-diff).clip(lower=0.0), n)
    out = 100.0 - 100.0 / (1.0 + gain / loss.where(loss > 0))
    return out.where(loss > 0, 100.0).where(diff.notna())


def _ema(series: pd.Series, span: int) -> pd.Series:
    return series.ewm(span=span, adjust=False).mean()


def macd(close: pd.Series, fast: int = 12, slow: int = 26, signal: int = 9) -> pd.DataFrame:
    """MACD line, signal and histogram, each divided by the close (dimensionless)."""
    line = _ema(close, fast) - _ema(close, slow)
    sig = _ema(line, signal)
    return pd.DataFrame({"macd": line / close, "macd_signal": sig / close, "macd_hist": (line - sig) / close})


def bollinger_pct_b(close: pd.Series, window: int = 20, n_std: float = 2.0) -> pd.Series:
    """%B = (C - lower) / (upper - lower) with population std (ddof=0, as `ta`); 0.5 on a flat band."""
    mid = close.rolling(window, min_periods=window).mean()
    std = close.rolling(window, min_periods=window).std(ddof=0)
    width = 2.0 * n_std * std
    pct = (close - (mid - n_std * std)) / width.where(width > 0)
    return pct.where(~(width <= 0), 0.5)


def atr_ratio(high: pd.Series, low: pd.Series, close: pd.Series, n: int = 14) -> pd.Series:
    """Wilder ATR(n) / C; TR_t = max(H-L, |H-C_{t-1}|, |L-C_{t-1}|), TR_0 = H_0 - L_0."""
    prev = close.shift(1)
    true_range = pd.concat([high - low, (high - prev).abs(), (low - prev).abs()], axis=1).max(axis=1)
    return _wilder(true_range, n) / close


def rolling_zscore(series: pd.Series, window: int) -> pd.Series:
    """(x - rolling mean) / rolling population std over the last `window` bars; 0 where the std is 0."""
    mean = series.rolling(window, min_periods=window).mean()
    std = series.rolling(window, min_periods=window).std(ddof=0)
    z = (series - mean) / std.where(std > 1e-12)
    return z.where(~(std <= 1e-12), 0.0)


def candle_ratios(frame: pd.DataFrame) -> pd.DataFrame:
    """Body (C-O), upper wick H-max(O,C) and lower wick min(O,C)-L, each divided by the range H-L (0 if flat)."""
    rng = (frame["high"] - frame["low"]).to_numpy(dtype=float)
    safe = np.where(rng > 0, rng, 1.0)
    top = np.maximum(frame["open"], frame["close"]).to_numpy(dtype=float)
    bottom = np.minimum(frame["open"], frame["close"]).to_numpy(dtype=float)
    ratios = {
        "body_ratio": (frame["close"] - frame["open"]).to_numpy(dtype=float) / safe,
        "upper_wick_ratio": (frame["high"].to_numpy(dtype=float) - top) / safe,
        "lower_wick_ratio": (bottom - frame["low"].to_numpy(dtype=float)) / safe,
    }
    return pd.DataFrame({k: np.where(rng > 0, v, 0.0) for k, v in ratios.items()}, index=frame.index)


def time_encodings(open_time_ms: np.ndarray, index: pd.Index) -> pd.DataFrame:
    """sin/cos of hour-of-day (period 24 h) and of day-of-week (period 7 d, Monday 00:00 = 0, hours as a
    fraction of the day), UTC."""
    ms = open_time_ms.astype(np.int64)
    hour = (ms % _MS_PER_DAY) / _MS_PER_HOUR
    dow = ((ms // _MS_PER_DAY) + 3) % 7 + hour / 24.0  # 1970-01-01 was a Thursday (Monday = 0)
    return pd.DataFrame({
        "hour_sin": np.sin(2 * np.pi * hour / 24.0), "hour_cos": np.cos(2 * np.pi * hour / 24.0),
        "dow_sin": np.sin(2 * np.pi * dow / 7.0), "dow_cos": np.cos(2 * np.pi * dow / 7.0),
    }, index=index)


def _open_times(frame: pd.DataFrame) -> np.ndarray:
    for name in ("timestamp", "start_time"):
        if name in frame.columns:
            return frame[name].to_numpy(dtype=np.int64)
    if isinstance(frame.index, pd.DatetimeIndex):
        return np.asarray(frame.index.as_unit("ms").asi8, dtype=np.int64)
    raise DataFormatError("the 'time' features need open times: add a 'timestamp' column (epoch ms UTC) "
                          "or a DatetimeIndex, or drop 'time' from FeatureSpec.groups")


def compute_features(frame: pd.DataFrame, spec: FeatureSpec | None = None) -> pd.DataFrame:
    """Compute the causal features of `spec` on chronologically ordered candles.

    Args:
        frame: candles, one row per bar in time order, columns open, high, low, close, volume, optional turnover,
            and (for the `time` group) `timestamp` epoch ms UTC of the candle open or a DatetimeIndex.
        spec: the features; default `FeatureSpec()`.

    Returns:
        DataFrame `[n_bars, n_features]` float64, same index as `frame`, columns `spec.resolve(...).columns()`;
        the first `warmup` rows of each column are NaN (see the module table).

    Raises:
        DataFormatError: a required column is missing (turnover: see `FeatureSpec.allow_missing_turnover`).
    """
    spec = spec or FeatureSpec()
    missing = [c for c in _PRICE_COLUMNS if c not in frame.columns]
    if missing:
        raise DataFormatError(f"candles lack columns {missing}; expected {list(_PRICE_COLUMNS)} (+ turnover)")
    spec = spec.resolve("turnover" in frame.columns)
    close = frame["close"].astype(float)

    @functools.cache
    def volume_z() -> pd.Series:  # shared by the volume_z and signed_volume groups: computed once
        return rolling_zscore(np.log1p(frame["volume"].astype(float)), spec.zscore_window)

    builders: dict[str, Callable[[], pd.DataFrame]] = {
        "log_return": lambda: pd.DataFrame({f"log_return_{k}": log_return(close, k) for k in spec.return_horizons}),
        "realized_vol": lambda: realized_vol(close, spec.vol_window).rename(f"realized_vol_{spec.vol_window}")
        .to_frame(),
        "rsi": lambda: rsi(close, spec.rsi_window).rename(f"rsi_{spec.rsi_window}").to_frame(),
        "macd": lambda: macd(close, spec.macd_fast, spec.macd_slow, spec.macd_signal),
        "bollinger": lambda: bollinger_pct_b(close, spec.bollinger_window, spec.bollinger_std)
        .rename("bollinger_pct_b").to_frame(),
        "atr": lambda: atr_ratio(frame["high"].astype(float), frame["low"].astype(float), close, spec.atr_window)
        .rename("atr_ratio").to_frame(),
        "volume_z": lambda: volume_z().rename("volume_z").to_frame(),
        "turnover_z": lambda: rolling_zscore(np.log1p(frame["turnover"].astype(float)), spec.zscore_window)
        .rename("turnover_z").to_frame(),
        "signed_volume": lambda: (np.sign(close - frame["open"].astype(float)) * volume_z())
        .rename("signed_volume_z").to_frame(),
        "candle": lambda: candle_ratios(frame),
        "time": lambda: time_encodings(_open_times(frame), frame.index),
    }
    out = pd.concat([builders[group]() for group in spec.groups], axis=1)
    out = out.astype(float)
    # recursive features: blank the bars whose value still depends noticeably on where the series began
    for name, warm in spec.warmups().items():
        out.iloc[:warm, out.columns.get_loc(name)] = np.nan
    return out[list(spec.columns())]

"""A deterministic synthetic market (seeded numpy RNG) with an optional planted long-range signal.

What is generated, bar by bar (t = 0 .. n-1, all returns are log returns):

1. Regimes: a Markov chain over {range, up-trend, down-trend}; each bar it re-draws its state (uniformly, possibly
   the same one) with probability `regime_switch_prob`. Drift per bar: +`trend_drift` / -`trend_drift` in the
   trends; in a range, -`range_reversion` * (log price - the log price when the range began).
2. Volatility clustering: GARCH(1,1), sigma2_{t+1} = omega + alpha * eps_t^2 + beta * sigma2_t with
   omega = bar_vol^2 (1 - alpha - beta), so `bar_vol` is the unconditional per-bar std; eps_t = sigma_t z_t with
   z_t Student-t(`tail_df`) rescaled to unit variance (fat tails).
3. Events (if `event_rate` > 0): with probability `event_rate` per bar, bar t is an event with a random sign
   s_t = +-1 (the *marker*, `SyntheticMarket.markers`, 0 elsewhere). The event is visible in the inputs: the
   candle's volume is multiplied by `event_volume_mult`, its return is s_t * 2 sigma_t (a body of sign s_t), and
   its wicks are 10x shorter, so |body / range| is close to 1. The range regime's anchor moves with the event
   body, so nothing reverts it: apart from the planted jump, a marker says nothing about later returns.
4. The planted signal (only if `plant_signal`): a jump of s_t * `event_size` * `bar_vol` is added to the return of
   bar t + `lag` (default lag 150, at least 100). So the bar return at t correlates positively with the marker
   at t - lag, and the forward return ln(C_{t'+h}/C_{t'}) contains the jumps of events at t' - lag + 1 .. t' - lag + h:
   a model whose window holds >= `lag` bars sees every event that matters for its horizon, one with at most
   lag - h bars sees none of them. The jumps are added on top of the base path (they feed neither the GARCH
   recursion nor the range reversion), so with and without planting the same seed gives identical candles up
   to those jumps, and the events themselves are identical: `plant_signal=False` is the exact control.

Candles: open_t = close_{t-1}; close_t = open_t * exp(r_t); high = max(open, close) * exp(|N| 0.6 sigma_t) and
low = min(open, close) * exp(-|N| 0.6 sigma_t), so high >= max(open, close) and low <= min(open, close);
volume = base_volume * lognormal(0, 0.35) * (1 + 0.5 |z_t|) * sqrt(sigma_t / bar_vol) * (1 + 0.3 sin(2 pi hour/24))
(> 0); turnover = volume * (open + high + low + close) / 4.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from reformer.api.types import Kline
from reformer.errors import ConfigError

__all__ = ["SyntheticMarket", "SyntheticMarketConfig", "correlated_frames", "generate_market", "synthetic_frame",
           "synthetic_klines"]

RANGE, UP_TREND, DOWN_TREND = 0, 1, 2


@dataclass(frozen=True)
class SyntheticMarketConfig:
    """Parameters of the synthetic market (see the module docstring for the exact process)."""

    n_bars: int = 5000
    """Number of candles."""
    seed: int = 0
    """Seed of the numpy Generator; the same config always gives the same market."""
    interval_ms: int = 3_600_000
    """Bar length in milliseconds (default 1 hour)."""
    start_time: int = 1_577_836_800_000
    """Open time of the first candle, epoch ms UTC (default: the first hour of 2020)."""
    start_price: float = 10_000.0
    """Open of the first candle, quote currency."""
    bar_vol: float = 0.005
    """Unconditional per-bar log-return std."""
    garch_alpha: float = 0.08
    """GARCH reaction to the last squared shock."""
    garch_beta: float = 0.90
    """GARCH persistence; alpha + beta < 1."""
    tail_df: float = 5.0
    """Degrees of freedom of the Student-t shocks (> 2)."""
    regime_switch_prob: float = 0.004
    """Probability per bar of re-drawing the regime."""
    trend_drift: float = 0.0004
    """|Drift| per bar in a trend regime (log return)."""
    range_reversion: float = 0.02
    """Per-bar pull towards the range's anchor in the range regime (0..1)."""
    base_volume: float = 100.0
    """Typical volume per bar, base units."""
    event_rate: float = 0.01
    """Probability per bar of an event (0: no events)."""
    plant_signal: bool = True
    """Add each event's lagged jump to the returns (False: events stay visible but have no effect)."""
    lag: int = 150
    """Bars between an event and its jump (>= 100)."""
    event_size: float = 4.0
    """Jump size in units of `bar_vol`."""
    event_volume_mult: float = 10.0
    """Volume multiplier of an event candle (>= 1)."""

    def __post_init__(self) -> None:
        for name in ("n_bars", "interval_ms"):
            if getattr(self, name) < 1:
                raise ConfigError(f"SyntheticMarketConfig.{name}={getattr(self, name)} must be >= 1")
        if self.lag < 100:
            raise ConfigError(f"SyntheticMarketConfig.lag={self.lag} must be >= 100 (a long-range signal)")
        if not (self.start_price > 0 and self.bar_vol > 0 and self.base_volume > 0):
            raise ConfigError("SyntheticMarketConfig: start_price, bar_vol and base_volume must be > 0")
        if not (self.garch_alpha >= 0 and self.garch_beta >= 0 and self.garch_alpha + self.garch_beta < 1):
            raise ConfigError(f"SyntheticMarketConfig: garch_alpha={self.garch_alpha}, garch_beta={self.garch_beta} "
                              "must be >= 0 with alpha + beta < 1 (e.g. 0.08, 0.90)")
        if self.tail_df <= 2:
            raise ConfigError(f"SyntheticMarketConfig.tail_df={self.tail_df} must be > 2 (finite variance)")
        for name in ("regime_switch_prob", "range_reversion", "event_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"SyntheticMarketConfig.{name}={getattr(self, name)} must be in [0, 1]")
        if self.event_volume_mult < 1 or self.event_size < 0:
            raise ConfigError("SyntheticMarketConfig: event_volume_mult must be >= 1 and event_size >= 0")


@dataclass(frozen=True)
class SyntheticMarket:
    """A generated market and its ground truth (all arrays `[n_bars]`)."""

    config: SyntheticMarketConfig
    frame: pd.DataFrame
    """Candles: timestamp (epoch ms open time), open, high, low, close, volume, turnover."""
    markers: np.ndarray
    """int8 event marker s_t in {-1, 0, +1}."""
    regimes: np.ndarray
    """int8 regime (0 range, 1 up-trend, 2 down-trend)."""
    sigma: np.ndarray
    """GARCH conditional std of each bar's return."""
    planted: np.ndarray
    """Planted jump added to each bar's log return (0 without planting)."""

    def klines(self) -> list[Kline]:
        """The candles as `Kline`s."""
        f = self.frame
        return [Kline(int(ts), float(o), float(h), float(lo), float(c), float(v), float(tv)) for ts, o, h, lo, c, v, tv
                in zip(f["timestamp"], f["open"], f["high"], f["low"], f["close"], f["volume"], f["turnover"],
                       strict=True)]


def generate_market(config: SyntheticMarketConfig | None = None) -> SyntheticMarket:
    """Generate the market described by `config` (default `SyntheticMarketConfig()`); deterministic per seed.

    Returns:
        `SyntheticMarket` with the candle frame and the ground truth.
    """
    cfg = config or SyntheticMarketConfig()
    n = cfg.n_bars
    rng = np.random.default_rng(cfg.seed)
    # every random draw happens up front and unconditionally, so flags never shift the random stream
    shocks = rng.standard_t(cfg.tail_df, n) * np.sqrt((cfg.tail_df - 2) / cfg.tail_df)
    switches = rng.random(n) < cfg.regime_switch_prob
    new_regimes = rng.integers(0, 3, n)
    events = rng.random(n) < cfg.event_rate
    signs = np.where(rng.random(n) < 0.5, -1, 1)
    wick_up, wick_down = np.abs(rng.standard_normal(n)), np.abs(rng.standard_normal(n))
    volume_noise = rng.standard_normal(n)

    markers = np.where(events, signs, 0).astype(np.int8)
    omega = cfg.bar_vol**2 * (1 - cfg.garch_alpha - cfg.garch_beta)
    sigma = np.empty(n)
    base_returns = np.empty(n)
    regimes = np.empty(n, dtype=np.int8)
    variance, regime, log_price, anchor = cfg.bar_vol**2, RANGE, 0.0, 0.0
    for t in range(n):
        if switches[t]:
            regime = int(new_regimes[t])
            anchor = log_price
        sigma[t] = np.sqrt(variance)
        eps = 2.0 * sigma[t] * markers[t] if markers[t] else sigma[t] * shocks[t]
        drift = {RANGE: -cfg.range_reversion * (log_price - anchor), UP_TREND: cfg.trend_drift,
                 DOWN_TREND: -cfg.trend_drift}[regime]
        base_returns[t] = drift + eps
        log_price += base_returns[t]
        if markers[t]:
            anchor += eps  # the range does not revert event bodies: markers carry no short-range information
        regimes[t] = regime
        variance = omega + cfg.garch_alpha * eps**2 + cfg.garch_beta * variance

    planted = np.zeros(n)
    if cfg.plant_signal and n > cfg.lag:
        planted[cfg.lag:] = cfg.event_size * cfg.bar_vol * markers[:-cfg.lag]
    returns = base_returns + planted

    close = cfg.start_price * np.exp(np.cumsum(returns))
    open_ = np.concatenate([[cfg.start_price], close[:-1]])
    wick_scale = 0.6 * sigma * np.where(events, 0.1, 1.0)  # event candles are nearly all body
    high = np.maximum(open_, close) * np.exp(wick_up * wick_scale)
    low = np.minimum(open_, close) * np.exp(-wick_down * wick_scale)
    timestamps = cfg.start_time + cfg.interval_ms * np.arange(n, dtype=np.int64)
    hour = (timestamps // 3_600_000) % 24
    volume = (cfg.base_volume * np.exp(0.35 * volume_noise) * (1 + 0.5 * np.abs(shocks))
              * np.sqrt(sigma / cfg.bar_vol) * (1 + 0.3 * np.sin(2 * np.pi * hour / 24)))
    volume = np.where(events, volume * cfg.event_volume_mult, volume)
    frame = pd.DataFrame({
        "timestamp": timestamps, "open": open_, "high": high, "low": low, "close": close, "volume": volume,
        "turnover": volume * (open_ + high + low + close) / 4,
    })
    return SyntheticMarket(cfg, frame, markers, regimes, sigma, planted)


def synthetic_frame(config: SyntheticMarketConfig | None = None) -> pd.DataFrame:
    """The candles of `generate_market(config)` as a DataFrame (timestamp, open, high, low, close, volume, turnover)."""
    return generate_market(config).frame


def synthetic_klines(config: SyntheticMarketConfig | None = None) -> list[Kline]:
    """The candles of `generate_market(config)` as a list of `Kline`."""
    return generate_market(config).klines()


def correlated_frames(symbols: Sequence[str], config: SyntheticMarketConfig | None = None,
                      correlation: float = 0.6) -> dict[str, pd.DataFrame]:
    """Candles of several symbols whose log returns share one market factor: symbol i's close-to-close return is
    rho * r_factor + sqrt(1 - rho^2) * r_i, where r_factor is the return of the market of seed `config.seed` and
    r_i that of seed `config.seed + 1 + i` (each a `generate_market` path, so each keeps its regimes, GARCH and
    events). rho = `correlation` (in [0, 1]): two symbols' returns correlate by about rho^2 when the paths' volatilities
    match. Opens follow the previous close, and each bar keeps its own path's wick ratios and volume.

    Raises:
        ConfigError: no symbol, a symbol given twice, or a correlation outside [0, 1].
    """
    cfg = config or SyntheticMarketConfig()
    if not symbols or len(set(symbols)) != len(symbols):
        raise ConfigError(f"correlated_frames: symbols={list(symbols)} must be one or more different names")
    if not 0.0 <= correlation <= 1.0:
        raise ConfigError(f"correlated_frames: correlation={correlation} must be in [0, 1], e.g. 0.6")
    factor = np.diff(np.log(generate_market(cfg).frame["close"].to_numpy()), prepend=np.log(cfg.start_price))
    frames = {}
    for i, symbol in enumerate(symbols):
        own = generate_market(replace(cfg, seed=cfg.seed + 1 + i)).frame
        returns = np.diff(np.log(own["close"].to_numpy()), prepend=np.log(cfg.start_price))
        close = cfg.start_price * np.exp(np.cumsum(correlation * factor + np.sqrt(1 - correlation**2) * returns))
        open_ = np.concatenate([[cfg.start_price], close[:-1]])
        body_high = np.maximum(own["open"], own["close"]).to_numpy()
        body_low = np.minimum(own["open"], own["close"]).to_numpy()
        high = np.maximum(open_, close) * own["high"].to_numpy() / body_high  # the own path's upper wick ratio
        low = np.minimum(open_, close) * own["low"].to_numpy() / body_low
        volume = own["volume"].to_numpy()
        frames[symbol] = pd.DataFrame({"timestamp": own["timestamp"], "open": open_, "high": high, "low": low,
                                       "close": close, "volume": volume,
                                       "turnover": volume * (open_ + high + low + close) / 4})
    return frames

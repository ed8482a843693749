"""Day-ahead realised-volatility targets and the classical forecasts a volatility model is set beside.

Conventions: `r` is a `[n]` float array of per-bar log returns, r[i] = ln(C_i / C_{i-1}); r[0] is usually NaN
(no previous close) and every function copes with it. A forecast made at bar t (its origin) uses r[0..t] only;
`horizon` H is the forecast span in bars (24 for hourly candles: one day). All variances are in squared-log-return
units summed over H bars, the same units as the target `realized_variance`.

Forecasts:

- har: HAR-RV on log realised variance (Corsi 2009), fitted by least squares, with the log-normal mean correction.
- ewma: RiskMetrics exponential smoothing of non-overlapping H-bar realised variances.
- garch: GARCH(1,1) with Student-t innovations and zero mean, fitted with `arch` on a training prefix, then filtered
  with those fixed parameters through the whole series; the H-step summed variance forecast in closed form.
- naive: the last H bars' realised variance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError, UserInputError

__all__ = [
    "GarchTParams",
    "HarRV",
    "ewma_variance",
    "fit_garch_t",
    "garch_conditional_variance",
    "garch_forecast",
    "garch_t_variance",
    "har_regressors",
    "naive_variance",
    "realized_variance",
    "trailing_variance",
    "volatility_baselines",
]

# EWMA terms are dropped once their raw weight lam^k falls below this: with lam = 0.94 that keeps 224 blocks, and
# the mass left out, lam^224 ~ 1e-6 of the total, is far below the noise of any single realised variance.
EWMA_TRUNCATION = 1e-6
# arch fits better on percent returns (its optimiser's tolerances suit variances near 1), so fit on 100 r.
GARCH_SCALE = 100.0
# The returns that start the GARCH recursion: arch's own backcast, an EWMA(0.94) of the first 75 squared returns.
BACKCAST_BARS = 75
MIN_GARCH_TRAIN = 100


def _returns(r: object) -> np.ndarray:
    x = np.asarray(r, dtype=np.float64)
    if x.ndim != 1:
        raise UserInputError(f"returns must be a 1-D array, got shape {x.shape}")
    return x


def _positive(name: str, value: int) -> int:
    if int(value) != value or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value}")
    return int(value)


def trailing_variance(r: object, window: int) -> np.ndarray:
    """`[n]` -> `[n]`: out[t] = sum_{i=0..window-1} r[t-i]^2, NaN where that window is not whole and finite.

    O(n) through cumulative sums of the squares and of a non-finite counter (a NaN is summed as 0 and counted, so
    it voids exactly the windows that contain it instead of poisoning the whole cumulative sum). The squares are
    summed cumulatively within consecutive chunks of `window` bars, C[t] = sum of the squares from the start of t's
    chunk to t, and the window ending at t (chunk k = t // window, which starts at s = k window) is
        C[t] + (C[s - 1] - C[t - window])
    i.e. the head of its own chunk plus the tail of the previous one. A single running sum over the whole series
    would subtract two numbers as large as the series' total variance, losing digits on quiet windows.
    """
    x = _returns(r)
    w = _positive("window", window)
    n = x.size
    out = np.full(n, np.nan)
    if n < w:
        return out
    bad = ~np.isfinite(x)
    m = -(-n // w)  # chunks
    sq = np.zeros(m * w)
    sq[:n] = np.where(bad, 0.0, x * x)
    c = np.cumsum(sq.reshape(m, w), axis=1).reshape(-1)[:n]  # (n,) within-chunk cumulative sums
    t = np.arange(w, n)
    total = np.empty(n - w + 1)  # windows ending at t = w - 1 .. n - 1
    total[0] = c[w - 1]
    total[1:] = c[t] + (c[(t // w) * w - 1] - c[t - w])
    cbad = np.concatenate([[0], np.cumsum(bad)])  # (n + 1,)
    nbad = cbad[w:] - cbad[:-w]
    # Rounding in the difference can leave a tiny negative where the true sum is 0.
    out[w - 1 :] = np.where(nbad == 0, np.maximum(total, 0.0), np.nan)
    return out


def realized_variance(r: object, horizon: int) -> np.ndarray:
    """`[n]` -> `[n]`: the forward target rv[t] = sum_{i=1..H} r[t+i]^2, NaN unless r[t+1..t+H] exist and are finite."""
    x = _returns(r)
    h = _positive("horizon", horizon)
    out = np.full(x.size, np.nan)
    if x.size > h:
        out[:-h] = trailing_variance(x, h)[h:]
    return out


def naive_variance(r: object, horizon: int) -> np.ndarray:
    """`[n]` -> `[n]`: the last H bars' realised variance, trailing_variance(r, H) (random walk in variance)."""
    return trailing_variance(r, horizon)


def _safe_log(v: np.ndarray) -> np.ndarray:
    out = np.full(v.shape, np.nan)
    ok = np.isfinite(v) & (v > 0)
    out[ok] = np.log(v[ok])
    return out


def har_regressors(r: object, horizon: int) -> np.ndarray:
    """`[n]` -> `[n, 3]`: log daily, weekly and monthly realised variance at each bar, all on the H-bar scale.

    HAR-RV on logs (Corsi 2009), with "day" = H bars:
        d_t = sum_{i<H} r_{t-i}^2,   w_t = (1/7) sum_{i<7H} r_{t-i}^2,   m_t = (1/30) sum_{i<30H} r_{t-i}^2
        X_t = (ln d_t, ln w_t, ln m_t)
    A row is NaN in each column whose window is not whole, finite and positive (ln 0 is no regressor).
    """
    x = _returns(r)
    h = _positive("horizon", horizon)
    d = trailing_variance(x, h)
    w = trailing_variance(x, 7 * h) / 7.0
    m = trailing_variance(x, 30 * h) / 30.0
    return np.stack([_safe_log(d), _safe_log(w), _safe_log(m)], axis=1)  # (n, 3)


@dataclass
class HarRV:
    """HAR-RV regression on log realised variance:

        ln RV_{t+1..t+H} = b_0 + b_d ln d_t + b_w ln w_t + b_m ln m_t + e_t,   fitted by OLS

    `coef` is `[4]` (b_0, b_d, b_w, b_m); `residual_var` = sum e^2 / (n - 4), the unbiased residual variance.
    """

    coef: np.ndarray = field(default_factory=lambda: np.full(4, np.nan))
    residual_var: float = math.nan
    n_obs: int = 0

    def fit(self, x: object, log_rv: object) -> HarRV:
        """Fit on `[n, 3]` regressors and `[n]` log targets ln rv; rows with any non-finite value are skipped."""
        xa = np.asarray(x, dtype=np.float64)
        ya = np.asarray(log_rv, dtype=np.float64)
        if xa.ndim != 2 or xa.shape[1] != 3 or ya.shape != (xa.shape[0],):
            raise UserInputError(f"HarRV.fit needs x [n, 3] and log_rv [n], got {xa.shape} and {ya.shape}")
        ok = np.isfinite(xa).all(axis=1) & np.isfinite(ya)
        n = int(ok.sum())
        if n < 5:
            raise UserInputError(f"HarRV.fit needs at least 5 finite rows, got {n}")
        design = np.column_stack([np.ones(n), xa[ok]])  # (n, 4)
        coef, *_ = np.linalg.lstsq(design, ya[ok], rcond=None)
        resid = ya[ok] - design @ coef
        self.coef = coef
        self.residual_var = float(resid @ resid / (n - 4))
        self.n_obs = n
        return self

    def predict_log(self, x: object) -> np.ndarray:
        """`[n, 3]` -> `[n]`: the forecast of E[ln RV], NaN on rows with a non-finite regressor."""
        if not np.isfinite(self.coef).all():
            raise ConfigError("HarRV.predict called before fit: call fit(x, log_rv) first")
        xa = np.asarray(x, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            out = self.coef[0] + xa @ self.coef[1:]
        return np.where(np.isfinite(xa).all(axis=1), out, np.nan)

    def predict_variance(self, x: object) -> np.ndarray:
        """`[n, 3]` -> `[n]`: exp(log forecast + residual_var / 2).

        The regression forecasts the mean of ln RV; if ln RV is normal around it, E[RV] = exp(mu + s^2 / 2).
        Without the correction the forecast would sit at the median of RV, systematically below its mean.
        """
        return np.exp(self.predict_log(x) + self.residual_var / 2.0)


def ewma_variance(r: object, horizon: int, lam: float = 0.94) -> np.ndarray:
    """`[n]` -> `[n]`: RiskMetrics EWMA of the non-overlapping H-bar realised variances ending at t, t-H, t-2H, ...

        forecast_t = sum_k w_k B_{t-kH} / sum_k w_k,   w_k = (1 - lam) lam^k,   B_s = sum_{i<H} r_{s-i}^2
    over the terms k = 0..K-1 with lam^k >= 1e-6 (K = 224 for lam = 0.94) whose block B is whole and finite, so
    the weights are renormalised where the history is shorter. NaN where the latest block B_t itself is missing.
    With H = 24 on hourly bars this is daily RiskMetrics evaluated at every hour.
    """
    x = _returns(r)
    h = _positive("horizon", horizon)
    if not 0.0 < lam < 1.0:
        raise ConfigError(f"EWMA lam must be in (0, 1), got {lam}")
    n_terms = math.floor(math.log(EWMA_TRUNCATION) / math.log(lam)) + 1
    blocks = trailing_variance(x, h)  # (n,)
    n = x.size
    num = np.zeros(n)
    den = np.zeros(n)
    for k in range(n_terms):
        lag = k * h
        if lag >= n:
            break
        past = blocks[: n - lag]  # B_{t - kH} for t = lag .. n - 1
        ok = np.isfinite(past)
        wk = (1.0 - lam) * lam**k
        num[lag:] += wk * np.where(ok, past, 0.0)
        den[lag:] += wk * ok
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / den
    return np.where(np.isfinite(blocks), out, np.nan)


@dataclass(frozen=True)
class GarchTParams:
    """GARCH(1,1)-t parameters in return units (squared log returns, not percent): omega, alpha, beta, nu, and the
    backcast that starts the recursion (the variance assumed before the first return)."""

    omega: float
    alpha: float
    beta: float
    nu: float
    backcast: float


def _backcast(y: np.ndarray) -> float:
    # arch's start value: sum_k 0.94^k y_k^2 / sum_k 0.94^k over the first 75 returns.
    tau = min(BACKCAST_BARS, y.size)
    w = 0.94 ** np.arange(tau)
    return float(np.sum(y[:tau] ** 2 * w) / w.sum())


def fit_garch_t(r: object, train_end: int) -> GarchTParams:
    """Fit zero-mean GARCH(1,1) with standardised Student-t innovations on r[1..train_end] with `arch`.

        r_t = sigma_t z_t,   z_t ~ t_nu scaled to unit variance
        sigma^2_t = omega + alpha r_{t-1}^2 + beta sigma^2_{t-1}

    The fit runs on 100 r (see GARCH_SCALE), so omega is scaled back by 1e-4; alpha, beta and nu are scale-free, and
    the backcast is computed on r itself. Non-finite returns in the training span are left out of the fit (arch
    takes none).
    """
    from arch import arch_model  # heavy import (scipy, statsmodels-style tables), only needed here

    x = _returns(r)
    if not 1 <= train_end < x.size:
        raise UserInputError(f"train_end={train_end} must index a bar of the series (1..{x.size - 1})")
    y = x[1 : train_end + 1]
    y = y[np.isfinite(y)]
    if y.size < MIN_GARCH_TRAIN:
        raise UserInputError(f"GARCH needs at least {MIN_GARCH_TRAIN} finite training returns, got {y.size}")
    model = arch_model(GARCH_SCALE * y, mean="Zero", vol="GARCH", p=1, q=1, dist="t", rescale=False)
    res = model.fit(disp="off")
    p = res.params
    s2 = GARCH_SCALE**2
    return GarchTParams(omega=float(p["omega"]) / s2, alpha=float(p["alpha[1]"]), beta=float(p["beta[1]"]),
                        nu=float(p["nu"]), backcast=_backcast(y))


def garch_conditional_variance(r: object, params: GarchTParams) -> np.ndarray:
    """`[n]` -> `[n]`: s[t] = sigma^2_{t+1} = Var(r[t+1] | r[0..t]) under fixed parameters.

        s[0] = omega + (alpha + beta) backcast,   s[t] = omega + alpha r[t]^2 + beta s[t-1]   (t >= 1)
    A non-finite r[t] (t >= 1) is replaced by its expectation, r[t]^2 -> s[t-1], so a gap carries the variance
    forward with mean reversion instead of voiding the rest of the series. r[0] is never used.
    """
    x = _returns(r)
    om, al, be = params.omega, params.alpha, params.beta
    sq = (x * x).tolist()  # a plain float loop: the recursion is sequential and lists beat numpy scalar indexing
    out = [0.0] * x.size
    prev = om + (al + be) * params.backcast
    if x.size:
        out[0] = prev
    for t in range(1, x.size):
        e2 = sq[t]
        prev = om + al * (e2 if math.isfinite(e2) else prev) + be * prev
        out[t] = prev
    return np.asarray(out, dtype=np.float64)


def garch_forecast(r: object, horizon: int, params: GarchTParams) -> np.ndarray:
    """`[n]` -> `[n]`: E[sum_{k=1..H} sigma^2_{t+k} | r[0..t]] at every origin t, under fixed parameters.

    With p = alpha + beta, E sigma^2_{t+k} = omega + p E sigma^2_{t+k-1}, so
        E sigma^2_{t+k} = omega S_{k-1} + p^{k-1} sigma^2_{t+1},   S_m = sum_{j<m} p^j
        sum_{k=1..H} E sigma^2_{t+k} = omega A + B sigma^2_{t+1},   A = sum_{k=1..H} S_{k-1},  B = sum_{k=1..H} p^{k-1}
    which, for p < 1 and V = omega / (1 - p), is H V + (sigma^2_{t+1} - V)(1 - p^H)/(1 - p). The sums are formed
    term by term so an integrated fit (p = 1) needs no special case.
    """
    h = _positive("horizon", horizon)
    s_next = garch_conditional_variance(r, params)  # (n,)
    p = params.alpha + params.beta
    a = b = 0.0
    s_prev = 0.0  # S_{k-1}
    pk = 1.0  # p^{k-1}
    for _ in range(h):
        a += s_prev
        b += pk
        s_prev += pk
        pk *= p
    return params.omega * a + b * s_next


def garch_t_variance(r: object, horizon: int, train_end: int) -> np.ndarray:
    """`[n]` -> `[n]`: GARCH(1,1)-t H-bar variance forecasts, parameters fitted on r[1..train_end] only.

    Forecasts at origins t >= train_end use no return after t. Those before train_end are in-sample: they share
    parameters (and the backcast, from the first 75 training returns) with later data.
    """
    return garch_forecast(r, horizon, fit_garch_t(r, train_end))


def _rows(name: str, rows: object, n: int) -> np.ndarray:
    idx = np.asarray(rows, dtype=np.int64).reshape(-1)
    if idx.size == 0 or idx.min() < 0 or idx.max() >= n:
        raise UserInputError(f"{name} must be a non-empty array of bar indices in [0, {n - 1}]")
    return idx


def volatility_baselines(r: object, horizon: int, train_rows: object, eval_rows: object,
                         lam: float = 0.94, *, skip_unfittable: bool = False) -> dict[str, np.ndarray]:
    """Variance forecasts of the baselines at `eval_rows`, each `[len(eval_rows)]`.

    Args:
        r: `[n]` log returns.
        horizon: H in bars.
        train_rows: `[m]` forecast origins to fit on. HAR is fitted on those with finite regressors and target
            (the target of origin t spans r[t+1..t+H], so the HAR fit reads returns up to max(train_rows) + H).
            GARCH is fitted on r[1..max(train_rows)] only, which holds no target bar of an origin after it.
        eval_rows: `[e]` forecast origins to forecast at. For an out-of-sample evaluation every eval origin t
            should satisfy t >= max(train_rows) + H, so no HAR training target reaches past t; the caller keeps
            that gap (it is not enforced, so in-sample fits can be scored too).
        lam: the EWMA decay.
        skip_unfittable: leave out HAR or GARCH when the training data are too short to fit it (HAR needs 5
            rows with a month of history, GARCH `MIN_GARCH_TRAIN` returns) instead of raising `UserInputError`.

    Returns: "har" (with the log-normal correction), "har_log" (its uncorrected log forecast, the one to score
    with a loss on logs; a log, not a variance), "ewma", "garch", "naive".
    """
    x = _returns(r)
    h = _positive("horizon", horizon)
    tr = _rows("train_rows", train_rows, x.size)
    ev = _rows("eval_rows", eval_rows, x.size)
    out: dict[str, np.ndarray] = {}
    try:
        regs = har_regressors(x, h)  # (n, 3)
        har = HarRV().fit(regs[tr], _safe_log(realized_variance(x, h))[tr])
        out.update(har=har.predict_variance(regs[ev]), har_log=har.predict_log(regs[ev]))
    except UserInputError:
        if not skip_unfittable:
            raise
    out["ewma"] = ewma_variance(x, h, lam)[ev]
    try:
        out["garch"] = garch_t_variance(x, h, int(tr.max()))[ev]
    except UserInputError:
        if not skip_unfittable:
            raise
    out["naive"] = naive_variance(x, h)[ev]
    return out

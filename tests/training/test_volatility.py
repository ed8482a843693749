"""Volatility targets and baselines against explicit loops and against `arch` itself; no forecast reads the future."""

from __future__ import annotations

import math

import numpy as np
import pytest
from arch import arch_model

from reformer.errors import ConfigError, UserInputError
from reformer.training import volatility as vol


def garch_t_series(n: int, seed: int, omega: float = 2e-6, alpha: float = 0.08, beta: float = 0.9,
                   nu: float = 6.0) -> np.ndarray:
    """`[n]` GARCH(1,1)-t log returns with r[0] = NaN, as from a candle series."""
    rng = np.random.default_rng(seed)
    z = rng.standard_t(nu, size=n) / math.sqrt(nu / (nu - 2.0))
    r = np.empty(n)
    r[0] = np.nan
    s2 = omega / (1.0 - alpha - beta)
    for t in range(1, n):
        r[t] = math.sqrt(s2) * z[t]
        s2 = omega + alpha * r[t] ** 2 + beta * s2
    return r


def loop_trailing(r: np.ndarray, window: int) -> np.ndarray:
    out = np.full(r.size, np.nan)
    for t in range(window - 1, r.size):
        seg = r[t - window + 1 : t + 1]
        if np.isfinite(seg).all():
            out[t] = sum(v * v for v in seg)
    return out


def loop_realized(r: np.ndarray, h: int) -> np.ndarray:
    out = np.full(r.size, np.nan)
    for t in range(r.size - h):
        seg = r[t + 1 : t + h + 1]
        if np.isfinite(seg).all():
            out[t] = sum(v * v for v in seg)
    return out


@pytest.fixture(scope="module")
def series() -> np.ndarray:
    return garch_t_series(3000, seed=7)


def test_trailing_and_realized_match_loops() -> None:
    rng = np.random.default_rng(0)
    r = rng.normal(0.0, 0.01, 300)
    r[0] = np.nan
    r[150] = np.nan  # a gap inside the series voids exactly the windows holding it
    for w in (1, 3, 24, 299, 300, 301):
        np.testing.assert_allclose(vol.trailing_variance(r, w), loop_trailing(r, w), rtol=1e-10, equal_nan=True)
    for h in (1, 4, 24):
        np.testing.assert_allclose(vol.realized_variance(r, h), loop_realized(r, h), rtol=1e-10, equal_nan=True)
    np.testing.assert_array_equal(vol.naive_variance(r, 24), vol.trailing_variance(r, 24))
    tv = vol.trailing_variance(r, 24)
    assert np.isnan(tv[:24]).all() and np.isfinite(tv[24:150]).all() and np.isnan(tv[150:174]).all()
    with pytest.raises(ConfigError):
        vol.trailing_variance(r, 0)


def loop_har(r: np.ndarray, h: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, `[m, 4]` design (1, ln d, ln w, ln m) and `[m]` log targets of HAR-RV by explicit sums."""
    rows, xs, ys = [], [], []
    for t in range(30 * h, r.size - h):
        d = sum(r[t - i] ** 2 for i in range(h))
        w = sum(r[t - i] ** 2 for i in range(7 * h)) / 7
        m = sum(r[t - i] ** 2 for i in range(30 * h)) / 30
        target = sum(r[t + i] ** 2 for i in range(1, h + 1))
        rows.append(t)
        xs.append([1.0, math.log(d), math.log(w), math.log(m)])
        ys.append(math.log(target))
    return np.array(rows), np.array(xs), np.array(ys)


def test_har_matches_hand_built_lstsq(series: np.ndarray) -> None:
    h = 4
    r = series[:1200]
    rows, design, y = loop_har(r, h)
    regs = vol.har_regressors(r, h)
    assert np.isnan(regs[: 30 * h]).any(axis=1).all() and np.isfinite(regs[30 * h :]).all()
    np.testing.assert_allclose(regs[rows], design[:, 1:], rtol=1e-10)
    # The model is given every row; it must skip the NaN ones itself.
    model = vol.HarRV().fit(regs, np.log(vol.realized_variance(r, h)))
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    np.testing.assert_allclose(model.coef, coef, rtol=1e-8)
    resid = y - design @ coef
    assert model.n_obs == rows.size
    assert model.residual_var == pytest.approx(float(resid @ resid) / (rows.size - 4), rel=1e-8)
    log_pred = model.predict_log(regs)
    np.testing.assert_allclose(log_pred[rows], design @ coef, rtol=1e-10)
    assert np.isnan(log_pred[: 30 * h]).all()
    np.testing.assert_allclose(model.predict_variance(regs[rows]), np.exp(design @ coef + model.residual_var / 2))
    with pytest.raises(ConfigError):
        vol.HarRV().predict_log(regs)


def test_ewma_matches_hand_loop() -> None:
    h, lam = 3, 0.94
    rng = np.random.default_rng(3)
    r = rng.normal(0.0, 0.02, 5 * h + 1)  # r[0] then five whole blocks
    r[0] = np.nan
    got = vol.ewma_variance(r, h, lam)
    for t in range(r.size):
        num = den = 0.0
        k = 0
        while t - k * h - h + 1 >= 1:  # block r[s-h+1..s] with s = t - kH must avoid r[0]
            s = t - k * h
            block = sum(r[i] ** 2 for i in range(s - h + 1, s + 1))
            num += (1 - lam) * lam**k * block
            den += (1 - lam) * lam**k
            k += 1
        if den == 0.0:
            assert np.isnan(got[t]), t
        else:
            assert got[t] == pytest.approx(num / den, rel=1e-12), t
    assert np.isnan(got[:h]).all() and np.isfinite(got[h:]).all()
    # With lam -> fast decay the forecast is almost the latest block alone.
    np.testing.assert_allclose(vol.ewma_variance(r, h, 1e-9)[h:], vol.trailing_variance(r, h)[h:], rtol=1e-8)
    with pytest.raises(ConfigError):
        vol.ewma_variance(r, h, 1.0)


def test_ewma_truncates_at_documented_term_count() -> None:
    h, lam = 2, 0.94
    rng = np.random.default_rng(4)
    r = rng.normal(0.0, 0.01, 400 * h + 1)
    r[0] = np.nan
    r[1:3] *= 50  # a huge oldest block, which only an untruncated sum would still see at the last bar
    blocks = vol.trailing_variance(r, h)
    t = r.size - 1
    n_terms = math.floor(math.log(1e-6) / math.log(lam)) + 1
    assert n_terms == 224 and lam ** (n_terms - 1) >= 1e-6 > lam**n_terms

    def manual(k_max: int) -> float:
        w = np.array([lam**k for k in range(k_max)])
        b = np.array([blocks[t - k * h] for k in range(k_max)])
        return float(w @ b / w.sum())

    assert vol.ewma_variance(r, h, lam)[t] == pytest.approx(manual(224), rel=1e-12)
    assert vol.ewma_variance(r, h, lam)[t] != pytest.approx(manual(400), rel=1e-9)


def test_garch_fit_matches_arch(series: np.ndarray) -> None:
    train_end = 2000
    p = vol.fit_garch_t(series, train_end)
    direct = arch_model(100 * series[1 : train_end + 1], mean="Zero", vol="GARCH", p=1, q=1, dist="t",
                        rescale=False).fit(disp="off").params
    # The same fit reached through arch's own sample split of the full series.
    split = arch_model(100 * series[1:], mean="Zero", vol="GARCH", p=1, q=1, dist="t",
                       rescale=False).fit(last_obs=train_end, disp="off").params
    for ref in (direct, split):
        assert p.omega == pytest.approx(ref["omega"] / 1e4, rel=1e-6)
        assert p.alpha == pytest.approx(ref["alpha[1]"], rel=1e-6)
        assert p.beta == pytest.approx(ref["beta[1]"], rel=1e-6)
        assert p.nu == pytest.approx(ref["nu"], rel=1e-6)
    assert 0.0 < p.alpha + p.beta < 1.0  # the simulated process is stationary; the fit should say so
    with pytest.raises(UserInputError):
        vol.fit_garch_t(series, 50)


def test_garch_forecast_matches_arch(series: np.ndarray) -> None:
    h, train_end = 24, 2000
    p = vol.fit_garch_t(series, train_end)
    model = arch_model(100 * series[1:], mean="Zero", vol="GARCH", p=1, q=1, dist="t", rescale=False)
    fixed = model.fix([p.omega * 1e4, p.alpha, p.beta, p.nu])
    # arch's row j is y[j] = r[j + 1], so the origin at bar t is arch's row t - 1.
    s2 = vol.garch_conditional_variance(series, p)
    np.testing.assert_allclose(s2[:-1], np.asarray(fixed.conditional_volatility) ** 2 / 1e4, rtol=1e-9)
    ours = vol.garch_t_variance(series, h, train_end)
    for start in (1, 500, train_end, 2600, series.size - 1):
        fc = fixed.forecast(horizon=h, start=start - 1, reindex=False).variance
        ref = fc.sum(axis=1).to_numpy() / 1e4  # origins start .. n - 1
        np.testing.assert_allclose(ours[start:], ref, rtol=1e-6)
    # Closed form with mean reversion: H V + (s - V)(1 - p^H)/(1 - p).
    pers = p.alpha + p.beta
    v = p.omega / (1 - pers)
    np.testing.assert_allclose(ours, h * v + (s2 - v) * (1 - pers**h) / (1 - pers), rtol=1e-9)


def test_garch_gap_carries_expected_variance(series: np.ndarray) -> None:
    p = vol.GarchTParams(omega=1e-6, alpha=0.1, beta=0.85, nu=5.0, backcast=4e-5)
    r = series[:200].copy()
    r[120] = np.nan
    s = vol.garch_conditional_variance(r, p)
    assert np.isfinite(s).all()
    assert s[0] == pytest.approx(1e-6 + 0.95 * 4e-5)
    assert s[120] == pytest.approx(1e-6 + 0.95 * s[119])
    assert s[121] == pytest.approx(1e-6 + 0.1 * r[121] ** 2 + 0.85 * s[120])
    # Integrated parameters (alpha + beta = 1) have no long-run variance, yet the forecast is the plain recursion.
    q = vol.GarchTParams(omega=1e-6, alpha=0.1, beta=0.9, nu=5.0, backcast=4e-5)
    f = vol.garch_forecast(r, 3, q)
    sq = vol.garch_conditional_variance(r, q)
    np.testing.assert_allclose(f, sq + (1e-6 + sq) + (2e-6 + sq), rtol=1e-12)


def test_no_look_ahead(series: np.ndarray) -> None:
    h, t = 4, 2200
    r = series
    pert = r.copy()
    rng = np.random.default_rng(11)
    pert[t + 1 :] = rng.normal(0.0, 0.05, r.size - t - 1)  # every bar after t, at a very different volatility
    train = np.arange(0, t - h + 1)  # HAR targets end at bar t - h + h = t at the latest
    evals = np.arange(t - 30, t + 1)
    a = vol.volatility_baselines(r, h, train, evals)
    b = vol.volatility_baselines(pert, h, train, evals)
    assert set(a) == {"har", "har_log", "ewma", "garch", "naive"}
    for key in a:
        assert a[key].shape == (evals.size,) and np.isfinite(a[key]).all(), key
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    # Each bar-wise feature through bar t is untouched, whatever comes after.
    p = vol.fit_garch_t(r, t)
    for fn in (lambda x: vol.trailing_variance(x, 30 * h), lambda x: vol.har_regressors(x, h),
               lambda x: vol.ewma_variance(x, h), lambda x: vol.garch_forecast(x, h, p)):
        np.testing.assert_array_equal(fn(r)[: t + 1], fn(pert)[: t + 1])
    # The check can fail: a target, or a HAR fit whose last target reaches one bar past t, does see the change.
    assert vol.realized_variance(r, h)[t] != vol.realized_variance(pert, h)[t]
    late = np.arange(0, t - h + 2)
    assert not np.array_equal(vol.volatility_baselines(r, h, late, evals)["har"],
                              vol.volatility_baselines(pert, h, late, evals)["har"])


def test_baselines_are_the_parts(series: np.ndarray) -> None:
    h = 4
    train, evals = np.arange(0, 2000), np.arange(2004, 2990)
    out = vol.volatility_baselines(series, h, train, evals, lam=0.9)
    regs = vol.har_regressors(series, h)
    har = vol.HarRV().fit(regs[train], np.log(vol.realized_variance(series, h)[train]))
    np.testing.assert_allclose(out["har_log"], har.predict_log(regs[evals]), rtol=1e-12)
    np.testing.assert_allclose(out["har"], np.exp(out["har_log"] + har.residual_var / 2), rtol=1e-12)
    np.testing.assert_array_equal(out["ewma"], vol.ewma_variance(series, h, 0.9)[evals])
    np.testing.assert_array_equal(out["naive"], vol.trailing_variance(series, h)[evals])
    np.testing.assert_allclose(out["garch"], vol.garch_t_variance(series, h, 1999)[evals], rtol=1e-12)
    with pytest.raises(UserInputError):
        vol.volatility_baselines(series, h, train, np.array([series.size]))

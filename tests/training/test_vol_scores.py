"""Variance-forecast scores against hand values; the Diebold-Mariano test holds its size under the null."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import numpy as np
import pytest

from reformer.errors import ConfigError, UserInputError
from reformer.training.vol_scores import (
    diebold_mariano,
    hac_variance,
    mean_interval,
    mincer_zarnowitz,
    mse_log,
    qlike,
    volatility_scores,
)


def test_qlike_by_hand() -> None:
    rv = np.array([1.0, 2.0, 1.0, 3e-5])
    f = np.array([1.0, 1.0, 2.0, 3e-5])
    np.testing.assert_allclose(qlike(rv, f), [0.0, 1.0 - math.log(2.0), math.log(2.0) - 0.5, 0.0], atol=1e-15)
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0.1, 10, 1000), rng.uniform(0.1, 10, 1000)
    assert (qlike(a, b) > 0).all() and (qlike(a, a) == 0).all()
    # Under-prediction by a factor costs more than over-prediction by the same factor.
    assert qlike([1.0], [0.5])[0] > qlike([1.0], [2.0])[0]
    np.testing.assert_allclose(mse_log([math.e, 1.0], [1.0, math.e**-2]), [1.0, 4.0])
    with pytest.raises(UserInputError):
        qlike([1.0, 2.0], [1.0])


def test_mincer_zarnowitz() -> None:
    rng = np.random.default_rng(1)
    log_f = rng.normal(-9.0, 1.0, 500)
    exact = mincer_zarnowitz(0.3 + 0.8 * log_f, log_f)
    assert exact["intercept"] == pytest.approx(0.3, abs=1e-9)
    assert exact["slope"] == pytest.approx(0.8, rel=1e-12)
    assert exact["r2"] == pytest.approx(1.0, rel=1e-12)
    log_rv = 0.5 + 1.1 * log_f + rng.normal(0.0, 0.7, 500)
    noisy = mincer_zarnowitz(log_rv, log_f)
    slope, intercept = np.polyfit(log_f, log_rv, 1)
    assert noisy["slope"] == pytest.approx(slope, rel=1e-10)
    assert noisy["intercept"] == pytest.approx(intercept, rel=1e-10)
    assert noisy["r2"] == pytest.approx(np.corrcoef(log_f, log_rv)[0, 1] ** 2, rel=1e-10)
    flat = mincer_zarnowitz(log_rv, np.full(500, -9.0))
    assert math.isnan(flat["slope"]) and math.isnan(flat["r2"])


def test_hac_variance_by_hand() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=101)
    assert hac_variance(x, 0) == pytest.approx(np.var(x), rel=1e-12)
    # x = [1, 2, 6, 3, 3]: mean 3, centred [-2, -1, 3, 0, 0]
    # gamma_0 = 14/5, gamma_1 = (2 - 3)/5 = -1/5, gamma_2 = -6/5
    # LRV(2) = 14/5 + 2 (2/3)(-1/5) + 2 (1/3)(-6/5) = 26/15
    assert hac_variance([1.0, 2.0, 6.0, 3.0, 3.0], 2) == pytest.approx(26 / 15, rel=1e-12)
    # A lag past the sample is cut at n - 1: lag 4 (weights 4/5, 3/5, 2/5, 1/5) vs lag 100 (~1 each) differ, but
    # lag 100 must equal lag n - 1 with the weights of lag 100.
    c = np.array([-2.0, -1.0, 3.0, 0.0, 0.0])
    gam = [float(c[k:] @ c[: c.size - k]) / 5 for k in range(5)]
    want = gam[0] + 2 * sum((1 - k / 101) * gam[k] for k in range(1, 5))
    assert hac_variance([1.0, 2.0, 6.0, 3.0, 3.0], 100) == pytest.approx(want, rel=1e-12)
    with pytest.raises(ConfigError):
        hac_variance(x, -1)


def test_diebold_mariano_extremes() -> None:
    rng = np.random.default_rng(3)
    ref = rng.exponential(1.0, 1000)
    same = diebold_mariano(ref, ref.copy(), 5)
    assert same == {"stat": 0.0, "p_value": 1.0, "mean_diff": 0.0}
    better = diebold_mariano(ref * 0.5, ref, 5)
    assert better["stat"] < 0 and better["p_value"] < 1e-6 and better["mean_diff"] < 0
    worse = diebold_mariano(ref + rng.exponential(1.0, 1000), ref, 5)
    assert worse["stat"] > 0 and worse["p_value"] < 1e-6
    # stat and p by hand at lag 0
    d = (ref * 0.9) - ref
    stat = d.mean() / math.sqrt(np.var(d) / d.size)
    got = diebold_mariano(ref * 0.9, ref, 0)
    assert got["stat"] == pytest.approx(stat, rel=1e-12)
    assert got["p_value"] == pytest.approx(math.erfc(abs(stat) / math.sqrt(2)), rel=1e-12)


Pair = Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]]


def rejection_rate(make_losses: Pair, lag: int, reps: int = 200) -> float:
    """Share of `reps` simulated loss pairs of equal expected loss where DM rejects at 5%."""
    rng = np.random.default_rng(12345)
    hits = 0
    for _ in range(reps):
        a, b = make_losses(rng)
        hits += diebold_mariano(a, b, lag)["p_value"] < 0.05
    return hits / reps


def test_diebold_mariano_size_under_null() -> None:
    n = 2000

    def iid(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return rng.exponential(1.0, n), rng.exponential(1.0, n)

    assert 0.02 <= rejection_rate(iid, 0) <= 0.09
    assert 0.02 <= rejection_rate(iid, 23) <= 0.09

    def overlapping(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        # Losses of overlapping 24-bar targets: moving sums of iid noise, strongly autocorrelated.
        e = rng.exponential(1.0, (2, n + 23))
        k = np.ones(24)
        return np.convolve(e[0], k, "valid"), np.convolve(e[1], k, "valid")

    # Ignoring the overlap (lag 0) rejects a true null far too often (~68%). Bartlett weights at lag H - 1 recover
    # most of the long-run variance but not all of it (~11% size in 1,000 replications), a lag of 2H - 1 more (~8%).
    assert rejection_rate(overlapping, 0) > 0.4
    assert rejection_rate(overlapping, 23) < 0.2
    assert rejection_rate(overlapping, 47) <= 0.12


def test_mean_interval() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(2.0, 1.0, 400)
    lo, hi = mean_interval(x, 0)
    half = 1.959963984540054 * math.sqrt(np.var(x) / x.size)
    assert lo == pytest.approx(x.mean() - half, rel=1e-9) and hi == pytest.approx(x.mean() + half, rel=1e-9)
    lo90, hi90 = mean_interval(x, 0, 0.90)
    assert lo < lo90 < hi90 < hi
    with pytest.raises(ConfigError):
        mean_interval(x, 0, 1.0)


def test_volatility_scores_drop_rows_consistently() -> None:
    rng = np.random.default_rng(5)
    n = 600
    rv = rng.lognormal(-9.0, 0.8, n)
    good = rv * rng.lognormal(0.0, 0.3, n)
    bad = rv * rng.lognormal(0.5, 1.0, n)
    flat = np.full(n, float(np.mean(rv)))
    rv[3] = np.nan
    good[10] = np.inf
    bad[20] = 0.0
    out = volatility_scores(rv, {"har": good, "garch": bad, "naive": flat}, lag=23)
    json.dumps(out, allow_nan=False)  # strict JSON
    keep = np.ones(n, bool)
    keep[[3, 10, 20]] = False
    assert out["n"] == n - 3 and out["n_dropped"] == 3 and out["reference"] == "har" and out["lag"] == 23
    fc = out["forecasts"]
    assert set(fc) == {"har", "garch", "naive"} and "dm_qlike" not in fc["har"]
    for name, f in (("har", good), ("garch", bad), ("naive", flat)):
        loss = qlike(rv[keep], f[keep])
        assert fc[name]["qlike"] == pytest.approx(loss.mean(), rel=1e-12)
        lo, hi = mean_interval(loss, 23)
        assert (fc[name]["qlike_lo"], fc[name]["qlike_hi"]) == pytest.approx((lo, hi), rel=1e-12)
        assert fc[name]["mse_log"] == pytest.approx(mse_log(rv[keep], f[keep]).mean(), rel=1e-12)
    assert fc["naive"]["mz"]["slope"] is None  # a constant forecast has no MZ slope (NaN -> None)
    assert fc["har"]["mz"]["slope"] == pytest.approx(mincer_zarnowitz(np.log(rv[keep]), np.log(good[keep]))["slope"])
    dm = fc["garch"]["dm_qlike"]
    assert dm["stat"] > 0 and dm["p_value"] < 1e-6  # the noisy, biased forecast loses to the reference
    assert dm == pytest.approx(diebold_mariano(qlike(rv[keep], bad[keep]), qlike(rv[keep], good[keep]), 23))


def test_volatility_scores_rejects_bad_input() -> None:
    rv = np.full(10, 1e-4)
    with pytest.raises(UserInputError, match="reference"):
        volatility_scores(rv, {"garch": rv}, lag=3)
    with pytest.raises(UserInputError, match="log"):
        volatility_scores(rv, {"har": rv, "har_log": np.log(rv)}, lag=3)
    with pytest.raises(UserInputError):
        volatility_scores(rv, {"har": rv[:5]}, lag=3)
    with pytest.raises(UserInputError):
        volatility_scores(np.full(10, np.nan), {"har": rv}, lag=3)

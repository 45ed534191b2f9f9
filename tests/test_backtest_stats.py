"""Backtest statistics against published tables and independent computations."""

import itertools
import math

import numpy as np
import pytest
from scipy import optimize, stats

from perpjax.backtest import (
    brier_score,
    christoffersen_independence,
    coverage_test,
    kupiec_pof,
    poisson_binomial_pmf,
    reliability_table,
    traffic_light,
)


def _hits(x, n):
    return np.r_[np.ones(x), np.zeros(n - x)]


# Kupiec (1995) non-rejection regions at 5 % as tabulated in Jorion, "Value at Risk" (Table 6-3):
# (p, T) -> (lowest, highest) accepted number of exceptions.
KUPIEC_TABLE = {(0.01, 510): (2, 10), (0.01, 1000): (5, 16), (0.025, 255): (3, 11), (0.025, 510): (7, 20),
                (0.025, 1000): (16, 35), (0.05, 255): (7, 20), (0.05, 510): (17, 35), (0.05, 1000): (38, 64)}


@pytest.mark.parametrize("key", list(KUPIEC_TABLE))
def test_kupiec_non_rejection_regions_match_the_published_table(key):
    p, n = key
    accepted = [x for x in range(n // 4) if kupiec_pof(_hits(x, n), p)["p_value"] > 0.05]
    assert (accepted[0], accepted[-1]) == KUPIEC_TABLE[key]
    assert accepted == list(range(accepted[0], accepted[-1] + 1))
    # the upper end of the 1 %, 255-day row too (published as N < 7)
    assert max(x for x in range(40) if kupiec_pof(_hits(x, 255), 0.01)["p_value"] > 0.05) == 6


def test_basel_traffic_light_table():
    """Basel Committee (1996), Table 2: 250 days at 99 %: cumulative probabilities and zones."""
    published = [8.11, 28.58, 54.32, 75.81, 89.22, 95.88, 98.63, 99.60, 99.89, 99.97, 99.99]
    for k, cum in enumerate(published):
        t = traffic_light(k)
        assert round(100 * t["cumulative_probability"], 2) == cum
        assert t["zone"] == ("green" if k <= 4 else "yellow" if k <= 9 else "red")
    with pytest.raises(ValueError, match="exceptions"):
        traffic_light(-1)


def test_poisson_binomial_is_exact():
    p = np.array([0.1, 0.5, 0.02, 0.7, 0.33])
    brute = np.zeros(6)
    for bits in itertools.product([0, 1], repeat=5):
        b = np.array(bits)
        brute[b.sum()] += np.prod(np.where(b == 1, p, 1 - p))
    np.testing.assert_allclose(poisson_binomial_pmf(p), brute, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(poisson_binomial_pmf(np.full(40, 0.03)), stats.binom.pmf(np.arange(41), 40, 0.03),
                               rtol=1e-10, atol=1e-15)


def test_coverage_test_equals_the_exact_binomial_test_at_constant_p():
    for x in (0, 2, 5, 9):
        got = coverage_test(_hits(x, 250), 0.01)["p_value"]
        assert got == pytest.approx(stats.binomtest(x, 250, 0.01).pvalue, rel=1e-6)
    r = coverage_test(_hits(3, 4), [0.9, 0.8, 0.5, 0.1])
    assert r["expected"] == pytest.approx(2.3) and r["p_at_least"] <= 1


def test_christoffersen_matches_a_numerical_likelihood_maximisation():
    rng = np.random.default_rng(3)
    h = np.zeros(1000, int)
    for t in range(1, 1000):  # clustered hits: a Markov chain with pi01 = 0.03, pi11 = 0.4
        h[t] = rng.random() < (0.4 if h[t - 1] else 0.03)
    r = christoffersen_independence(h)
    prev, cur = h[:-1], h[1:]

    def nll(theta):  # transition likelihood with free pi01, pi11 (logit scale)
        p0, p1 = 1 / (1 + np.exp(-theta))
        q = np.where(prev == 1, p1, p0)
        return -np.sum(np.where(cur == 1, np.log(q), np.log1p(-q)))

    best = optimize.minimize(nll, np.zeros(2), method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12})
    pi = cur.mean()
    l0 = np.sum(np.where(cur == 1, math.log(pi), math.log1p(-pi)))
    assert r["lr"] == pytest.approx(2 * (-best.fun - l0), rel=1e-6)
    assert r["p_value"] < 0.01  # clustering is detected
    assert christoffersen_independence(np.zeros(10))["p_value"] == 1.0


def test_independence_test_has_its_size_on_iid_hits():
    """On iid Bernoulli(0.05) series the 5 % test rejects 5 % of the time (within 3 binomial SE)."""
    rng = np.random.default_rng(11)
    n_series = 2000
    rejections = sum(christoffersen_independence(rng.random(500) < 0.05)["p_value"] < 0.05
                     for _ in range(n_series))
    se = math.sqrt(0.05 * 0.95 / n_series)
    assert abs(rejections / n_series - 0.05) < 3 * se + 0.01  # chi2(1) is asymptotic: allow its known ~1 % bias


def test_brier_and_reliability():
    p = np.array([0.0, 0.0, 0.5, 0.5, 1.0])
    y = np.array([0, 1, 1, 0, 1])
    assert brier_score(p, y) == pytest.approx((0 + 1 + 0.25 + 0.25 + 0) / 5)
    rows = reliability_table(p, y, edges=(0, 0.25, 0.75, 1.0))
    assert [r["n"] for r in rows] == [2, 2, 1]
    assert [r["realised"] for r in rows] == [0.5, 0.5, 1.0]
    assert all(r["realised_lo95"] <= r["realised"] <= r["realised_hi95"] for r in rows)

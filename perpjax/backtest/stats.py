"""Forecast-validation statistics, as CCPs and banks backtest margin and VaR models (DOMAIN.md §7b).

Every test takes a 0/1 series of *hits* (a liquidation happened; a loss exceeded the VaR) and the
forecast probability of each hit, made with data up to its origin only.

- Kupiec (1995) proportion of failures: x hits in n windows at a constant p,
  ``LR = -2 ln[(1-p)^(n-x) p^x] + 2 ln[(1-x/n)^(n-x) (x/n)^x] ~ chi2(1)``.
- With a different p_i per window the count is Poisson-binomial: its exact two-sided p-value
  (the probability of a count no more likely than the observed one, as in an exact binomial test).
- Christoffersen (1998) independence: a first-order Markov chain of hits against independence,
  ``LR ~ chi2(1)``; clustered hits mean the forecast ignores the state.
- The Basel Committee's (1996) traffic light for 99 % VaR over 250 days: 0-4 exceptions green, 5-9
  yellow, 10 or more red; for other sample sizes the zones are the same cumulative binomial
  probabilities (green below 95 %, red from 99.99 %).
- Brier score and a reliability table (forecasts bucketed, realised frequency with a Wilson interval).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from ..metrics import wilson


def _xlogy(x, y):
    return 0.0 if x == 0 else x * math.log(y)


def kupiec_pof(hits, p: float) -> dict:
    """Kupiec's proportion-of-failures likelihood ratio for a constant forecast probability ``p``."""
    h = np.asarray(hits, bool)
    n, x = h.size, int(h.sum())
    if n == 0:
        raise ValueError("hits: need at least one window")
    if not 0 < p < 1:
        raise ValueError(f"p: must lie in (0, 1) (got {p})")
    lr = -2 * (_xlogy(n - x, 1 - p) + _xlogy(x, p)) + 2 * (_xlogy(n - x, 1 - x / n) + _xlogy(x, x / n))
    lr = max(lr, 0.0)
    return {"n": n, "hits": x, "expected": n * p, "lr": lr, "p_value": float(stats.chi2.sf(lr, 1))}


def poisson_binomial_pmf(p) -> np.ndarray:
    """P(count = k), k = 0..n, for independent Bernoulli(p_i): exact, by convolution (O(n^2))."""
    pmf = np.ones(1)
    for q in np.asarray(p, np.float64):
        pmf = np.concatenate([pmf * (1 - q), [0.0]]) + np.concatenate([[0.0], pmf * q])
    return pmf


def coverage_test(hits, p) -> dict:
    """Exact test of the hit count against per-window forecasts ``p`` (Poisson-binomial).

    Two-sided p-value: the total probability of counts no more likely than the observed one
    (with a relative tolerance of 1e-7 for ties). With a constant p this is the exact binomial
    test; ``kupiec_pof`` gives the likelihood-ratio version.
    """
    h = np.asarray(hits, bool)
    p = np.broadcast_to(np.asarray(p, np.float64), h.shape)
    if h.size == 0:
        raise ValueError("hits: need at least one window")
    if np.any((p < 0) | (p > 1)) or not np.all(np.isfinite(p)):
        raise ValueError("p: forecast probabilities must lie in [0, 1]")
    pmf = poisson_binomial_pmf(p)
    x = int(h.sum())
    pv = float(min(1.0, pmf[pmf <= pmf[x] * (1 + 1e-7)].sum()))
    mean, var = float(p.sum()), float((p * (1 - p)).sum())
    return {"n": int(h.size), "hits": x, "expected": mean, "sd": math.sqrt(var), "p_value": pv,
            "p_at_most": float(pmf[: x + 1].sum()), "p_at_least": float(pmf[x:].sum())}


def christoffersen_independence(hits) -> dict:
    """Christoffersen's test of first-order independence of the hit sequence.

    ``LR = -2 ln L(pi) + 2 ln L(pi01, pi11)`` with pi01 = P(hit | no hit before), pi11 = P(hit | hit
    before), both estimated from the transition counts; undefined (p-value 1) without any hit or
    without any non-hit after the first window.
    """
    h = np.asarray(hits, bool).astype(int)
    if h.size < 2:
        raise ValueError("hits: need at least two windows")
    prev, cur = h[:-1], h[1:]
    n00 = int(np.sum((prev == 0) & (cur == 0)))
    n01 = int(np.sum((prev == 0) & (cur == 1)))
    n10 = int(np.sum((prev == 1) & (cur == 0)))
    n11 = int(np.sum((prev == 1) & (cur == 1)))
    counts = {"n00": n00, "n01": n01, "n10": n10, "n11": n11}
    if n01 + n11 == 0 or n00 + n10 == 0:
        return {**counts, "lr": 0.0, "p_value": 1.0}
    pi = (n01 + n11) / (n00 + n01 + n10 + n11)
    pi0 = n01 / (n00 + n01) if n00 + n01 else 0.0
    pi1 = n11 / (n10 + n11) if n10 + n11 else 0.0
    l0 = _xlogy(n00 + n10, 1 - pi) + _xlogy(n01 + n11, pi)
    l1 = _xlogy(n00, 1 - pi0) + _xlogy(n01, pi0) + _xlogy(n10, 1 - pi1) + _xlogy(n11, pi1)
    lr = max(-2 * (l0 - l1), 0.0)
    return {**counts, "pi01": pi0, "pi11": pi1, "lr": lr, "p_value": float(stats.chi2.sf(lr, 1))}


def traffic_light(exceptions: int, n: int = 250, p: float = 0.01) -> dict:
    """Basel traffic-light zone of ``exceptions`` in ``n`` days for a VaR at coverage ``1 - p``.

    The zone is set by the cumulative binomial probability of at most that many exceptions:
    green below 95 %, yellow from 95 % to below 99.99 %, red from 99.99 % (Basel Committee on
    Banking Supervision, 1996, Table 2: for n = 250, p = 1 %: green 0-4, yellow 5-9, red 10+).
    """
    if exceptions < 0 or n < 1:
        raise ValueError(f"exceptions, n: need 0 <= exceptions and n >= 1 (got {exceptions}, {n})")
    cum = float(stats.binom.cdf(exceptions, n, p))
    # the Basel table rounds the cumulative probability to 4 decimals (10 in 250: 99.99 %, red)
    zone = "green" if round(cum, 4) < 0.95 else ("yellow" if round(cum, 4) < 0.9999 else "red")
    return {"exceptions": int(exceptions), "n": int(n), "cumulative_probability": cum, "zone": zone}


def brier_score(p, y) -> float:
    """Mean squared difference between forecast probabilities and 0/1 outcomes."""
    p, y = np.asarray(p, np.float64), np.asarray(y, np.float64)
    return float(np.mean((p - y) ** 2))


def reliability_table(p, y, edges=(0, 0.001, 0.01, 0.05, 0.1, 0.2, 0.4, 1.0)):
    """Forecasts bucketed by predicted probability: count, mean predicted, realised frequency and its
    95 % Wilson interval, per bucket (list of dicts; empty buckets left out)."""
    p, y = np.asarray(p, np.float64), np.asarray(y, bool)
    edges = np.asarray(edges, np.float64)
    b = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, len(edges) - 2)
    rows = []
    for i in range(len(edges) - 1):
        m = b == i
        n = int(m.sum())
        if n == 0:
            continue
        k = int(y[m].sum())
        lo, hi = wilson(k, n)
        rows.append({"bucket_lo": float(edges[i]), "bucket_hi": float(edges[i + 1]), "n": n,
                     "mean_predicted": float(p[m].mean()), "realised": k / n, "realised_lo95": float(lo),
                     "realised_hi95": float(hi)})
    return rows

"""Monte Carlo results against closed forms nobody here wrote (DOMAIN.md §7).

Every assertion is in standard errors at a fixed seed (4 SE: a false alarm
rate of 6e-5 per assertion when the engine is right).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from perpjax import random as R
from perpjax.engine import simulate
from perpjax.metrics import var_es

from .helpers import build, single_position_config

K_SE = 4.0
BGK_BETA = 0.5825971579390106  # -zeta(1/2)/sqrt(2 pi)


def first_passage(b, mu, sigma, T):
    """P(min_{t<=T} (mu t + sigma W_t) <= b), b < 0 (reflection principle)."""
    s = sigma * math.sqrt(T)
    return stats.norm.cdf((b - mu * T) / s) + math.exp(2 * mu * b / sigma**2) * stats.norm.cdf((b + mu * T) / s)


def _barrier_case(**kw):
    cfg = single_position_config(vol=0.8, drift=0.1, leverage=20.0, mmr=0.01, step_seconds=900.0, **kw)
    model, _, c = build(cfg)
    lp = (100.0 - 5.0) / (1.0 - 0.01)  # equity(P) = 5 + (P - 100) = MM(P) = 0.01 P
    b = math.log(lp / 100.0)
    mu = 0.1 - 0.5 * 0.8**2
    T = 1.0 / 365.0
    return model, b, mu, T


def _p_liq(model, n=200_000, seed=11):
    out = simulate(model, seed=seed, n_paths=n, chunk_size=50_000)
    p = out.liq_count[0] / n
    return p, math.sqrt(p * (1 - p) / n)


def test_first_passage_continuous_with_bridge():
    model, b, mu, T = _barrier_case(bridge=True)
    p, se = _p_liq(model)
    ref = first_passage(b, mu, 0.8, T)
    assert abs(p - ref) < K_SE * se, (p, ref, se)


def test_discrete_monitoring_matches_bgk_and_not_continuous():
    model, b, mu, T = _barrier_case(bridge=False)
    p, se = _p_liq(model)
    dt = 900.0 / (365 * 86400)
    bgk = first_passage(b - BGK_BETA * 0.8 * math.sqrt(dt), mu, 0.8, T)
    cont = first_passage(b, mu, 0.8, T)
    assert abs(p - bgk) < K_SE * se, (p, bgk, se)
    assert cont - p > 10 * se  # the monitoring effect is real and resolved


def _portfolio_returns(model, n, seed):
    out = simulate(model, seed=seed, n_paths=n, chunk_size=n)
    return out.path_log_return


FOUR = {
    "assets": [{"name": n, "price": p, "vol": v, "drift": d, "depth_usd": 1e9}
               for n, p, v, d in (("A", 100.0, 0.6, 0.05), ("B", 10.0, 0.8, 0.0), ("C", 1.0, 1.0, -0.1),
                                  ("D", 5.0, 0.5, 0.0))],
    "correlation": [[1.0, 0.8, 0.6, 0.3], [0.8, 1.0, 0.5, 0.2], [0.6, 0.5, 1.0, 0.4], [0.3, 0.2, 0.4, 1.0]],
}


def _four_asset_cfg(step, horizon, innovations):
    cfg = single_position_config(step_seconds=step, horizon_seconds=horizon)
    cfg.update(FOUR)
    cfg["innovations"] = innovations
    cfg["ladders"] = {n: [{"floor": 0, "mmr": 0.01, "imr": 0.02}] for n in "ABCD"}
    cfg["book"] = {"accounts": [{"id": "a", "collateral": 1e9,
                                 "positions": [{"asset": "A", "size": 1.0, "entry": 100.0}]}]}
    return cfg


W = np.array([1.0, -0.5, 2.0, 0.7])


def _portfolio_loss_moments():
    """Mean and standard deviation of the 1-day Gaussian log-return loss of portfolio W."""
    vol = np.array([a["vol"] for a in FOUR["assets"]])
    drift = np.array([a["drift"] for a in FOUR["assets"]])
    cov = np.array(FOUR["correlation"]) * np.outer(vol, vol)
    T = 1 / 365
    return -W @ (drift - 0.5 * vol**2) * T, math.sqrt(W @ cov @ W * T)


def test_gaussian_portfolio_expected_shortfall():
    """ES of a linear portfolio of correlated log returns (exactly Gaussian) vs the closed form."""
    cfg = _four_asset_cfg(3600.0, 86400.0, {"kind": "gaussian"})
    model, _, _ = build(cfg)
    r = _portfolio_returns(model, 100_000, 3)
    loss = -(r @ W)
    mu_l, sd_l = _portfolio_loss_moments()
    for alpha in (0.95, 0.99):
        z = stats.norm.ppf(alpha)
        es_ref = mu_l + sd_l * stats.norm.pdf(z) / (1 - alpha)
        _, es, _, es_se = var_es(loss, alpha)
        assert abs(es - es_ref) < K_SE * es_se, (alpha, es, es_ref, es_se)


@pytest.mark.parametrize("nu", [5.0, 4.5])
def test_student_t_portfolio_expected_shortfall(nu):
    """One step of multivariate-t innovations: a linear portfolio is a scaled t; closed-form ES."""
    cfg = _four_asset_cfg(86400.0, 86400.0, {"kind": "student_t", "nu": nu})
    model, _, _ = build(cfg)
    r = _portfolio_returns(model, 200_000, 5)
    loss = -(r @ W)
    mu_l, sd_l = _portfolio_loss_moments()
    scale = sd_l * math.sqrt((nu - 2) / nu)
    alpha = 0.99
    q = stats.t.ppf(alpha, nu)
    es_std = stats.t.pdf(q, nu) / (1 - alpha) * (nu + q * q) / (nu - 1)
    es_ref = mu_l + scale * es_std
    _, es, _, es_se = var_es(loss, alpha)
    assert abs(es - es_ref) < K_SE * es_se, (es, es_ref, es_se)


def _innovations(model, n, t=1):
    keys = R.path_key(R.seed_key(9), jnp.arange(n, dtype=jnp.uint32))
    return np.asarray(jax.jit(jax.vmap(lambda k: model.prices.innovation(k, t)))(keys))


@pytest.mark.parametrize("nu", [4.0, 4.5, 7.0])
def test_student_t_innovations_variance_and_tails(nu):
    cfg = _four_asset_cfg(60.0, 60.0, {"kind": "student_t", "nu": nu})
    cfg["correlation"] = np.eye(4).tolist()
    model, _, _ = build(cfg)
    n = 200_000
    z = _innovations(model, n)[:, 0]
    # KS against t_nu scaled to unit variance.
    ks = stats.kstest(z * math.sqrt(nu / (nu - 2)), stats.t(nu).cdf)
    assert ks.pvalue > 1e-3, ks
    # Variance 1: compare with the sample-variance SE (kurtosis-aware), on a t with finite 4th moment.
    if nu > 4.2:
        se = math.sqrt((np.mean(z**4) - 1) / n)
        assert abs(np.var(z) - 1.0) < K_SE * se
    # Tail: P(|z| > 4) vs the t tail (binomial SE).
    p_ref = 2 * stats.t.sf(4 * math.sqrt(nu / (nu - 2)), nu)
    p = np.mean(np.abs(z) > 4)
    assert abs(p - p_ref) < K_SE * math.sqrt(p_ref * (1 - p_ref) / n)


def test_gaussian_innovations_ks():
    cfg = _four_asset_cfg(60.0, 60.0, {"kind": "gaussian"})
    cfg["correlation"] = np.eye(4).tolist()
    model, _, _ = build(cfg)
    z = _innovations(model, 100_000, t=17)
    for a in range(4):
        assert stats.kstest(z[:, a], "norm").pvalue > 1e-3


def test_sample_correlation_matches_config():
    cfg = _four_asset_cfg(3600.0, 3600.0, {"kind": "gaussian"})
    model, _, _ = build(cfg)
    n = 100_000
    r = _portfolio_returns(model, n, 4)
    c = np.corrcoef(r.T)
    ref = np.array(FOUR["correlation"])
    se = (1 - ref**2) / math.sqrt(n)
    off = ~np.eye(4, dtype=bool)
    assert np.all(np.abs(c - ref)[off] < K_SE * se[off] + 1e-12), (c, ref)


def test_jump_compensation_keeps_expected_return():
    """E[S_T / S_0] = exp(drift T) with Merton jumps, since the drift is compensated."""
    cfg = _four_asset_cfg(3600.0, 86400.0, {"kind": "gaussian"})
    cfg["jumps"] = {"intensity_per_year": 2000.0, "mean": -0.02, "std": 0.03}
    model, _, _ = build(cfg)
    n = 100_000
    g = np.exp(_portfolio_returns(model, n, 8))
    drift = np.array([a["drift"] for a in FOUR["assets"]])
    ref = np.exp(drift / 365)
    se = g.std(0) / math.sqrt(n)
    assert np.all(np.abs(g.mean(0) - ref) < K_SE * se), (g.mean(0), ref, se)
    # The jumps are there: the log returns are negatively skewed.
    assert stats.skew(np.log(g[:, 0])) < -0.1

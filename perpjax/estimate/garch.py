"""Variance-targeting GARCH(1,1): Gaussian quasi-maximum likelihood with sandwich standard errors, and a
simulator of the GARCH(1,1)-t process (used for the jump detector's false-flag rate and in the tests).

* **GARCH(1,1)** (``fit_garch``): Gaussian quasi-maximum likelihood in variance-targeting form,
  ``omega = (1 - alpha - beta) * var`` with ``var`` fixed at the sample variance (two-step),
  ``h_0 = var``. ``(alpha, beta) = p * (s, 1 - s)`` with ``p, s`` logistic functions of
  unconstrained parameters, so ``alpha, beta >= 0`` and ``alpha + beta < 1`` hold by
  construction; minimised with L-BFGS-B from several starts. Standard errors: the
  Bollerslev-Wooldridge sandwich ``H^-1 J H^-1`` from a central-difference Hessian and
  per-bar scores (``robust=False``: ``H^-1`` alone, valid only for Gaussian innovations).
  Jump bars are left out of the likelihood and enter the recursion as an average shock
  (``r^2 = var``).

Known limits:

* GARCH is a Gaussian QMLE: consistent under fat-tailed innovations, but less efficient than a
  t likelihood; ``var`` is estimated first and its sampling error is not in the SEs. Persistence
  close to 1 (typical for crypto) puts the estimate near the boundary, where SEs are unreliable.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy import optimize, signal, special

# Nelder-Mead stop: the fitted (alpha, beta) are determined to this step in the optimiser's logit
# coordinates (|d alpha / d u| <= 1/4), so two builds agree on them to ~XATOL, not to rounding.
XATOL = 1e-8


class GarchFit(NamedTuple):
    """Variance-targeting GARCH(1,1) fit; ``alpha, beta`` at the data frequency."""

    alpha: float
    beta: float
    alpha_se: float
    beta_se: float
    var: float  # unconditional (target) variance per bar
    loglik: float  # Gaussian log-likelihood at the optimum
    conditional_var: np.ndarray  # (n,) h_t, the variance of r_t given the past


def _garch_h(x2_prev, alpha, beta, var):
    """h_t = omega + alpha x2_prev_t + beta h_{t-1}, with h_{-1} = var (so h_0 = var when x2_prev_0 = var)."""
    omega = (1.0 - alpha - beta) * var
    return signal.lfilter([1.0], [1.0, -beta], omega + alpha * x2_prev, zi=[beta * var])[0]


def _garch_terms(theta, x2_prev, x2, use, var):
    """Per-bar negative log-likelihood (without the 2 pi constant) at theta = (alpha, beta)."""
    h = _garch_h(x2_prev, theta[0], theta[1], var)
    if not np.all(h > 0):
        return np.full(int(use.sum()), np.nan)
    return 0.5 * (np.log(h[use]) + x2[use] / h[use])


def _alpha_beta(u):
    p, s = special.expit(u[0]), special.expit(u[1])
    return p * s, p * (1.0 - s)


def _hessian(f, x, h):
    """Central-difference Hessian of scalar f at x with steps h."""
    k = len(x)
    H = np.empty((k, k))
    for i in range(k):
        for j in range(i, k):
            ei, ej = np.eye(k)[i] * h[i], np.eye(k)[j] * h[j]
            if i == j:
                H[i, i] = (f(x + ei) - 2 * f(x) + f(x - ei)) / h[i] ** 2
            else:
                H[i, j] = H[j, i] = (f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)) / (
                    4 * h[i] * h[j])
    return H


def _standard_errors(theta, x2_prev, x2, use, var, robust: bool) -> tuple[float, float]:
    """SEs of ``theta = (alpha, beta)``: the sandwich ``H^-1 J H^-1`` (``robust``) or ``H^-1``, with ``H`` the
    central-difference Hessian of the negative log-likelihood and ``J`` the outer product of the per-bar
    scores; NaN where ``H`` is not positive definite."""

    def nll(t):
        return float(_garch_terms(t, x2_prev, x2, use, var).sum())

    steps = np.array([1e-4, 1e-4])
    alpha_se = beta_se = math.nan
    H = _hessian(nll, theta, steps)
    if np.all(np.isfinite(H)) and np.all(np.linalg.eigvalsh(H) > 0):
        Hinv = np.linalg.inv(H)
        cov = Hinv
        if robust:
            scores = np.empty((int(use.sum()), 2))
            for i in range(2):
                e = np.eye(2)[i] * steps[i]
                scores[:, i] = (_garch_terms(theta + e, x2_prev, x2, use, var)
                                - _garch_terms(theta - e, x2_prev, x2, use, var)) / (2 * steps[i])
            cov = Hinv @ (scores.T @ scores) @ Hinv
        if np.all(np.isfinite(cov)) and cov[0, 0] > 0 and cov[1, 1] > 0:
            alpha_se, beta_se = float(np.sqrt(cov[0, 0])), float(np.sqrt(cov[1, 1]))
    return alpha_se, beta_se


def fit_garch(r, *, var=None, exclude=None, robust=True) -> GarchFit:
    """Variance-targeting Gaussian QMLE of a GARCH(1,1) on one return series.

    ``h_t = (1 - alpha - beta) var + alpha x_{t-1}^2 + beta h_{t-1}``, ``h_0 = var``, with
    ``x = r - mean(r)``. ``alpha, beta`` maximise ``-1/2 sum(log 2pi + log h_t + x_t^2 / h_t)``
    under ``alpha, beta >= 0, alpha + beta < 1``, through ``(alpha, beta) = p (s, 1 - s)``,
    ``p = expit(u), s = expit(v)`` (L-BFGS-B over ``u, v`` from several starts).

    Args:
        r: (n,) returns of one asset at the bar frequency.
        var: target (unconditional) variance; default the sample variance of the used bars.
        exclude: optional (n,) bool; excluded bars (jumps) are left out of the mean, variance and
            likelihood, and enter the recursion as an average shock (``x^2 = var``).
        robust: sandwich (QMLE) standard errors; False gives the inverse Hessian, which
            understates them under fat-tailed innovations.

    Returns:
        GarchFit. SEs are NaN where the Hessian is not positive definite (optimum on the boundary).
    """
    r = np.asarray(r, np.float64)
    if r.ndim != 1 or len(r) < 50:
        raise ValueError(f"r: need a 1-d series of at least 50 returns (got shape {r.shape})")
    if not np.all(np.isfinite(r)):
        raise ValueError("r: returns must be finite")
    use = np.ones(len(r), bool) if exclude is None else ~np.asarray(exclude, bool)
    if use.shape != r.shape:
        raise ValueError(f"exclude: shape {use.shape} does not match r {r.shape}")
    x = r - r[use].mean()
    if var is None:
        var = float(np.mean(x[use] ** 2))
    var = float(var)
    if not var > 0:
        raise ValueError(f"var: must be > 0 (got {var})")
    x2 = np.where(use, x * x, var)
    x2_prev = np.concatenate([[var], x2[:-1]])
    n_use = int(use.sum())

    def nll_u(u):
        v = _garch_terms(_alpha_beta(u), x2_prev, x2, use, var).sum() / n_use
        return v if np.isfinite(v) else 1e10

    best = None
    for p0, s0 in ((0.95, 0.1), (0.99, 0.05), (0.8, 0.2), (0.995, 0.02), (0.5, 0.5)):
        u0 = np.array([special.logit(p0), special.logit(s0)])
        res = optimize.minimize(nll_u, u0, method="L-BFGS-B")
        if best is None or res.fun < best.fun:
            best = res
    res = optimize.minimize(nll_u, best.x, method="Nelder-Mead", options={"xatol": XATOL, "fatol": 1e-12})
    if res.fun > best.fun:
        res = best
    alpha, beta = (float(v) for v in _alpha_beta(res.x))
    theta = np.array([alpha, beta])

    alpha_se, beta_se = _standard_errors(theta, x2_prev, x2, use, var, robust)
    h = _garch_h(x2_prev, alpha, beta, var)
    loglik = -float(_garch_terms(theta, x2_prev, x2, use, var).sum()) - 0.5 * n_use * math.log(2 * math.pi)
    return GarchFit(alpha, beta, alpha_se, beta_se, var, float(loglik), h)


def simulate_garch_t(n: int, alpha: float, beta: float, var: float, nu: float | None, rng, *,
                     burn: int = 1000) -> np.ndarray:
    """Simulate a variance-targeting GARCH(1,1) with unit-variance Student-t innovations.

    ``r_t = sqrt(h_t) eps_t``, ``h_{t+1} = (1 - alpha - beta) var + alpha r_t^2 + beta h_t``,
    ``eps_t = T_nu sqrt((nu - 2) / nu)``; ``nu=None`` (or inf) gives Gaussian innovations.

    Args:
        n: number of returns kept (after ``burn`` discarded ones, started at ``h = var``).
        rng: a ``numpy.random.Generator`` or a seed.

    Returns:
        (n,) float64 returns.
    """
    if not (alpha >= 0 and beta >= 0 and alpha + beta < 1):
        raise ValueError(f"alpha, beta: need alpha, beta >= 0 and alpha + beta < 1 (got {alpha}, {beta})")
    if not var > 0:
        raise ValueError(f"var: must be > 0 (got {var})")
    rng = np.random.default_rng(rng)
    m = n + burn
    if nu is None or math.isinf(nu):
        eps = rng.standard_normal(m)
    else:
        if not nu > 2:
            raise ValueError(f"nu: must be > 2 for a finite variance (got {nu})")
        eps = rng.standard_t(nu, m) * math.sqrt((nu - 2.0) / nu)
    omega = (1.0 - alpha - beta) * var
    out = np.empty(m)
    h = var
    for t in range(m):
        out[t] = math.sqrt(h) * eps[t]
        h = omega + alpha * out[t] ** 2 + beta * h
    return out[burn:]

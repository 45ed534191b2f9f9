"""Estimate perpjax's price-model parameters from a panel of historical close prices.

The model (``paths``, ``stress``), per step of ``dt`` years, for the log price of each asset::

    x_{t+1} = x_t + drift + vol * m_t * v_t * sqrt(dt) * (L_t eps)_t + J_t
    v_{t+1}^2 = (1 - alpha - beta) + alpha * r_t^2 / (vol^2 dt) + beta * v_t^2

with ``eps`` multivariate Student-t (``nu`` dof, unit variance, one shared mixing variable),
``J_t`` compound-Poisson jumps with normal log sizes, ``v_t^2`` a variance-targeted GARCH(1,1)
ratio with unconditional mean 1 (``r_t`` is the diffusion log return of step ``t``, the regime's
vol multiplier included), and a calm / stress regime ``s_t``: ``L_t`` a factor of the calm or the
stress correlation matrix, ``m_t`` 1 or the stress vol multiplier. The regime is the simulator's
``shock`` switch (``stress.Regimes``): a state decided from past prices, on when the
equal-weighted log price falls ``drawdown`` below its EWMA and off when back within
``drawdown / 2``.

What is estimated, and how (host-side numpy/scipy; everything is at the bar frequency):

* **Jumps** (``fit_jumps``), per asset: iterative robust threshold. A return is flagged if
  ``|r - median| > threshold * sigma``, with ``sigma`` the bipower-variation scale
  (``sqrt(pi/2 * mean |x_t||x_{t-1}|)``, or ``1.4826 * MAD``) of the returns not yet flagged;
  repeated until the flagged set stops changing. Jump mean and std are those of the flagged
  returns (the diffusion part of that bar included). The intensity ``fit_market`` reports is the
  flagged count per year net of the fitted GARCH-t's own false flags
  (``garch_t_jump_flag_rate``: the same detector on simulated jump-free GARCH-t series with the
  fitted ``alpha, beta, var, nu``), floored at 0, so jumps carry only the moves the t tails and
  GARCH do not produce (``net_jumps=False`` keeps the flagged rate). Default ``threshold`` 8.
* **vol**: annualised standard deviation of the non-jump returns,
  ``sqrt(var * 365*86400 / bar_seconds)``.
* **GARCH(1,1)** (``fit_garch``): Gaussian quasi-maximum likelihood in variance-targeting form,
  ``omega = (1 - alpha - beta) * var`` with ``var`` fixed at the sample variance (two-step),
  ``h_0 = var``. ``(alpha, beta) = p * (s, 1 - s)`` with ``p, s`` logistic functions of
  unconstrained parameters, so ``alpha, beta >= 0`` and ``alpha + beta < 1`` hold by
  construction; minimised with L-BFGS-B from several starts. Standard errors: the
  Bollerslev-Wooldridge sandwich ``H^-1 J H^-1`` from a central-difference Hessian and
  per-bar scores (``robust=False``: ``H^-1`` alone, valid only for Gaussian innovations).
  Jump bars are left out of the likelihood and enter the recursion as an average shock
  (``r^2 = var``).
* **nu** (``fit_student_t_nu``): maximum likelihood of the dof of a unit-variance Student t
  on the pooled GARCH-standardized non-jump residuals of all assets (one nu, because the
  model has one shared mixing variable); SE from the curvature of the log-likelihood in nu.
* **Stress regime** (``fit_market(stress="drawdown")``, the default): ``drawdown_stress_mask``
  replays the simulator's ``shock`` state machine on the observed returns (level = mean
  cumulative log return, EWMA reference with half-life ``stress_halflife_bars``, on below
  ``-drawdown``, off above ``-drawdown / 2``, the state after bar ``t`` applying to bar ``t + 1``).
  Because the state is decided before the bar, the bar's return is not selected on, and the calm
  and stress correlations are the plain Pearson correlations of the GARCH-standardized returns on
  the jump-free calm and stress bars. The vol multiplier is ``std(z | stress) / std(z | calm)`` of
  each asset's GARCH-standardized non-jump returns ``z``: in the model the multiplier acts on top
  of ``v_t``, and ``v_t`` is the same GARCH filter of past returns as the fitted ``h_t``, so
  ``r_t / sqrt(h_t) = m_t * eps_t`` and this ratio is the model's ``m``. The raw-return ratio
  (``stress_raw_vol_ratio``, about 2.1-2.35 on 2022 hourly data against 1.11-1.14 standardized) also
  counts the GARCH rise after a selloff, which the simulator produces by itself: fed back into
  the GARCH update it makes ``alpha m^2 + beta > 1`` in stress and the simulated variance diverges.
  (The simulator's GARCH is updated with the return divided by ``m``, so its variance stays
  stationary in stress; the fit filters the observed returns, ``m`` included: with ``m`` of
  1.11-1.14 active 2-3 % of the time, the difference is small.)
* **Stress regime, ``stress="quantile"``** (``regime_correlation``), on the bars where no asset has a
  flagged jump: stress bars are those whose equal-weighted GARCH-standardized return (the market
  move relative to current volatility) is in its lowest ``stress_quantile`` (``stress_mask``), calm
  bars the rest. Selecting bars on the market return truncates the distribution along the market
  direction, so the plain within-set Pearson correlation is biased: for a bivariate normal with
  correlation 0.5, the lowest decile of the mean return has a within-set correlation of about
  -0.3, and a constant-correlation t(4.5) with correlation 0.72 shows 0.64 calm and 0.42 stress.
  ``method="selection"`` (the default there) undoes this: within a set chosen on ``m``,
  ``z = a + b m + e`` with slopes ``b`` and ``Cov(e | m) = k(m) Sigma_e`` unaffected by the
  selection, and ``R = Sigma_e + s2 b b'`` (Pearson-Lawley), with ``k(m)`` the posterior mean of
  the model's shared t mixing variance and ``s2`` (the regime's untruncated variance of ``m``)
  fixed by asking each diagonal to equal that asset's variance over all bars. ``method="pearson"``
  gives the plain within-set correlation. No simulator state reproduces this selection, and no
  vol multiplier is estimated.
  All correlation matrices go through ``nearest_psd_correlation`` (eigenvalues clipped at 1e-8,
  diagonal rescaled to 1).
* **Config** (``market_config``): a full perpjax config dict with the fitted market (assets, calm
  correlation, Student-t innovations, jumps, GARCH at ``fitted_seconds`` = the bar, the ``shock``
  regime with the fit's drawdown, half-life, stress correlation and vol multiplier), the rest
  (book depth and spread, ladders, book, venue rules) from a base config.

2022 hourly BTC, ETH, SOL, DOGE (defaults): nu 3.43; flagged jumps 7, 5, 14, 13 a year against
14-18 a year flagged on the fitted GARCH-t alone, so no net jumps; stress (5% below a 6 h EWMA)
2.4% of the hours, mean calm / stress correlation 0.76 / 0.77, vol multipliers 1.11-1.14.
Simulated hourly at those parameters, the 99.9% hourly loss is 12-20% above the empirical one
(BTC 4.7% vs 3.9%, ETH 6.3% vs 5.6%, SOL 9.8% vs 8.6%, DOGE 7.6% vs 6.6%; 5-27% over five
seeds), inside the distribution-free 99% interval of the empirical quantile
(``tests/test_fit.py``); without the regime's vol multiplier it is within 7% (0.97-1.07 times).

Known limits:

* Hourly data: ``alpha``, ``beta`` and ``nu`` (and the jump sizes) hold at the bar frequency of
  the data; only ``vol`` and the jump intensity are annualised. ``alpha, beta`` do not carry over
  to another step length (GARCH is not closed under temporal aggregation) and hourly t tails
  are heavier than daily ones; simulate at the data's bar or re-fit on data at the simulation's
  bar. Intraday seasonality is not modelled.
* Jump detection depends on ``threshold``: with Student-t innovations and a global (not local)
  scale, large diffusion moves in volatile periods are flagged as jumps too. At ``threshold=4``
  the fitted GARCH-t alone is flagged about 100 times a year (2022 parameters, nu 4.5) against
  135-180 in the data; at 8 the refitted nu falls to 3.4 and the GARCH-t alone is flagged 14-18
  times a year against 5-14 in the data (with the threshold-4 nu of 4.5 it would be 5-7). So the
  2022 flagged counts are within what the t tails produce and the net intensity is 0: simulating
  the flagged intensity as well (``net_jumps=False``) double-counts the tail (99.9% hourly loss
  20-47% above the data's). The net rate has Monte Carlo noise (about 1.4 a year with 32 series)
  and uses the flagged bars' sizes, false flags included.
* GARCH is a Gaussian QMLE: consistent under fat-tailed innovations, but less efficient than a
  t likelihood; ``var`` is estimated first and its sampling error is not in the SEs. Persistence
  close to 1 (typical for crypto) puts the estimate near the boundary, where SEs are unreliable.
* nu is fitted after GARCH and jump removal (not jointly); removing flagged jumps trims the
  tails, which biases nu upwards (also for flagged bars that the net rate then returns to the
  diffusion). Its SE ignores the first-stage estimation error.
* nu is fitted to all bars, stress ones included, and the stress multiplier is applied on top:
  dividing the stress bars' ``z`` by the multiplier moves nu only from 3.43 to 3.41 on 2022
  data, but the multiplier adds about 10% to the simulated 99.9% hourly loss, the main reason the
  fitted model's tail is heavier than the data's. The simulated market spends 1.2-1.7% of the
  hours in stress against 2.4% in the 2022 data.
* The drawdown stress has few bars (about 200 in a year at the defaults, in about 23 episodes),
  so the stress correlation and multipliers are noisy (SE of a correlation about 0.03, of a
  multiplier about 0.05). Jump bars are dropped from the correlations.
* ``"quantile"`` stress correlations rest on the elliptical selection argument (returns and the
  market return jointly t with one mixing variable, the set chosen on the market return alone).
  Jump bars are dropped first, which is a further selection (on each asset's own return) that the
  correction does not undo. With two true regimes selected on a factor rather than on the observed
  market return, the estimate mixes the regimes near the cut (0.5 / 0.9 is estimated as about
  0.55 / 0.82).
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import optimize, signal, special

SECONDS_PER_YEAR = 365.0 * 86400.0
NU_BOUNDS = (2.05, 100.0)
REQUIRED_COLUMNS = ("timestamp", "symbol", "close")
CORRELATION_METHODS = ("selection", "pearson")

__all__ = [
    "GarchFit",
    "JumpFit",
    "MarketFit",
    "fit_garch",
    "fit_jumps",
    "fit_market",
    "fit_student_t_nu",
    "garch_t_jump_flag_rate",
    "drawdown_stress_mask",
    "log_returns",
    "market_config",
    "nearest_psd_correlation",
    "read_prices",
    "regime_correlation",
    "rounded_correlation",
    "simulate_garch_t",
    "stress_mask",
    "summary_table",
]


# --------------------------------------------------------------------------- data


def read_prices(path) -> pd.DataFrame:
    """Wide DataFrame of close prices from a long CSV (``timestamp,symbol,...,close``; gz ok).

    Args:
        path: CSV file, one row per (timestamp, symbol); ``timestamp`` in unix seconds (UTC).

    Returns:
        DataFrame indexed by timestamp (int, unix seconds, sorted), one float column per symbol
        (sorted); NaN where a symbol has no bar.

    Raises:
        ValueError: the file does not exist, lacks a required column, or repeats a
            (timestamp, symbol) pair.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file")
    df = pd.read_csv(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; need {list(REQUIRED_COLUMNS)}")
    df = df.loc[:, list(REQUIRED_COLUMNS)]
    dup = df.duplicated(["timestamp", "symbol"])
    if dup.any():
        row = df[dup].iloc[0]
        raise ValueError(f"{path}: {int(dup.sum())} repeated (timestamp, symbol) rows, "
                         f"first ({row['timestamp']}, {row['symbol']})")
    df["close"] = pd.to_numeric(df["close"], errors="raise").astype(np.float64)
    wide = df.pivot(index="timestamp", columns="symbol", values="close").sort_index()
    wide = wide.reindex(columns=sorted(wide.columns))
    wide.index = wide.index.astype(np.int64)
    wide.index.name, wide.columns.name = "timestamp", None
    return wide


def _to_unix(t, name: str) -> float | None:
    """Unix seconds from None, a number (unix seconds), or a date string / Timestamp (naive = UTC)."""
    if t is None:
        return None
    if isinstance(t, (int, float, np.integer, np.floating)) and not isinstance(t, bool):
        return float(t)
    try:
        ts = pd.Timestamp(t)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}: not a date or unix seconds ({t!r})") from e
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return ts.timestamp()


def _returns_frame(closes: pd.DataFrame, symbols, start=None, end=None, bar_seconds=None):
    """(returns DataFrame indexed by the later bar's timestamp, closes used) over the common window."""
    if isinstance(symbols, str):
        symbols = [symbols]
    symbols = list(symbols)
    if not symbols:
        raise ValueError("symbols: need at least one symbol")
    absent = [s for s in symbols if s not in closes.columns]
    if absent:
        raise ValueError(f"symbols: {absent} not in the price data (have {list(closes.columns)})")
    if len(set(symbols)) != len(symbols):
        raise ValueError(f"symbols: repeated in {symbols}")
    t0, t1 = _to_unix(start, "start"), _to_unix(end, "end")
    sub = closes.loc[:, symbols].sort_index()
    idx = sub.index.to_numpy(np.float64)
    keep = np.ones(len(sub), bool)
    if t0 is not None:
        keep &= idx >= t0
    if t1 is not None:
        keep &= idx < t1
    sub = sub[keep].dropna(how="any")
    vals = sub.to_numpy(np.float64)
    if not np.all(np.isfinite(vals) & (vals > 0)):
        raise ValueError("closes: prices must be finite and > 0")
    if len(sub) < 3:
        raise ValueError(f"symbols {symbols}: fewer than 3 common bars in the window [{start}, {end})")
    ts = sub.index.to_numpy(np.int64)
    gaps = np.diff(ts)
    bar = float(np.median(gaps)) if bar_seconds is None else float(bar_seconds)
    lr = np.diff(np.log(vals), axis=0)
    regular = gaps == bar  # a return spanning a gap (missing bar) is dropped
    if not regular.any():
        raise ValueError(f"bar_seconds: no two consecutive bars {bar:g} s apart (median spacing "
                         f"{float(np.median(gaps)):g} s)")
    ret = pd.DataFrame(lr[regular], index=pd.Index(ts[1:][regular], name="timestamp"), columns=symbols)
    return ret, sub


def log_returns(closes: pd.DataFrame, symbols, start=None, end=None, *, bar_seconds=None) -> np.ndarray:
    """Log returns of ``symbols`` over the window where all of them have prices.

    Args:
        closes: wide close prices (``read_prices``).
        symbols: column names (one string or a sequence).
        start, end: window on the bar timestamps, ``start <= t < end``; unix seconds or a date
            (string or Timestamp; naive means UTC). None = unbounded.
        bar_seconds: bar length; returns across a longer gap (a missing bar) are dropped.
            Default: the median spacing of the timestamps.

    Returns:
        (n, k) float64 array, ``log(close_t / close_{t-1})`` over consecutive common bars.

    Raises:
        ValueError: a symbol is absent, or fewer than 3 common bars.
    """
    return _returns_frame(closes, symbols, start, end, bar_seconds)[0].to_numpy()


# --------------------------------------------------------------------------- GARCH


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
    res = optimize.minimize(nll_u, best.x, method="Nelder-Mead", options={"xatol": 1e-8, "fatol": 1e-12})
    if res.fun > best.fun:
        res = best
    alpha, beta = (float(v) for v in _alpha_beta(res.x))
    theta = np.array([alpha, beta])

    def nll(t):
        return float(_garch_terms(t, x2_prev, x2, use, var).sum())

    steps = np.array([1e-4, 1e-4])
    alpha_se = beta_se = math.nan
    H = _hessian(nll, theta, steps)
    if np.all(np.isfinite(H)) and np.all(np.linalg.eigvalsh(H) > 0):
        Hinv = np.linalg.inv(H)
        cov = Hinv
        if robust:
            scores = np.empty((n_use, 2))
            for i in range(2):
                e = np.eye(2)[i] * steps[i]
                scores[:, i] = (_garch_terms(theta + e, x2_prev, x2, use, var)
                                - _garch_terms(theta - e, x2_prev, x2, use, var)) / (2 * steps[i])
            cov = Hinv @ (scores.T @ scores) @ Hinv
        if np.all(np.isfinite(cov)) and cov[0, 0] > 0 and cov[1, 1] > 0:
            alpha_se, beta_se = float(np.sqrt(cov[0, 0])), float(np.sqrt(cov[1, 1]))
    h = _garch_h(x2_prev, alpha, beta, var)
    loglik = -nll(theta) - 0.5 * n_use * math.log(2 * math.pi)
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


# --------------------------------------------------------------------------- jumps


class JumpFit(NamedTuple):
    """Threshold jump detection; sizes are log returns of the flagged bars."""

    intensity_per_year: float
    mean: float
    std: float
    mask: np.ndarray  # (n,) bool, True on jump bars


def _robust_scale(x, scale: str) -> float:
    if scale == "bipower":
        return math.sqrt(math.pi / 2.0 * float(np.mean(np.abs(x[1:]) * np.abs(x[:-1]))))
    return 1.4826 * float(np.median(np.abs(x)))


def fit_jumps(r, threshold: float = 4.0, *, bar_seconds: float = 3600.0, scale: str = "bipower",
              max_iter: int = 100) -> JumpFit:
    """Iterative robust threshold detection of jumps in one return series.

    Repeats until the flagged set is stable: ``med, sigma`` = median and robust scale of the returns
    not flagged; flag ``|r - med| > threshold * sigma``. ``sigma`` is the bipower-variation scale
    ``sqrt(pi/2 mean |x_t||x_{t-1}|)`` over consecutive unflagged returns (``scale="bipower"``) or
    ``1.4826 * MAD`` (``scale="mad"``).

    Args:
        r: (n,) log returns.
        threshold: in robust standard deviations.
        bar_seconds: bar length, for the intensity per year (``n * bar_seconds`` is the span).

    Returns:
        JumpFit(intensity_per_year, mean, std, mask); ``std`` is 0 with fewer than 2 jumps, ``mean``
        0 with none.
    """
    r = np.asarray(r, np.float64)
    if r.ndim != 1 or len(r) < 10:
        raise ValueError(f"r: need a 1-d series of at least 10 returns (got shape {r.shape})")
    if not np.all(np.isfinite(r)):
        raise ValueError("r: returns must be finite")
    if not threshold > 0:
        raise ValueError(f"threshold: must be > 0 (got {threshold})")
    if scale not in ("bipower", "mad"):
        raise ValueError(f"scale: must be 'bipower' or 'mad' (got {scale!r})")
    mask = np.zeros(len(r), bool)
    for _ in range(max_iter):
        rest = r[~mask]
        med = float(np.median(rest))
        sigma = _robust_scale(rest - med, scale)
        new = np.abs(r - med) > threshold * sigma
        if np.array_equal(new, mask):
            break
        mask = new
    sizes = r[mask]
    years = len(r) * bar_seconds / SECONDS_PER_YEAR
    mean = float(sizes.mean()) if len(sizes) else 0.0
    std = float(sizes.std(ddof=1)) if len(sizes) >= 2 else 0.0
    return JumpFit(float(len(sizes) / years), mean, std, mask)


def garch_t_jump_flag_rate(n: int, alpha: float, beta: float, var: float, nu: float | None, threshold: float,
                           *, bar_seconds: float = 3600.0, reps: int = 32, rng=0) -> float:
    """Flags per year that ``fit_jumps`` raises on a jump-free GARCH(1,1)-t: its false-jump rate.

    ``reps`` independent series of ``n`` bars of ``simulate_garch_t``'s process (started at
    ``h = var``, like the fit) go through ``fit_jumps(threshold)``; the mean count is converted to a
    rate per year. Deterministic for a fixed ``rng``. The Monte Carlo standard error is about
    ``sd(count) / sqrt(reps)`` per series (e.g. 15 +- 8 flags a year at threshold 8 on 2022 hourly
    data, so about 1.4 a year with 32 series).
    """
    if not (alpha >= 0 and beta >= 0 and alpha + beta < 1):
        raise ValueError(f"alpha, beta: need alpha, beta >= 0 and alpha + beta < 1 (got {alpha}, {beta})")
    if not var > 0:
        raise ValueError(f"var: must be > 0 (got {var})")
    if n < 10 or reps < 1:
        raise ValueError(f"n, reps: need n >= 10 and reps >= 1 (got {n}, {reps})")
    rng = np.random.default_rng(rng)
    if nu is None or math.isinf(nu):
        eps = rng.standard_normal((n, reps))
    else:
        if not nu > 2:
            raise ValueError(f"nu: must be > 2 for a finite variance (got {nu})")
        eps = rng.standard_t(nu, (n, reps)) * math.sqrt((nu - 2.0) / nu)
    omega = (1.0 - alpha - beta) * var
    x = np.empty((n, reps))
    h = np.full(reps, float(var))
    for t in range(n):
        x[t] = np.sqrt(h) * eps[t]
        h = omega + alpha * x[t] ** 2 + beta * h
    count = np.mean([fit_jumps(x[:, j], threshold).mask.sum() for j in range(reps)])
    return float(count / (n * bar_seconds / SECONDS_PER_YEAR))


# --------------------------------------------------------------------------- Student t


def _t_loglik(nu, z):
    c = special.gammaln((nu + 1) / 2) - special.gammaln(nu / 2) - 0.5 * math.log(math.pi * (nu - 2))
    return len(z) * c - (nu + 1) / 2 * float(np.sum(np.log1p(z * z / (nu - 2))))


def fit_student_t_nu(z) -> tuple[float, float]:
    """MLE of the dof of a unit-variance Student t for standardized residuals ``z``.

    Density ``Gamma((nu+1)/2) / (Gamma(nu/2) sqrt(pi (nu-2))) (1 + z^2/(nu-2))^(-(nu+1)/2)``, the
    scale fixed at unit variance (as in the model). ``nu`` is bounded to ``[2.05, 100]``: a grid in
    log(nu - 2), then a bounded Brent search around the best point.

    Returns:
        (nu, nu_se); ``nu_se = 1 / sqrt(-d2 loglik / d nu2)`` (central differences), NaN at a bound.
    """
    z = np.asarray(z, np.float64).ravel()
    z = z[np.isfinite(z)]
    if len(z) < 20:
        raise ValueError(f"z: need at least 20 finite residuals (got {len(z)})")
    lo, hi = NU_BOUNDS
    grid = 2.0 + np.exp(np.linspace(math.log(lo - 2), math.log(hi - 2), 60))
    ll = np.array([_t_loglik(v, z) for v in grid])
    i = int(np.argmax(ll))
    a, b = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    res = optimize.minimize_scalar(lambda v: -_t_loglik(v, z), bounds=(a, b), method="bounded",
                                   options={"xatol": 1e-6})
    nu = float(res.x)
    se = math.nan
    h = 1e-3 * nu
    if nu - h > lo and nu + h < hi:
        d2 = (_t_loglik(nu + h, z) - 2 * _t_loglik(nu, z) + _t_loglik(nu - h, z)) / h**2
        if d2 < 0:
            se = 1.0 / math.sqrt(-d2)
    return nu, se


# --------------------------------------------------------------------------- correlation


def stress_mask(r_matrix, quantile: float = 0.1) -> np.ndarray:
    """Selloff bars: the equal-weighted market return is at or below its ``quantile`` quantile.

    Args:
        r_matrix: (n, k) returns (NaN-free).
        quantile: fraction of bars called stress, in (0, 1).

    Returns:
        (n,) bool.
    """
    r = np.asarray(r_matrix, np.float64)
    if r.ndim == 1:
        r = r[:, None]
    if r.ndim != 2 or not np.all(np.isfinite(r)):
        raise ValueError(f"r_matrix: need a finite (n, k) array (got shape {r.shape})")
    if not 0 < quantile < 1:
        raise ValueError(f"quantile: must be in (0, 1) (got {quantile})")
    m = r.mean(axis=1)
    return m <= np.quantile(m, quantile)


def drawdown_stress_mask(r_matrix, drawdown: float = 0.05, halflife_bars: float = 6.0) -> np.ndarray:
    """The simulator's ``shock`` stress state (``stress.Regimes.next``) replayed on observed returns.

    ``level_t`` = mean over assets of the cumulative log return to the end of bar ``t`` (the
    equal-weighted ``log price_t - log price_0``), ``ref_t = ref_{t-1} + a (level_t - ref_{t-1})``
    with ``a = 1 - 0.5^(1 / halflife_bars)`` and ``ref_{-1} = 0``, ``gap_t = level_t - ref_t``.
    Stress turns on when ``gap_t < -drawdown`` and, once on, stays on while
    ``gap_t < -drawdown / 2``. As in the simulator the state reached at the end of bar ``t`` is the
    regime of bar ``t + 1`` (bar ``t``'s return is drawn in the regime decided from the prices up to
    bar ``t - 1``), and the first bar is calm. The state is thus decided before the bar, so the
    returns of stress bars are not selected on themselves.

    Args:
        r_matrix: (n, k) log returns, consecutive bars (a 1-d array is one asset).
        drawdown: entry threshold on the log gap (the simulator's ``regimes.drawdown``), >= 0.
        halflife_bars: half-life of the reference EWMA in bars
            (``regimes.reference_halflife_seconds / step_seconds``), > 0; ``inf`` keeps ``ref = 0``.

    Returns:
        (n,) bool, True on bars simulated in the stress regime.
    """
    r = np.asarray(r_matrix, np.float64)
    if r.ndim == 1:
        r = r[:, None]
    if r.ndim != 2 or not np.all(np.isfinite(r)):
        raise ValueError(f"r_matrix: need a finite (n, k) array (got shape {r.shape})")
    if not drawdown >= 0:
        raise ValueError(f"drawdown: must be >= 0 (got {drawdown})")
    if not halflife_bars > 0:
        raise ValueError(f"halflife_bars: must be > 0 (got {halflife_bars})")
    a = 1.0 - 0.5 ** (1.0 / halflife_bars) if math.isfinite(halflife_bars) else 0.0
    level = np.cumsum(r.mean(axis=1))
    ref = signal.lfilter([a], [1.0, -(1.0 - a)], level)  # ref_t = (1 - a) ref_{t-1} + a level_t, ref_{-1} = 0
    gap = (level - ref).tolist()
    on, off = -float(drawdown), -0.5 * float(drawdown)
    out = np.zeros(len(gap), bool)
    stress = False
    for t in range(len(gap) - 1):
        stress = gap[t] < off if stress else gap[t] < on
        out[t + 1] = stress
    return out


def nearest_psd_correlation(c, eps: float = 1e-8) -> np.ndarray:
    """A valid correlation matrix close to the symmetric matrix ``c``.

    Eigenvalues are clipped at ``eps`` and the diagonal rescaled to 1 (``D^-1/2 C D^-1/2``). This
    is the one-step projection, not Higham's exact nearest correlation matrix; it leaves a valid
    correlation matrix unchanged (up to rounding).

    Raises:
        ValueError: ``c`` is not square, symmetric or finite.
    """
    c = np.asarray(c, np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"c: must be a square matrix (got shape {c.shape})")
    if not np.all(np.isfinite(c)):
        raise ValueError("c: must be finite")
    if not np.allclose(c, c.T, atol=1e-10, rtol=0):
        raise ValueError("c: must be symmetric")
    c = 0.5 * (c + c.T)
    w, v = np.linalg.eigh(c)
    a = (v * np.maximum(w, eps)) @ v.T
    d = np.sqrt(np.diag(a))
    a = a / np.outer(d, d)
    a = 0.5 * (a + a.T)
    np.fill_diagonal(a, 1.0)
    return a


def regime_correlation(z, select, market=None, *, method: str = "selection", nu: float | None = None,
                       max_iter: int = 500) -> np.ndarray:
    """Correlation of standardized returns within a regime whose bars were selected on the market return.

    ``method="pearson"``: the plain within-set (pairwise complete) correlation.

    ``method="selection"``: corrects for the selection. If ``(z, m)`` are jointly elliptical with a
    regime correlation ``R`` and the set was chosen on ``m`` alone, then within the set
    ``z = a + b m + e`` with ``b`` (the regression slopes on ``m``) and ``Cov(e | m) = k(m) Sigma_e``
    unaffected by the selection, and ``R = Sigma_e + s2 b b'`` where ``s2`` is the regime's
    (untruncated) variance of ``m``. ``k(m) = 1`` for a normal (``nu=None``: the Pearson-Lawley
    formula); for a unit-variance Student t with ``nu`` dof and one mixing variable (the model)
    ``k(m) = (nu - 2 + m^2 / s2) / (nu - 1)``, the posterior mean of the mixing variance, and the
    residuals are weighted by ``1 / k(m)``. ``s2`` is fixed by asking ``diag(R)`` to equal each
    column's variance over all bars (least squares), iterated with ``k`` to a fixed point.

    Args:
        z: (n, k) standardized returns over all bars (both regimes); NaN marks a bar left out for that
            asset (pairs use the bars where both are present).
        select: (n,) bool, the regime's bars (``stress_mask`` or its complement).
        market: (n,) the variable the bars were selected on, in the units of ``z`` (default: the row
            mean of ``z`` over present assets).
        method: ``"selection"`` or ``"pearson"``.
        nu: Student-t dof for ``"selection"``; None = normal.

    Returns:
        (k, k) valid correlation matrix (``nearest_psd_correlation`` applied).
    """
    if method not in CORRELATION_METHODS:
        raise ValueError(f"method: must be one of {CORRELATION_METHODS} (got {method!r})")
    z = np.asarray(z, np.float64)
    if z.ndim != 2:
        raise ValueError(f"z: need an (n, k) array (got shape {z.shape})")
    sel = np.asarray(select, bool)
    m = np.nanmean(z, axis=1) if market is None else np.asarray(market, np.float64)
    if sel.shape != (len(z),) or m.shape != (len(z),):
        raise ValueError(f"select, market: need shape ({len(z)},) (got {sel.shape}, {m.shape})")
    if not np.all(np.isfinite(m[sel])):
        raise ValueError("market: must be finite on the selected bars")
    if nu is not None and not nu > 2:
        raise ValueError(f"nu: must be > 2 (got {nu})")
    zs, ms = z[sel], m[sel]
    k = z.shape[1]
    present = np.isfinite(zs)
    if present.sum(axis=0).min() < 10:
        raise ValueError(f"select: fewer than 10 usable bars for some asset ({int(present.sum(axis=0).min())})")
    pairs = [(i, j, present[:, i] & present[:, j]) for i in range(k) for j in range(i, k)]

    def weighted_cov(x, w):
        c = np.empty((k, k))
        for i, j, both in pairs:
            c[i, j] = c[j, i] = float(np.mean(w[both] * x[both, i] * x[both, j]))
        return c

    if method == "pearson":
        S = np.empty((k, k))
        for i, j, both in pairs:  # each pair centred on its common bars
            xi, xj = zs[both, i], zs[both, j]
            S[i, j] = S[j, i] = float(np.mean((xi - xi.mean()) * (xj - xj.mean())))
    else:
        e = np.full_like(zs, np.nan)
        b = np.empty(k)
        for i in range(k):
            pi = present[:, i]
            X = np.column_stack([np.ones(int(pi.sum())), ms[pi]])
            coef = np.linalg.lstsq(X, zs[pi, i], rcond=None)[0]
            b[i] = coef[1]
            e[pi, i] = zs[pi, i] - X @ coef
        target = np.nanvar(z, axis=0)
        s2 = float(np.var(m[np.isfinite(m)]))
        floor = 1e-12 * max(s2, 1e-300)
        for _ in range(max_iter):
            kt = np.ones(len(ms)) if nu is None else (nu - 2.0 + ms**2 / s2) / (nu - 1.0)
            Se = weighted_cov(e, 1.0 / kt)
            s2_new = max(float(np.sum(b**2 * (target - np.diag(Se))) / np.sum(b**4)), floor)
            done = abs(s2_new - s2) <= 1e-10 * s2
            s2 = s2_new
            if done or nu is None:
                break
        S = Se + s2 * np.outer(b, b)
    d = np.sqrt(np.diag(S))
    return nearest_psd_correlation(S / np.outer(d, d))


# --------------------------------------------------------------------------- market


class MarketFit(NamedTuple):
    """Fitted price-model parameters for ``symbols`` (arrays in that order).

    ``vol`` is annualised; ``garch_*`` and ``nu`` hold at the bar frequency ``bar_seconds``;
    ``jump_intensity`` is per year, ``jump_mean``/``jump_std`` of the log jump size; ``start``/``end``
    are the first and last bar timestamps (unix seconds) of the closes used. ``stress`` is the
    stress definition (``"drawdown"`` or ``"quantile"``), ``stress_drawdown`` and
    ``stress_halflife_bars`` its drawdown-state parameters (NaN with ``"quantile"``),
    ``stress_share`` the fraction of bars in stress (of all bars for ``"drawdown"``, of the
    jump-free bars for ``"quantile"``) and ``stress_vol_multiplier`` the stress / calm standard
    deviation of each asset's GARCH-standardized non-jump returns, the model's stress vol
    multiplier (ones with ``"quantile"``: not estimated), and ``stress_raw_vol_ratio`` the same ratio
    of raw returns (NaN with ``"quantile"``; for information: it also counts the GARCH rise).
    ``jump_intensity`` is ``jump_flagged_intensity`` (flags per year) less
    ``jump_false_intensity`` (the fitted GARCH-t's own flags per year; 0 with ``net_jumps=False``),
    floored at 0.
    """

    symbols: tuple[str, ...]
    last_price: np.ndarray
    vol: np.ndarray
    nu: float
    nu_se: float
    jump_intensity: np.ndarray
    jump_mean: np.ndarray
    jump_std: np.ndarray
    garch_alpha: np.ndarray
    garch_beta: np.ndarray
    garch_alpha_se: np.ndarray
    garch_beta_se: np.ndarray
    calm_correlation: np.ndarray
    stress_correlation: np.ndarray
    n_returns: int
    start: int
    end: int
    bar_seconds: float
    stress: str
    stress_drawdown: float
    stress_halflife_bars: float
    stress_share: float
    stress_vol_multiplier: np.ndarray
    stress_raw_vol_ratio: np.ndarray
    jump_flagged_intensity: np.ndarray
    jump_false_intensity: np.ndarray

    def summary_table(self) -> pd.DataFrame:
        return summary_table(self)


STRESS_DEFINITIONS = ("drawdown", "quantile")
MIN_REGIME_BARS = 10


def fit_market(closes: pd.DataFrame, symbols: Sequence[str], *, start=None, end=None, bar_seconds: float = 3600.0,
               jump_threshold: float = 8.0, stress: str = "drawdown", stress_drawdown: float = 0.05,
               stress_halflife_bars: float = 6.0, stress_quantile: float = 0.1,
               correlation_method: str | None = None, net_jumps: bool = True) -> MarketFit:
    """Fit the price model to the common window of ``symbols`` in ``closes``.

    Per asset: jumps (``fit_jumps``), vol from the non-jump returns, GARCH on the returns with jump
    bars excluded (``fit_garch(exclude=...)``, target variance = the non-jump variance, so the
    GARCH ratio's mean is 1 in units of ``vol^2 dt``). Then one nu from the pooled standardized
    non-jump residuals ``z``. Correlations use the bars where no asset has a flagged jump, split
    into calm and stress bars by ``stress``:

    * ``"drawdown"`` (default): the simulator's ``shock`` state (``drawdown_stress_mask`` on all
      returns, jumps included, as the simulated level includes them). The state is decided before
      the bar, so each matrix is the plain Pearson correlation of ``z`` on its bars
      (``correlation_method`` must be None or ``"pearson"``), and the regime's vol multiplier is
      estimated as ``std(z | stress) / std(z | calm)`` of each asset's GARCH-standardized
      non-jump returns: the simulator multiplies ``vol * v_t`` by it, ``v_t`` being the same GARCH
      filter as ``h_t``, so the raw-return ratio (``stress_raw_vol_ratio``) would count the GARCH
      rise after a selloff twice (see the module docstring).
    * ``"quantile"``: bars whose equal-weighted ``z`` (the market return relative to current
      volatility) is in its lowest ``stress_quantile`` (``stress_mask``), with
      ``regime_correlation``'s selection correction at the fitted nu (``correlation_method``
      None or ``"selection"``) or the plain within-set Pearson (``"pearson"``). This selects on
      the bar's own return, so no vol multiplier is estimated (ones).

    Args:
        closes: wide close prices (``read_prices``).
        symbols: assets to fit, in the order of the output arrays.
        start, end: window ``start <= t < end`` (unix seconds or dates, naive = UTC).
        bar_seconds: bar length of ``closes`` (returns across gaps are dropped).
        jump_threshold: ``fit_jumps`` threshold in robust standard deviations. Default 8: at 4
            the fitted hourly GARCH-t alone (no jumps) is flagged about 100 times a year (2022
            parameters), so most flags are t-tail moves and the net rate would be the difference
            of two large, noisy counts (135-180 flagged in the data); at 8 the flags are few (5-14
            a year in 2022 for BTC, ETH, SOL, DOGE) and the GARCH-t's own rate (14-18 a year with
            the nu of 3.4 refitted at this threshold; 5-7 with the threshold-4 nu of 4.5) can be
            subtracted with a Monte Carlo error of about 1.4 a year, leaving jumps only for moves
            the t tails do not produce (none in 2022; about 10 a year for DOGE over Oct 2020 - 2022).
        net_jumps: report the flagged jump rate net of the fitted GARCH-t's false flags
            (``garch_t_jump_flag_rate``, 32 simulated series of the data's length), floored at 0;
            False reports the flagged rate (which double-counts the tail with nu).
        stress: ``"drawdown"`` or ``"quantile"``.
        stress_drawdown, stress_halflife_bars: ``drawdown_stress_mask``'s ``drawdown`` and
            ``halflife_bars`` (``"drawdown"`` only; ``market_config`` writes them as
            ``regimes.drawdown`` and ``regimes.reference_halflife_seconds``).
        stress_quantile: fraction of bars (lowest market returns) in stress (``"quantile"`` only).
        correlation_method: None (the definition's own), ``"selection"`` (``"quantile"`` only) or
            ``"pearson"``.

    Returns:
        MarketFit.

    Raises:
        ValueError: a bad argument, fewer than 100 returns, or fewer than 10 jump-free bars in
            either regime (lower ``stress_drawdown`` or use ``"quantile"``).
    """
    if isinstance(symbols, str):
        symbols = [symbols]
    if stress not in STRESS_DEFINITIONS:
        raise ValueError(f"stress: must be one of {STRESS_DEFINITIONS} (got {stress!r})")
    if correlation_method is None:
        correlation_method = "pearson" if stress == "drawdown" else "selection"
    if correlation_method not in CORRELATION_METHODS:
        raise ValueError(f"correlation_method: must be one of {CORRELATION_METHODS} (got {correlation_method!r})")
    if stress == "drawdown" and correlation_method != "pearson":
        raise ValueError("correlation_method: the drawdown stress state is decided before the bar, so there is "
                         f"no selection to correct; use 'pearson' (got {correlation_method!r})")
    ret, used = _returns_frame(closes, symbols, start, end, bar_seconds)
    r = ret.to_numpy()
    n, k = r.shape
    if n < 100:
        raise ValueError(f"window: {n} returns, need at least 100")
    annual = SECONDS_PER_YEAR / bar_seconds
    z = np.full((n, k), np.nan)
    fields = {f: np.empty(k) for f in ("vol", "ji", "jm", "js", "a", "b", "ase", "bse")}
    for i in range(k):
        jf = fit_jumps(r[:, i], jump_threshold, bar_seconds=bar_seconds)
        keep = ~jf.mask
        x = r[:, i] - r[keep, i].mean()
        var = float(np.mean(x[keep] ** 2))
        g = fit_garch(r[:, i], var=var, exclude=jf.mask)
        z[keep, i] = x[keep] / np.sqrt(g.conditional_var[keep])
        for f, v in zip(fields, (math.sqrt(var * annual), jf.intensity_per_year, jf.mean, jf.std,
                                 g.alpha, g.beta, g.alpha_se, g.beta_se), strict=True):
            fields[f][i] = v
    nu, nu_se = fit_student_t_nu(z[np.isfinite(z)])
    flagged = fields["ji"].copy()
    false = np.zeros(k)
    if net_jumps:
        for i in range(k):
            if flagged[i] > 0:
                var_i = fields["vol"][i] ** 2 / annual
                false[i] = garch_t_jump_flag_rate(n, fields["a"][i], fields["b"][i], var_i, nu, jump_threshold,
                                                  bar_seconds=bar_seconds, rng=i)
    intensity = np.maximum(flagged - false, 0.0)
    clean = np.isfinite(z).all(axis=1)  # bars with no flagged jump: the diffusion part alone
    zc = z[clean]
    if len(zc) < 100:
        raise ValueError(f"window: {len(zc)} bars without a jump in any asset, need at least 100")
    if stress == "drawdown":
        dd_mask = drawdown_stress_mask(r, stress_drawdown, stress_halflife_bars)
        sel = dd_mask[clean]
        share, dd, hl = float(dd_mask.mean()), float(stress_drawdown), float(stress_halflife_bars)
        vm, raw = np.full(k, math.nan), np.full(k, math.nan)
        for i in range(k):
            nonjump = np.isfinite(z[:, i])
            on, off = nonjump & dd_mask, nonjump & ~dd_mask
            if min(on.sum(), off.sum()) >= 2:
                vm[i] = float(np.std(z[on, i], ddof=1) / np.std(z[off, i], ddof=1))
                raw[i] = float(np.std(r[on, i], ddof=1) / np.std(r[off, i], ddof=1))
    else:
        sel = stress_mask(zc, stress_quantile)
        share, dd, hl, vm, raw = float(sel.mean()), math.nan, math.nan, np.ones(k), np.full(k, math.nan)
    n_on, n_off = int(sel.sum()), int((~sel).sum())
    if min(n_on, n_off) < MIN_REGIME_BARS:
        raise ValueError(f"stress: {n_on} stress and {n_off} calm bars without a jump, need at least "
                         f"{MIN_REGIME_BARS} of each (stress={stress!r}, drawdown {stress_drawdown}, "
                         f"halflife {stress_halflife_bars} bars)")
    market = zc.mean(axis=1)
    t_nu = nu if correlation_method == "selection" else None
    calm_c = regime_correlation(zc, ~sel, market, method=correlation_method, nu=t_nu)
    stress_c = regime_correlation(zc, sel, market, method=correlation_method, nu=t_nu)
    return MarketFit(
        symbols=tuple(symbols), last_price=used.iloc[-1].to_numpy(np.float64), vol=fields["vol"],
        nu=nu, nu_se=nu_se, jump_intensity=intensity, jump_mean=fields["jm"], jump_std=fields["js"],
        garch_alpha=fields["a"], garch_beta=fields["b"], garch_alpha_se=fields["ase"], garch_beta_se=fields["bse"],
        calm_correlation=calm_c, stress_correlation=stress_c, n_returns=n,
        start=int(used.index[0]), end=int(used.index[-1]), bar_seconds=float(bar_seconds),
        stress=stress, stress_drawdown=dd, stress_halflife_bars=hl, stress_share=share, stress_vol_multiplier=vm,
        stress_raw_vol_ratio=raw, jump_flagged_intensity=flagged, jump_false_intensity=false)


def summary_table(fit: MarketFit) -> pd.DataFrame:
    """One row per symbol: last price, vol, GARCH (with SEs and persistence), jumps, stress vol multiplier.

    The shared ``nu``, ``nu_se``, window, stress definition (with its parameters and share of bars)
    and mean off-diagonal correlations are in ``.attrs``.
    """
    k = len(fit.symbols)
    iu = np.triu_indices(k, 1)
    df = pd.DataFrame({
        "last_price": fit.last_price, "vol": fit.vol,
        "garch_alpha": fit.garch_alpha, "garch_alpha_se": fit.garch_alpha_se,
        "garch_beta": fit.garch_beta, "garch_beta_se": fit.garch_beta_se,
        "persistence": fit.garch_alpha + fit.garch_beta,
        "jump_intensity": fit.jump_intensity, "jump_mean": fit.jump_mean, "jump_std": fit.jump_std,
        "stress_vol_multiplier": fit.stress_vol_multiplier, "stress_raw_vol_ratio": fit.stress_raw_vol_ratio,
    }, index=pd.Index(list(fit.symbols), name="symbol"))
    df.attrs.update(
        nu=fit.nu, nu_se=fit.nu_se, n_returns=fit.n_returns, start=fit.start, end=fit.end,
        bar_seconds=fit.bar_seconds, stress=fit.stress, stress_drawdown=fit.stress_drawdown,
        stress_halflife_bars=fit.stress_halflife_bars, stress_share=fit.stress_share,
        calm_mean_offdiag=float(fit.calm_correlation[iu].mean()) if k > 1 else math.nan,
        stress_mean_offdiag=float(fit.stress_correlation[iu].mean()) if k > 1 else math.nan)
    return df


# --------------------------------------------------------------------------- config

DEFAULT_REGIME_DRAWDOWN = 0.05
DEFAULT_REGIME_HALFLIFE_SECONDS = 21600.0
ASSET_KEYS_FROM_BASE = ("depth_usd", "spread", "basis_mean")


def _floats(a, ndigits: int | None = None) -> list:
    """Nested Python floats (no numpy scalars) from an array, optionally rounded."""
    a = np.asarray(a, np.float64)
    if ndigits is not None:
        a = np.round(a, ndigits)
    return [float(v) for v in a] if a.ndim == 1 else [_floats(row) for row in a]


def rounded_correlation(c, ndigits: int = 4) -> np.ndarray:
    """``c`` projected (``nearest_psd_correlation``) and rounded to ``ndigits`` decimals, still a valid
    correlation matrix (unit diagonal, smallest eigenvalue > 0 after rounding).

    Rounding moves each entry by at most ``0.5 * 10^-ndigits``, so the eigenvalues by at most
    ``k`` times that; the projection's eigenvalue floor is raised until the rounded matrix is
    positive definite.
    """
    c = np.asarray(c, np.float64)
    k = len(c)
    step = 0.5 * 10.0**-ndigits
    for floor in (1e-8, *(step * k * m for m in (1, 2, 4, 8, 16))):
        out = np.round(nearest_psd_correlation(c, floor), ndigits)
        np.fill_diagonal(out, 1.0)
        if np.linalg.eigvalsh(out).min() > 0:
            return out
    raise ValueError("correlation: no positive definite matrix after rounding")  # pragma: no cover


def market_config(fit: MarketFit, names: Sequence[str], base: dict) -> dict:
    """A perpjax config dict simulating the fitted market: ``base`` with its market replaced.

    ``base`` is a full config dict (e.g. ``perpjax.config.load_config()``, the packaged default)
    and is not modified; the result is a deep copy of it with these keys replaced:

    * ``assets``: one per fitted symbol, in order, named ``names[i]``: ``price`` = last close, the
      fitted ``vol``, ``drift`` 0, and ``depth_usd``, ``spread`` (and ``basis_mean``) copied from
      the base asset of that name (book depth is not estimated from prices);
    * ``correlation``: the calm matrix, rounded to 4 decimals (``rounded_correlation``);
    * ``innovations``: Student t with ``nu`` rounded to 2 decimals;
    * ``jumps``: per-asset ``intensity_per_year``, ``mean``, ``std``;
    * ``garch``: per-asset ``alpha``, ``beta`` with ``fitted_seconds`` = the bar length (the
      engine maps them to its step; simulate at the data's bar for them to hold exactly);
    * ``regimes``: the stress correlation (rounded as above), ``switch: shock`` and the regime's
      ``vol_multiplier``. With the ``"drawdown"`` stress the ``drawdown`` and
      ``reference_halflife_seconds`` (``stress_halflife_bars * bar_seconds``) are the ones the fit
      used, so the simulated regime is the state the correlations were measured in. With the
      ``"quantile"`` stress (a selection on the bar's own return, which no simulator state
      reproduces) the switch is still ``shock``, with the simulator's defaults ``drawdown`` 0.05 and
      ``reference_halflife_seconds`` 21600, and ``vol_multiplier`` 1 (not estimated). ``depth_factor``
      is left out (default 1: not estimated);
    * ``ladders``: the base ladders of ``names`` (others dropped, as the config allows no ladder
      for an absent asset);
    * ``description``: ``"market fitted to SYMBOLS from START to END (UTC) by perpjax fit"``.

    Everything else (book, venue rules, time grid, ...) is the base's: a book whose positions refer
    to assets not in ``names`` fails in ``build_model``. All numbers are Python floats, so the
    dict dumps to YAML with ``yaml.safe_dump``.

    Args:
        fit: ``fit_market``'s result.
        names: asset names for the fitted symbols (e.g. ``BTC`` for ``BTCUSDT``), same order.
        base: full config dict supplying the non-market sections, asset depth/spread and ladders.

    Raises:
        ValueError: ``names`` has the wrong length or repeats a name, or the base lacks an asset
            or a ladder of one of ``names``.
    """
    names = [names] if isinstance(names, str) else list(names)
    k = len(fit.symbols)
    if len(names) != k:
        raise ValueError(f"names: {len(names)} names for {k} fitted symbols {list(fit.symbols)}")
    if len(set(names)) != k:
        raise ValueError(f"names: repeated in {names}")
    if not isinstance(base, dict):
        raise ValueError(f"base: need a config dict (got {type(base).__name__})")
    cfg = copy.deepcopy(base)
    base_assets = {a.get("name"): a for a in (cfg.get("assets") or []) if isinstance(a, dict)}
    ladders = cfg.get("ladders") or {}
    for name in names:
        if name not in base_assets:
            raise ValueError(f"names: {name!r} is not an asset of the base config (has {sorted(base_assets)}); "
                             "its depth_usd and spread are not estimated from prices")
        if name not in ladders:
            raise ValueError(f"names: the base config has no ladder for {name!r} (ladders.{name})")
    assets = []
    for i, name in enumerate(names):
        a = {"name": str(name), "price": float(fit.last_price[i]), "vol": float(fit.vol[i]), "drift": 0.0}
        for key in ASSET_KEYS_FROM_BASE:
            if key in base_assets[name]:
                a[key] = copy.deepcopy(base_assets[name][key])
        assets.append(a)
    if fit.stress == "drawdown":
        drawdown = float(fit.stress_drawdown)
        halflife = float(fit.stress_halflife_bars * fit.bar_seconds)
    else:
        drawdown, halflife = DEFAULT_REGIME_DRAWDOWN, DEFAULT_REGIME_HALFLIFE_SECONDS
    day = "%Y-%m-%d %H:%M"
    span = (f"{pd.Timestamp(fit.start, unit='s').strftime(day)} to "
            f"{pd.Timestamp(fit.end, unit='s').strftime(day)}")
    cfg.update(
        assets=assets,
        correlation=_floats(rounded_correlation(fit.calm_correlation)),
        innovations={"kind": "student_t", "nu": round(float(fit.nu), 2)},
        jumps={"intensity_per_year": _floats(fit.jump_intensity), "mean": _floats(fit.jump_mean),
               "std": _floats(fit.jump_std)},
        garch={"alpha": _floats(fit.garch_alpha), "beta": _floats(fit.garch_beta),
               "fitted_seconds": float(fit.bar_seconds)},
        regimes={"stress_correlation": _floats(rounded_correlation(fit.stress_correlation)), "switch": "shock",
                 "drawdown": drawdown, "reference_halflife_seconds": halflife,
                 "vol_multiplier": _floats(fit.stress_vol_multiplier)},
        ladders={name: copy.deepcopy(ladders[name]) for name in names},
        description=f"market fitted to {', '.join(fit.symbols)} from {span} (UTC) by perpjax fit",
    )
    return cfg

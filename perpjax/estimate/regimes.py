"""Regimes: calm / stress bar masks, the correlation within a regime (with the correction for bars
selected on the market return), and the projection to a valid correlation matrix.

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

Known limits:

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

import math

import numpy as np
from scipy import signal

CORRELATION_METHODS = ("selection", "pearson")


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


def _selection_covariance(zs, ms, present, pairs, target, s2, nu, max_iter):
    """``regime_correlation``'s ``R = Sigma_e + s2 b b'`` (before scaling to unit diagonal): ``zs``, ``ms``
    the selected bars' returns and market, ``present`` where ``zs`` is finite, ``pairs`` the (i, j, common
    bars) of ``zs``'s columns, ``target`` each column's variance over all bars, ``s2`` the starting value."""
    k = zs.shape[1]

    def weighted_cov(x, w):
        c = np.empty((k, k))
        for i, j, both in pairs:
            c[i, j] = c[j, i] = float(np.mean(w[both] * x[both, i] * x[both, j]))
        return c

    e = np.full_like(zs, np.nan)
    b = np.empty(k)
    for i in range(k):
        pi = present[:, i]
        X = np.column_stack([np.ones(int(pi.sum())), ms[pi]])
        coef = np.linalg.lstsq(X, zs[pi, i], rcond=None)[0]
        b[i] = coef[1]
        e[pi, i] = zs[pi, i] - X @ coef
    floor = 1e-12 * max(s2, 1e-300)
    for _ in range(max_iter):
        kt = np.ones(len(ms)) if nu is None else (nu - 2.0 + ms**2 / s2) / (nu - 1.0)
        Se = weighted_cov(e, 1.0 / kt)
        s2_new = max(float(np.sum(b**2 * (target - np.diag(Se))) / np.sum(b**4)), floor)
        done = abs(s2_new - s2) <= 1e-10 * s2
        s2 = s2_new
        if done or nu is None:
            break
    return Se + s2 * np.outer(b, b)


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
    if method == "pearson":
        S = np.empty((k, k))
        for i, j, both in pairs:  # each pair centred on its common bars
            xi, xj = zs[both, i], zs[both, j]
            S[i, j] = S[j, i] = float(np.mean((xi - xi.mean()) * (xj - xj.mean())))
    else:
        S = _selection_covariance(zs, ms, present, pairs, np.nanvar(z, axis=0), float(np.var(m[np.isfinite(m)])),
                                  nu, max_iter)
    d = np.sqrt(np.diag(S))
    return nearest_psd_correlation(S / np.outer(d, d))

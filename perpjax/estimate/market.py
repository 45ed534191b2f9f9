"""The market fit: every estimator of this package on a panel of closes, into one ``MarketFit``.

Per asset jumps (``jumps``), then:

* **vol**: annualised standard deviation of the non-jump returns,
  ``sqrt(var * 365*86400 / bar_seconds)``.

then GARCH on the jump-free returns (``garch``), one nu from the pooled standardized residuals
(``tails``), the jump rate net of the fitted GARCH-t's own flags, and the calm / stress split with its
correlations and vol multiplier (``regimes``). ``summary_table`` lays a fit out per symbol.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from ..errors import FewRegimeBars as FewRegimeBars
from .data import SECONDS_PER_YEAR, returns_frame
from .garch import fit_garch
from .jumps import fit_jumps, garch_t_jump_flag_rate
from .regimes import CORRELATION_METHODS, drawdown_stress_mask, regime_correlation, stress_mask
from .tails import fit_student_t_nu


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
    floored at 0. ``residuals`` (n, k) are the GARCH-standardized returns ``z_t = x_t / sqrt(h_t)``
    of every bar, jump bars included (``x = r - mean`` of the non-jump returns, ``h_t`` the fitted
    conditional variance), at ``residual_times`` (n,) (the later bar's timestamp of each return): the
    sample that filtered historical simulation bootstraps (``residuals.write_residuals``).
    ``stress_note`` says why the stress definition differs from the one asked for (empty if not).
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
    residuals: np.ndarray | None = None
    residual_times: np.ndarray | None = None
    residual_jumps: np.ndarray | None = None  # (n, k) bool: the bars the fit flagged as jumps (its GARCH fed them var)
    stress_note: str = ""

    def summary_table(self) -> pd.DataFrame:
        return summary_table(self)


STRESS_DEFINITIONS = ("drawdown", "quantile")
STRESS_FALLBACKS = (None, "quantile", "calm")
MIN_REGIME_BARS = 10


def fit_market(closes: pd.DataFrame, symbols: Sequence[str], *, start=None, end=None, bar_seconds: float = 3600.0,
               jump_threshold: float = 8.0, stress: str = "drawdown", stress_drawdown: float = 0.05,
               stress_halflife_bars: float = 6.0, stress_quantile: float = 0.1,
               correlation_method: str | None = None, net_jumps: bool = True,
               stress_fallback: str | None = None) -> MarketFit:
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
        stress_fallback: what to do when ``"drawdown"`` finds fewer than ``MIN_REGIME_BARS`` stress
            (or calm) bars, as in a calm window: None raises (the default); ``"quantile"`` warns
            and refits with ``stress="quantile"`` (the stress correlation of the worst
            ``stress_quantile`` market bars, vol multiplier 1); ``"calm"`` warns and keeps the drawdown
            state with the stress correlation = the calm one and vol multiplier 1 (a regime with no
            effect). ``stress_note`` records the fallback.

    Returns:
        MarketFit.

    Raises:
        ValueError: a bad argument, fewer than 100 returns, or fewer than 10 jump-free bars in
            either regime (lower ``stress_drawdown`` or use ``"quantile"``).
    """
    if isinstance(symbols, str):
        symbols = [symbols]
    if stress_fallback not in STRESS_FALLBACKS:
        raise ValueError(f"stress_fallback: must be one of {STRESS_FALLBACKS} (got {stress_fallback!r})")
    correlation_method = _correlation_method(stress, correlation_method)
    ret, used = returns_frame(closes, symbols, start, end, bar_seconds)
    r = ret.to_numpy()
    n, k = r.shape
    if n < 100:
        raise ValueError(f"window: {n} returns, need at least 100")
    annual = SECONDS_PER_YEAR / bar_seconds
    z, z_all, fields = _fit_assets(r, jump_threshold, bar_seconds, annual)
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
    note = ""
    try:
        sel, share, dd, hl, vm, raw = _stress_split(r, z, clean, stress, stress_drawdown, stress_halflife_bars,
                                                    stress_quantile)
    except FewRegimeBars as e:
        if stress != "drawdown" or stress_fallback is None:
            raise
        note = f"{e}; fell back to stress_fallback={stress_fallback!r}"
        warnings.warn(note, stacklevel=2)
        if stress_fallback == "quantile":
            stress, correlation_method = "quantile", _correlation_method("quantile", None)
            sel, share, dd, hl, vm, raw = _stress_split(r, z, clean, stress, stress_drawdown, stress_halflife_bars,
                                                        stress_quantile)
        else:  # "calm": the drawdown state kept, with no effect (stress matrix = calm, multiplier 1)
            dd_mask = drawdown_stress_mask(r, stress_drawdown, stress_halflife_bars)
            sel = np.zeros(len(zc), bool)
            share, dd, hl = float(dd_mask.mean()), float(stress_drawdown), float(stress_halflife_bars)
            vm, raw = np.ones(k), np.full(k, math.nan)
    market = zc.mean(axis=1)
    t_nu = nu if correlation_method == "selection" else None
    calm_c = regime_correlation(zc, ~sel, market, method=correlation_method, nu=t_nu)
    stress_c = regime_correlation(zc, sel, market, method=correlation_method, nu=t_nu) if sel.any() else calm_c
    return MarketFit(
        symbols=tuple(symbols), last_price=used.iloc[-1].to_numpy(np.float64), vol=fields["vol"],
        nu=nu, nu_se=nu_se, jump_intensity=intensity, jump_mean=fields["jm"], jump_std=fields["js"],
        garch_alpha=fields["a"], garch_beta=fields["b"], garch_alpha_se=fields["ase"], garch_beta_se=fields["bse"],
        calm_correlation=calm_c, stress_correlation=stress_c, n_returns=n,
        start=int(used.index[0]), end=int(used.index[-1]), bar_seconds=float(bar_seconds),
        stress=stress, stress_drawdown=dd, stress_halflife_bars=hl, stress_share=share, stress_vol_multiplier=vm,
        stress_raw_vol_ratio=raw, jump_flagged_intensity=flagged, jump_false_intensity=false,
        residuals=z_all, residual_times=ret.index.to_numpy(np.int64), residual_jumps=~np.isfinite(z),
        stress_note=note)


def _correlation_method(stress: str, correlation_method: str | None) -> str:
    """``fit_market``'s stress definition checked, and its correlation method (the definition's own if None)."""
    if stress not in STRESS_DEFINITIONS:
        raise ValueError(f"stress: must be one of {STRESS_DEFINITIONS} (got {stress!r})")
    if correlation_method is None:
        correlation_method = "pearson" if stress == "drawdown" else "selection"
    if correlation_method not in CORRELATION_METHODS:
        raise ValueError(f"correlation_method: must be one of {CORRELATION_METHODS} (got {correlation_method!r})")
    if stress == "drawdown" and correlation_method != "pearson":
        raise ValueError("correlation_method: the drawdown stress state is decided before the bar, so there is "
                         f"no selection to correct; use 'pearson' (got {correlation_method!r})")
    return correlation_method


def _fit_assets(r, jump_threshold: float, bar_seconds: float, annual: float):
    """Per asset (column of ``r``): jumps, vol, GARCH. Returns the GARCH-standardized returns ``z`` (NaN on
    each asset's jump bars), the same on every bar ``z_all`` (jump bars included), and a dict of (k,)
    arrays: ``vol``, flagged jump rate ``ji``, jump mean ``jm``
    and std ``js``, GARCH ``a``, ``b`` and their SEs ``ase``, ``bse``."""
    n, k = r.shape
    z = np.full((n, k), np.nan)
    z_all = np.empty((n, k))
    fields = {f: np.empty(k) for f in ("vol", "ji", "jm", "js", "a", "b", "ase", "bse")}
    for i in range(k):
        jf = fit_jumps(r[:, i], jump_threshold, bar_seconds=bar_seconds)
        keep = ~jf.mask
        x = r[:, i] - r[keep, i].mean()
        var = float(np.mean(x[keep] ** 2))
        g = fit_garch(r[:, i], var=var, exclude=jf.mask)
        z_all[:, i] = x / np.sqrt(g.conditional_var)
        z[keep, i] = z_all[keep, i]
        for f, v in zip(fields, (math.sqrt(var * annual), jf.intensity_per_year, jf.mean, jf.std,
                                 g.alpha, g.beta, g.alpha_se, g.beta_se), strict=True):
            fields[f][i] = v
    return z, z_all, fields


def _stress_split(r, z, clean, stress: str, stress_drawdown: float, stress_halflife_bars: float,
                  stress_quantile: float):
    """``fit_market``'s calm / stress split of the jump-free bars ``clean``: (stress mask over them, share of
    bars in stress, drawdown, half-life, vol multiplier, raw vol ratio), as ``MarketFit`` reports them."""
    k = r.shape[1]
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
        sel = stress_mask(z[clean], stress_quantile)
        share, dd, hl, vm, raw = float(sel.mean()), math.nan, math.nan, np.ones(k), np.full(k, math.nan)
    n_on, n_off = int(sel.sum()), int((~sel).sum())
    if min(n_on, n_off) < MIN_REGIME_BARS:
        raise FewRegimeBars(f"stress: {n_on} stress and {n_off} calm bars without a jump, need at least "
                         f"{MIN_REGIME_BARS} of each (stress={stress!r}, drawdown {stress_drawdown}, "
                         f"halflife {stress_halflife_bars} bars)")
    return sel, share, dd, hl, vm, raw

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
        stress_halflife_bars=fit.stress_halflife_bars, stress_share=fit.stress_share, stress_note=fit.stress_note,
        calm_mean_offdiag=float(fit.calm_correlation[iu].mean()) if k > 1 else math.nan,
        stress_mean_offdiag=float(fit.stress_correlation[iu].mean()) if k > 1 else math.nan)
    return df

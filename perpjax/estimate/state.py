"""The market state at a forecast origin: fitted GARCH variances and the stress regime filtered to the
origin, with nothing at or after it (``filter_state``), as the config's ``market_state`` section.

A forecast made at an origin ``T`` may use the bars before ``T`` only (DOMAIN 7b: "filter the model's
state to the origin; never let the window leak"). The window is the bars whose open time ``t``
satisfies ``T - lookback <= t`` and ``t + bar <= T`` (closed by ``T``; the last close is the one at
``T``, and ``T`` must lie on the bars' grid); their log returns ``r_t``
run through the fitted, variance-targeting GARCH(1,1) of each asset (Bollerslev 1986; Engle & Mezrich
1996 for variance targeting)::

    h_0 = var,    h_{t+1} = (1 - alpha - beta) var + alpha x_t^2 + beta h_t,    t = 0 .. n - 1

with ``x_t = r_t`` (the config's drift is 0), except that a bar the fit would call a jump
(``fit_jumps`` at ``jump_threshold`` on the window, as ``fit_market`` does on its window) enters as an
average shock, ``x_t^2 = var``: the fitted ``alpha`` measures how diffusion shocks raise variance, and
a 30 % jump would otherwise multiply the next bar's variance by ``1 + alpha * 0.09 / var``. The state
is ``variance_ratio = h_n / var``, the conditional variance of the first bar after the origin over the
long-run target (``var = vol^2 * bar_seconds / (365 * 86400)``, the fit's target variance). The start
``h_0 = var`` is forgotten geometrically: its weight in ``h_n`` is ``(alpha + beta)^n``
(``FilteredState.start_weight``: 0.98^2160 ~ 1e-19 for 90 days of hourly bars, but 0.995^2160 ~ 2e-5;
lengthen ``lookback_seconds`` for more persistent fits).

The regime at the origin is the simulator's own ``shock`` rule (``regimes.drawdown_stress_mask``: the
equal-weighted log level against its EWMA, on below ``-drawdown``, off above ``-drawdown / 2``) run
over the window: the state reached after the last bar, the regime the first simulated bar is drawn in.

Known limits: the window's first bars carry the start value (see above); a gap (missing bar) inside
the window is an error rather than bridged, since a return over two bars would enter the filter as one.
Jumps are flagged against the window's own robust scale (as the fit flags against its window's), so
after a sharp rise in volatility the first large moves may be called jumps and not raise ``h``; the
count is reported (``jump_bars``) and ``jump_threshold=None`` feeds every bar. The regime is decided
on the data's bars, the simulator decides it per step on the same half-life in seconds.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import pandas as pd

from ..timeutil import format_time, parse_time
from .data import SECONDS_PER_YEAR
from .jumps import fit_jumps
from .regimes import drawdown_stress_mask

DEFAULT_LOOKBACK_SECONDS = 90 * 86400
MIN_STATE_BARS = 100


class FilteredState(NamedTuple):
    """The state at ``origin`` (unix seconds): per asset (config order) ``variance_ratio`` ``h_{T+1} / var``,
    ``last_price`` (the close at the origin), ``jump_bars`` (bars entered as an average shock), and the
    regime ``stress``; ``n_bars`` returns filtered from ``window_start`` (unix seconds), whose start value
    keeps the weight ``start_weight`` = ``(alpha + beta)^n`` (largest over assets)."""

    origin: int
    variance_ratio: np.ndarray
    stress: bool
    last_price: np.ndarray
    n_bars: int
    window_start: int
    jump_bars: np.ndarray
    start_weight: float


def garch_filter(r, alpha: float, beta: float, var: float, *, exclude=None) -> np.ndarray:
    """Variance-targeting GARCH(1,1) conditional variances of one return series, one step past its end.

    ``h_0 = var``, ``h_{t+1} = (1 - alpha - beta) var + alpha x_t^2 + beta h_t`` with ``x_t^2 = r_t^2``,
    or ``var`` on ``exclude``-d bars (jumps, as in ``fit_garch``).

    Args:
        r: (n,) returns at the bar the parameters were fitted at (zero mean assumed).
        alpha, beta: GARCH coefficients at that bar; ``alpha, beta >= 0``, ``alpha + beta < 1``.
        var: the long-run (target) variance per bar, > 0.
        exclude: optional (n,) bool, bars entered as the average shock.

    Returns:
        (n + 1,) float64: ``h_0 .. h_n``; ``h_t`` is the variance of ``r_t`` given the bars before it and
        ``h_n`` the variance of the first bar after the series.
    """
    r = np.asarray(r, np.float64)
    if r.ndim != 1 or not np.all(np.isfinite(r)):
        raise ValueError(f"r: need a finite 1-d series (got shape {r.shape})")
    if not (alpha >= 0 and beta >= 0 and alpha + beta < 1):
        raise ValueError(f"alpha, beta: need alpha, beta >= 0 and alpha + beta < 1 (got {alpha}, {beta})")
    if not var > 0:
        raise ValueError(f"var: must be > 0 (got {var})")
    x2 = r * r
    if exclude is not None:
        exclude = np.asarray(exclude, bool)
        if exclude.shape != r.shape:
            raise ValueError(f"exclude: shape {exclude.shape} does not match r {r.shape}")
        x2 = np.where(exclude, var, x2)
    omega = (1.0 - alpha - beta) * var
    h = np.empty(len(r) + 1)
    h[0] = var
    for t in range(len(r)):  # short windows: a plain loop is exact and clear
        h[t + 1] = omega + alpha * x2[t] + beta * h[t]
    return h


def window_closes(closes: pd.DataFrame, symbols, origin, *, lookback_seconds: float = DEFAULT_LOOKBACK_SECONDS,
                  bar_seconds: float = 3600.0, min_bars: int = MIN_STATE_BARS) -> pd.DataFrame:
    """The closes of ``symbols`` on the bars ``origin - lookback_seconds <= t``, ``t + bar_seconds <= origin``
    (every bar closed by the origin), checked complete.

    Raises:
        ValueError: a symbol is absent; an origin off the bars' grid; data that end before the origin;
            fewer than ``min_bars + 1`` bars; a missing bar (of any symbol) inside the window (the
            message names the first missing time and the symbol).
    """
    symbols = list(symbols)
    absent = [s for s in symbols if s not in closes.columns]
    if absent:
        raise ValueError(f"symbols: {absent} not in the price data (have {list(closes.columns)})")
    origin, bar = int(origin), float(bar_seconds)
    idx = closes.index.to_numpy(np.int64)
    have = idx[closes[symbols].notna().any(axis=1).to_numpy()]
    if len(have) and (origin - int(have[0])) % bar:
        raise ValueError(f"origin: {format_time(origin)} is not on a bar boundary ({bar:g} s bars from "
                         f"{format_time(have[0])}): the bar around it would close after it")
    if len(have) and int(have[-1]) + bar < origin:
        raise ValueError(f"origin: the data of {symbols} end at {format_time(int(have[-1]) + bar)}, before the "
                         f"origin {format_time(origin)} (no bar ends at the origin)")
    sub = closes.loc[(idx >= origin - lookback_seconds) & (idx + bar <= origin), symbols]
    sub = sub.dropna(how="all")
    if len(sub) < min_bars + 1:
        raise ValueError(f"window: {len(sub)} bars of {symbols} in [{format_time(origin - lookback_seconds)}, "
                         f"{format_time(origin)}), need at least {min_bars + 1} (too few bars before the origin)")
    ts = sub.index.to_numpy(np.int64)
    if ts[-1] + bar < origin:
        raise ValueError(f"window: the data of {symbols} end at {format_time(ts[-1] + bar)}, before the origin "
                         f"{format_time(origin)} (no bar ends at the origin)")
    want = np.arange(ts[0], origin, bar, dtype=np.float64).astype(np.int64)
    missing = np.setdiff1d(want, ts)
    if len(missing):
        raise ValueError(f"window: {len(missing)} missing bar(s) between {format_time(ts[0])} and "
                         f"{format_time(origin)}, first at {format_time(missing[0])} (gaps in the data inside the "
                         "window are not filled)")
    holes = sub.isna()
    if holes.to_numpy().any():
        t, s = holes.stack()[lambda x: x].index[0]
        raise ValueError(f"window: {s} has no bar at {format_time(t)} (gaps in the data inside the window are "
                         "not filled)")
    vals = sub.to_numpy(np.float64)
    if not np.all(np.isfinite(vals) & (vals > 0)):
        raise ValueError("closes: prices must be finite and > 0")
    return sub


def filter_state(closes: pd.DataFrame, symbols, origin, *, alpha, beta, var, stress_drawdown: float | None = None,
                 stress_halflife_bars: float = 6.0, bar_seconds: float = 3600.0,
                 lookback_seconds: float = DEFAULT_LOOKBACK_SECONDS, jump_threshold: float | None = 8.0,
                 min_bars: int = MIN_STATE_BARS) -> FilteredState:
    """The fitted GARCH variances and the stress regime filtered to ``origin`` (module docstring).

    Args:
        closes: wide close prices (``read_prices``); bars at or after ``origin`` are never read.
        symbols: columns of ``closes``, in the config's asset order.
        origin: forecast origin (unix seconds or a date, naive = UTC), the end of the window, exclusive.
        alpha, beta, var: (k,) fitted GARCH coefficients and target variance per bar of each asset.
        stress_drawdown: the ``shock`` switch's ``drawdown``; None = no regime (``stress`` False).
        stress_halflife_bars: its EWMA half-life in bars (``reference_halflife_seconds / bar_seconds``).
        bar_seconds: the bar of ``closes`` and of the fitted parameters.
        lookback_seconds: length of the filtered window.
        jump_threshold: bars ``fit_jumps`` flags at this threshold enter as an average shock (as in the
            fit; ``fit_market``'s default 8); None treats every bar as a diffusion shock.
        min_bars: fewest returns accepted in the window.

    Returns:
        FilteredState.
    """
    origin = parse_time(origin, "origin")
    symbols = [symbols] if isinstance(symbols, str) else list(symbols)
    k = len(symbols)
    alpha, beta, var = (np.broadcast_to(np.asarray(v, np.float64), (k,)) for v in (alpha, beta, var))
    sub = window_closes(closes, symbols, origin, lookback_seconds=lookback_seconds, bar_seconds=bar_seconds,
                        min_bars=min_bars)
    r = np.diff(np.log(sub.to_numpy(np.float64)), axis=0)
    ratio, jumps = np.empty(k), np.zeros(k, np.int64)
    for i in range(k):
        mask = None if jump_threshold is None else fit_jumps(r[:, i], jump_threshold, bar_seconds=bar_seconds).mask
        h = garch_filter(r[:, i], float(alpha[i]), float(beta[i]), float(var[i]), exclude=mask)
        ratio[i] = h[-1] / var[i]
        jumps[i] = 0 if mask is None else int(mask.sum())
    stress = False
    if stress_drawdown is not None:
        # the state reached after the last bar is the regime of the next one: append a dummy bar and read it
        padded = np.vstack([r, np.zeros((1, k))])
        stress = bool(drawdown_stress_mask(padded, stress_drawdown, stress_halflife_bars)[-1])
    start_weight = float(np.max((alpha + beta) ** len(r)))
    return FilteredState(origin, ratio, stress, sub.iloc[-1].to_numpy(np.float64), len(r), int(sub.index[0]),
                         jumps, start_weight)


def market_state(state: FilteredState, ndigits: int = 6) -> dict:
    """The config's ``market_state`` section: ``time`` (ISO 8601 UTC), ``variance_ratio`` (rounded to
    ``ndigits`` significant digits; plain floats) and ``stress``."""
    ratio = [float(f"{v:.{ndigits}g}") for v in np.asarray(state.variance_ratio, np.float64)]
    return {"time": format_time(state.origin), "variance_ratio": ratio, "stress": bool(state.stress)}


def garch_from_config(cfg: dict) -> dict:
    """The filter's inputs from a config dict: ``names``, per-asset ``alpha``, ``beta``, ``var`` (the
    target variance per fitted bar, ``vol^2 * fitted_seconds / (365 * 86400)``), ``bar_seconds``
    (``garch.fitted_seconds``), and the ``shock`` regime's ``stress_drawdown`` (None without one) and
    ``stress_halflife_bars``.

    Raises:
        ValueError: no ``garch`` section, or per-asset lists of the wrong length (naming the field).
    """
    assets = cfg.get("assets") or []
    names = [str(a.get("name")) for a in assets]
    k = len(names)
    g = cfg.get("garch")
    if not isinstance(g, dict) or "alpha" not in g or "beta" not in g:
        raise ValueError("garch: the config has no fitted garch section (alpha, beta): nothing to filter; "
                         "write one with `perpjax fit`")
    bar = float(g.get("fitted_seconds", 3600.0))
    out = {"names": names, "bar_seconds": bar}
    for key in ("alpha", "beta"):
        v = np.asarray(g[key], np.float64)
        v = np.broadcast_to(v, (k,)) if v.ndim == 0 else v
        if v.shape != (k,):
            raise ValueError(f"garch.{key}: {v.size} values for {k} assets {names}")
        out[key] = np.array(v)
    vol = np.array([float(a["vol"]) for a in assets])
    out["var"] = vol**2 * bar / SECONDS_PER_YEAR
    if not np.all(out["var"] > 0):
        raise ValueError(f"assets.vol: must be > 0 to filter a variance ratio (got {list(vol)})")
    rg = cfg.get("regimes")
    shock = isinstance(rg, dict) and rg.get("switch", "shock") == "shock"
    out["stress_drawdown"] = float(rg.get("drawdown", 0.05)) if shock else None
    hl = float(rg.get("reference_halflife_seconds", 21600.0)) if shock else 21600.0
    out["stress_halflife_bars"] = hl / bar if hl > 0 else math.inf
    return out


def filter_config_state(cfg: dict, closes: pd.DataFrame, symbols, origin, **kwargs) -> FilteredState:
    """``filter_state`` with the fitted parameters of config ``cfg`` (``garch_from_config``): what
    ``perpjax filter`` and the backtest's daily state update run. ``kwargs`` go to ``filter_state``
    (``lookback_seconds``, ``jump_threshold``, ``min_bars``)."""
    g = garch_from_config(cfg)
    return filter_state(closes, symbols, origin, alpha=g["alpha"], beta=g["beta"], var=g["var"],
                        stress_drawdown=g["stress_drawdown"], stress_halflife_bars=g["stress_halflife_bars"],
                        bar_seconds=g["bar_seconds"], **kwargs)

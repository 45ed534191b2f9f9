"""The cascade and stress sections (``cascade``, ``regimes``, ``garch``, ``events``) -> their Modules."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from .. import replay, timeutil
from ..cascade import IMPACT_LAWS, CascadeMonitor, Impact
from ..dynamics import Garch, Regimes, ref_alpha_from_halflife
from ..errors import ConfigError
from ..innovations import variance_persistence, winsorised_moments
from ..paths import correlation_factor
from ..scenario import Schedule
from .convert import num_list, steps_of, wrapped


def asset_mask(v, names, path) -> np.ndarray:
    """'all', one asset name or a list of names -> (assets,) bool."""
    if v == "all":
        return np.ones(len(names), bool)
    sel = [v] if isinstance(v, str) else v
    if not isinstance(sel, list) or not sel:
        raise ConfigError(f"{path}: must be 'all', an asset name or a list of asset names (got {v!r})")
    for x in sel:
        if x not in names:
            raise ConfigError(f"{path}: unknown asset {x!r} (assets: {', '.join(names)})")
    return np.isin(np.asarray(names), sel)


def window_rows(grid, e, path) -> slice:
    """Rows (steps) of the schedule covered by an event window [start, start + duration)."""
    start, dur = float(e["start_seconds"]), float(e["duration_seconds"])
    if start < 0:
        raise ConfigError(f"{path}.start_seconds: must be >= 0 (got {start})")
    if start + dur > grid.horizon_seconds + 1e-9:
        raise ConfigError(f"{path}: the window ends at {start + dur:g} s, after the horizon "
                          f"({grid.horizon_seconds:g} s)")
    a = 0 if start == 0 else steps_of(grid, start, f"{path}.start_seconds")
    return slice(a, a + steps_of(grid, dur, f"{path}.duration_seconds"))


def build_stress(c: dict, grid, prices, names, arr) -> dict:
    """The cascade and stress pieces of a RiskModel (``impact``, ``cascade``, ``regimes``, ``garch``,
    ``schedule``) from a resolved config; each None when its section is absent."""

    n, steps = len(names), grid.n_steps
    out = {"impact": None, "cascade": None, "regimes": None, "garch": None, "schedule": None}
    cs = c["cascade"]
    if cs is not None:
        out["cascade"] = CascadeMonitor(steps_of(grid, cs["window_seconds"], "cascade.window_seconds"))
        law = cs["impact"]
        if law not in (*IMPACT_LAWS, "none"):
            raise ConfigError(f"cascade.impact: must be one of none, {', '.join(IMPACT_LAWS)} (got {law!r})")
        if law == "power" and cs["impact_exponent"] is None:
            raise ConfigError("cascade.impact_exponent: required with impact 'power'")
        if law != "power" and cs["impact_exponent"] is not None:
            raise ConfigError(f"cascade.impact_exponent: only with impact 'power' ({law} fixes it)")
        if law != "none" and cs["permanent_fraction"] > 0:
            e = IMPACT_LAWS[law] if law != "power" else float(cs["impact_exponent"])
            out["impact"] = wrapped("cascade", Impact, arr(cs["permanent_fraction"]),
                                    float(c["liquidation"]["depth_distance"]), law, e)
    ms = c["market_state"] or {}
    rg = c["regimes"]
    if ms.get("stress") and rg is None:
        raise ConfigError("market_state.stress: needs a regimes section (the stress regime to start in)")
    if ms.get("variance_ratio") is not None and c["garch"] is None:
        raise ConfigError("market_state.variance_ratio: needs a garch section (the variance it is the ratio of)")
    if rg is not None:
        sc = num_list(rg["stress_correlation"], "regimes.stress_correlation")
        if sc.shape != (n, n):
            raise ConfigError(f"regimes.stress_correlation: must be {n}x{n} for {n} assets (got shape {sc.shape})")
        try:
            L = correlation_factor(sc)
        except ValueError as e:
            raise ConfigError(f"regimes.stress_{e}") from None  # "correlation: ..." -> regimes.stress_correlation
        days = grid.step_seconds / 86400.0
        if rg["switch"] == "shock" and rg["reference_halflife_seconds"] <= 0:
            raise ConfigError("regimes.reference_halflife_seconds: must be > 0")
        out["regimes"] = wrapped(
            "regimes", Regimes, arr(L), arr(num_list(rg["vol_multiplier"], "regimes.vol_multiplier", n)),
            arr(num_list(rg["depth_factor"], "regimes.depth_factor", n)),
            arr(-np.expm1(-rg["enter_rate_per_day"] * days)), arr(-np.expm1(-rg["exit_rate_per_day"] * days)),
            arr(rg["drawdown"]), arr(ref_alpha_from_halflife(max(rg["reference_halflife_seconds"], 1e-9)
                                                             / grid.step_seconds)), rg["switch"],
            jnp.asarray(bool(ms.get("stress", False))))
    g = c["garch"]
    if g is not None:
        out["garch"] = build_garch(g, ms, grid, prices, n, arr)
    ev = c["events"]
    if ev is not None:
        shift = depth = frozen = forced = None
        for i, e in enumerate(ev["shocks"]):
            p = f"events.shocks[{i}]"
            rows = window_rows(grid, e, p)
            shift = np.zeros((steps, n)) if shift is None else shift
            shift[rows] += asset_mask(e["assets"], names, f"{p}.assets") * (
                np.log1p(e["return"]) / (rows.stop - rows.start))
        for i, e in enumerate(ev["depth_bursts"]):
            p = f"events.depth_bursts[{i}]"
            depth = np.ones((steps, n)) if depth is None else depth
            depth[window_rows(grid, e, p)] *= np.where(asset_mask(e["assets"], names, f"{p}.assets"), e["factor"], 1)
        for i, e in enumerate(ev["oracle_freezes"]):
            frozen = np.zeros(steps, bool) if frozen is None else frozen
            frozen[window_rows(grid, e, f"events.oracle_freezes[{i}]")] = True
        for i, e in enumerate(ev["stress_windows"]):
            if rg is None:
                raise ConfigError(f"events.stress_windows[{i}]: needs a regimes section (the stress correlation)")
            forced = np.zeros(steps, bool) if forced is None else forced
            forced[window_rows(grid, e, f"events.stress_windows[{i}]")] = True
        replace = False
        if ev["replay"] is not None:
            if shift is not None:
                raise ConfigError("events.replay: replaces the price path; shocks do not apply with it")
            shift, replace = replay_returns(ev["replay"], grid, names), True
        sched = Schedule(None if shift is None else arr(shift), None if depth is None else arr(depth),
                         None if frozen is None else jnp.asarray(frozen),
                         None if forced is None else jnp.asarray(forced), replace)
        out["schedule"] = None if sched.empty else sched
    return out


def build_garch(g: dict, ms: dict, grid, prices, n: int, arr) -> Garch:
    """The ``garch`` section (with ``market_state.variance_ratio``) -> ``Garch``.

    (alpha, beta) hold at ``fitted_seconds``; they are mapped to the unit the GARCH updates at: the
    step, or the bar with ``innovations.bar_seconds`` (``Garch.per_step``; the identity when the bar is
    the fitted one). Stationarity ``alpha + beta < 1`` (and alpha, beta >= 0) is required.
    ``winsorize`` c: the update sees ``min(eps^2, c) / E[min(eps^2, c)]`` (``Garch.update_unit``)."""
    unit = grid.step_seconds * prices.bar_steps
    alpha, beta = num_list(g["alpha"], "garch.alpha", n), num_list(g["beta"], "garch.beta", n)
    try:
        if abs(g["fitted_seconds"] - unit) <= 1e-9 * unit and prices.bar_steps > 1:
            Garch.per_step(alpha, beta, 1.0)  # the checks only: the bar is the fitted one
            a, b = alpha, beta
        else:
            a, b = Garch.per_step(alpha, beta, g["fitted_seconds"] / unit)
    except ValueError as e:
        raise ConfigError(f"garch.{e}") from None
    if np.any(b < 0):
        raise ConfigError("garch.alpha: too large for the step (per-step beta would be negative)")
    vr = ms.get("variance_ratio")
    v2_0 = np.ones(n) if vr is None else num_list(vr, "market_state.variance_ratio", n)
    if not np.all(v2_0 > 0):
        raise ConfigError(f"market_state.variance_ratio: must be > 0 per asset (got {v2_0.tolist()})")
    cap = cap_mean = None
    if g["winsorize"] is not None:
        cap = float(g["winsorize"])
        m1, m2 = winsorised_mean(prices, cap)
        k2 = variance_persistence(a, b, m1, m2)
        if np.any(k2 >= 1):
            hi = max_cap(prices, a, b, cap)
            raise ConfigError(f"garch.winsorize: with cap {cap:g} the variance ratio has no finite variance "
                              f"(a^2 E[w^2]/E[w]^2 + 2ab + b^2 = {float(np.max(k2)):.4g} >= 1); "
                              f"use a cap below {hi:.3g}")
        cap_mean, cap = arr(m1), arr(cap)
    return wrapped("garch", Garch, arr(a), arr(b), arr(v2_0), cap, cap_mean)


def winsorised_mean(prices, cap: float) -> tuple:
    """(E[w], E[w^2]) per asset of ``w = min(eps^2, cap)`` under the model's unit innovation law."""
    sample = None
    if prices.residuals is not None:  # w = min(z^2, cap) of the rows, or of their GARCH feed when there is one
        sample = np.asarray(prices.residuals if prices.residual_feed is None else np.sqrt(prices.residual_feed))
    return winsorised_moments(prices.innovations, prices.nu, cap, sample)


def max_cap(prices, a, b, cap: float) -> float:
    """The largest cap (bisection in log, below ``cap``) with a finite-variance variance ratio."""
    lo, hi = 1.0, cap
    for _ in range(40):
        mid = math.sqrt(lo * hi)
        ok = np.all(variance_persistence(a, b, *winsorised_mean(prices, mid)) < 1)
        lo, hi = (mid, hi) if ok else (lo, mid)
    return lo


def whole_seconds(x: float, path: str) -> int:
    if not float(x).is_integer():
        raise ConfigError(f"{path}: a replay needs a whole number of seconds (got {x})")
    return int(x)


def replay_returns(rp: dict, grid, names) -> np.ndarray:
    """(steps, assets) log returns of the real path (see ``replay``), rebased to the config's prices."""

    syms = rp["symbols"]
    missing = [a for a in names if a not in syms]
    if missing:
        raise ConfigError(f"events.replay.symbols: no symbol for asset {missing[0]} (give one per asset)")
    extra = sorted(set(syms) - set(names))
    if extra:
        raise ConfigError(f"events.replay.symbols.{extra[0]}: not an asset (assets: {', '.join(names)})")
    path = rp["csv"] if rp["csv"] is not None else replay.default_data_path()
    try:
        logp = replay.replay_log_prices(path, [str(syms[a]) for a in names], timeutil.parse_time(rp["start"], "start"),
                                        whole_seconds(grid.horizon_seconds, "time.horizon_seconds"),
                                        whole_seconds(grid.step_seconds, "time.step_seconds"), seed=rp["seed"],
                                        bar_seconds=whole_seconds(rp["bar_seconds"], "events.replay.bar_seconds"))
    except ValueError as e:
        raise ConfigError(f"events.replay: {e}") from None
    return np.diff(logp, axis=0)


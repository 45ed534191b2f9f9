"""The smallest pro-rata cut that restores a unit's health: the root search behind the ``buffer`` liquidation
mode and the fairness measure (``liquidation.Liquidation.min_fraction`` states the health function).

Given ``margin(f)``, (units,) fractions -> (units,) healths after closing the fraction f of every position of
each unit, concave in f, ``min_cut`` returns per unit the smallest f in [0, 1] with ``margin(f) >= 0``:
``healthy_cut`` finds a healthy point to bracket from, a bisection brackets the root to 2^-steps, then
``exact_cut`` takes Newton's method to the dtype's precision and rounds up. ``drift.min_close_fraction`` is
the reference (Drift's closed form in general, with while loops); the two agree to 1e-14 in float64 (tested).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

NUDGES = 8  # candidate floats above the Newton iterate: +0, 1, 2, 4, ... 64 ulps
HEALTH_GRID = 32  # cut fractions tried per pass of ``healthy_cut`` (two passes: 1/32, then 1/512 wide)


def min_cut(margin, n_units: int, dtype, *, bisection_steps: int, newton_steps: int, implicit_grad: bool):
    """Per unit, the smallest cut fraction f in [0, 1] with ``margin(f) >= 0`` (1 where none is), (units,).

    Bracketed by ``bisection_steps`` bisections below ``healthy_cut``'s point, then ``newton_steps`` Newton
    steps and the rounding up of ``exact_cut`` (``newton_steps = 0`` keeps the bracket's healthy end). The
    value carries no gradient; with ``implicit_grad`` it gets the exact root's, by the implicit function
    theorem ``df/dp = -(dg/dp) / (dg/df)`` with ``g = margin`` (slope from ``exact_cut``, or the final
    bracket's secant), where the root lies inside (0, 1)."""
    p = healthy_cut(margin, n_units, dtype)
    lo, hi = jnp.zeros((n_units,), dtype), jnp.ones((n_units,), dtype)
    for _ in range(bisection_steps):
        midf = 0.5 * (lo + hi)
        # beyond the healthy cut p the smallest root lies to the left; below it health crosses zero once
        ok = (midf > p) | (margin(jax.lax.stop_gradient(midf)) >= 0)
        hi, lo = jnp.where(ok, midf, hi), jnp.where(ok, lo, midf)
    hi, lo = jax.lax.stop_gradient(hi), jax.lax.stop_gradient(lo)
    cut, slope = exact_cut(margin, lo, hi, newton_steps) if newton_steps else (hi, None)
    if not implicit_grad:
        return cut
    g = margin(cut)
    if slope is None:  # the bracket's secant
        slope = jax.lax.stop_gradient((g - margin(lo)) / (hi - lo))
    inside = (lo > 0) & (hi < 1) & (slope > 0)  # a root inside (0, 1): else the cut is pinned at a bound
    step = (g - jax.lax.stop_gradient(g)) / jnp.where(inside, slope, 1.0)
    return cut - jnp.where(inside, step, 0.0)


def exact_cut(margin, lo, hi, steps: int):
    """The smallest root of the concave ``margin`` in the bracket ``[lo, hi]`` (``margin(lo) < 0 <=
    margin(hi)`` where a root lies inside), to the dtype's precision, rounded up; and ``margin``'s slope there.

    Newton's method from ``lo`` with the slope by ``jax.jvp``: on a concave function rising through its
    root the tangent lies above it, so each iterate stays at or below the root and the error squares each
    step (``drift.min_close_fraction``, whose while loop this unrolls a fixed ``steps`` times from the
    bisection's bracket). The iterate is then rounded up: the first of ``f + 0, 1, 2, 4, .. ulps`` whose
    computed health is >= 0 (one vmapped evaluation), else ``hi`` (healthy, or 1 where nothing is). A unit
    already healthy at f = 0 (a delayed or bridge-crossing trigger that recovered) gets 0: a liquidation
    event of no notional (the bisection alone gave 2^-14)."""
    one = jnp.ones_like(lo)
    f = lo
    for _ in range(steps):
        h, d = jax.lax.stop_gradient(jax.jvp(margin, (f,), (one,)))
        step = jnp.where((h < 0) & (d > 0), -h / jnp.where(d > 0, d, 1.0), 0.0)
        f = jnp.clip(f + step, lo, hi)
    ulp = jnp.nextafter(f, 2.0 * one) - f
    k = jnp.concatenate([jnp.zeros((1,), f.dtype), 2.0 ** jnp.arange(NUDGES - 1, dtype=f.dtype)])
    cand = jnp.minimum(f[None, :] + k[:, None] * ulp[None, :], hi[None, :])
    ok = jax.lax.stop_gradient(jax.vmap(margin)(cand)) >= 0
    first = jnp.argmax(ok, axis=0)
    cut = jnp.where(jnp.any(ok, axis=0), jnp.take_along_axis(cand, first[None, :], axis=0)[0], hi)
    _, slope = jax.lax.stop_gradient(jax.jvp(margin, (cut,), (one,)))
    return jax.lax.stop_gradient(cut), slope


def healthy_cut(margin, n_units: int, dtype):
    """Per unit, a cut fraction p in (0, 1] whose health ``margin(p) >= 0`` (1 when none is found).

    Health after a pro-rata cut f is concave in f (the fill's slippage is convex in size, MM(rest) is
    convex in the rest): where health is negative at the full close (f = 1), the healthy set is an
    interval [f1, f2] inside (0, 1) that a bisection on [0, 1] can step over. A grid of 32 cuts, then
    32 more around the best of them (where the concave maximum lies), finds a point of it when it is
    wider than ~1/512; the bisection then keeps to [0, p], where health crosses zero once. When the
    full close is healthy p = 1 and the bisection is the plain one on [0, 1]."""
    k = HEALTH_GRID
    steps = jnp.arange(1, k + 1, dtype=dtype) / k
    f1 = jnp.broadcast_to(steps[:, None], (k, n_units))
    h1 = jax.vmap(margin)(f1)
    centre = steps[jnp.argmax(h1, axis=0)]
    lo2, hi2 = jnp.clip(centre - 1.0 / k, 0.0, 1.0), jnp.clip(centre + 1.0 / k, 0.0, 1.0)
    f2 = lo2[None, :] + (hi2 - lo2)[None, :] * steps[:, None]
    h2 = jax.vmap(margin)(f2)
    f, h = jnp.concatenate([f1, f2]), jnp.concatenate([h1, h2])
    best = jnp.argmax(h, axis=0)
    p = jnp.take_along_axis(f, best[None, :], axis=0)[0]
    hp = jnp.take_along_axis(h, best[None, :], axis=0)[0]
    full_ok = h1[-1] >= 0
    return jax.lax.stop_gradient(jnp.where(full_ok | (hp < 0), 1.0, p).astype(dtype))

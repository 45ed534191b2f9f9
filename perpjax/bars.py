"""Innovations at the fitted bar, bridged inside it (config ``innovations.bar_seconds``).

A distribution fitted at one bar length does not survive being applied per step at another (Student-t
sums thin towards Gaussian; a GARCH mapped to the step by temporal aggregation is only first-order
exact). With ``PriceModel.bar_steps`` = m > 1 the innovation is drawn once per bar (keyed by the bar
index, ``engine.model.draw``) at the law it was fitted at, and the m steps inside the bar follow a
Brownian bridge to the bar's return: the bar's and every longer horizon's distribution do not depend
on the step. The GARCH updates once per bar, with (alpha, beta) at the bar.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .dynamics import step_scale


class BarState(NamedTuple):
    """What a path carries inside a bar (``PriceModel.bar_steps`` > 1), each (assets,)."""

    target: jax.Array  # the bar's log return without jumps and schedule (drift + vol x innovation)
    done: jax.Array  # log return accumulated by the bridge since the bar start
    var: jax.Array  # the bar's diffusion variance (vol x scale)^2 x bar length
    v2_end: jax.Array  # the GARCH variance ratio after the bar (1 without GARCH)


def bar_init(like) -> BarState:
    z = jnp.zeros_like(like)
    return BarState(z, z, z, jnp.ones_like(like))


def bar_step(prices, d: dict, v2, stress, t, dt, bar: BarState, *, regimes=None, garch=None):
    """One step inside a bar of ``m = bar_steps`` steps: (log return, next v2, next ``BarState``).

    At the bar's first step (j = 0) the bar's unit innovation ``eps`` (drawn at the bar index) sets the
    bar's return ``R = (mu - s^2 vol^2/2 - lambda kappa) m dt + vol s sqrt(m dt) eps`` and variance
    ``V = (vol s)^2 m dt``, with ``s`` the scale at the bar start (sqrt(v2) x stress multiplier). Sub-step j
    with ``S_j`` the return accumulated since the bar start is the Brownian bridge to R:

        increment = (R - S_j) / (m - j) + sqrt(V / m (m - j - 1) / (m - j)) (L n)_j,

    ``n`` the step's normals, ``L`` the step's correlation factor; the bar's total is R whatever the
    step. Jumps stay per step, on top. GARCH updates once per bar, at its last step, with the bar's
    squared standardised innovation (``Garch.update_unit``; (alpha, beta) at the bar)."""
    m = prices.bar_steps
    j = (t - 1) % m
    factor, scale = step_scale(prices.factor, stress, regimes, garch, v2)
    step = prices.draw_from(d)
    bar_draw = prices.bar_draw_from(d)
    eps = prices.innovation_from(bar_draw, factor)
    dt_bar = dt * m
    vol = prices.vol if scale is None else prices.vol * scale
    start = j == 0
    target = jnp.where(start, prices.log_drift(dt_bar, scale) + vol * math.sqrt(dt_bar) * eps, bar.target)
    var = jnp.where(start, vol * vol * dt_bar, bar.var)
    done = jnp.where(start, 0.0, bar.done)
    v2_end = bar.v2_end if garch is None else jnp.where(start, garch.update_unit(v2, eps, bar_draw.sq), bar.v2_end)
    noise = jnp.sum((prices.factor if factor is None or prices.innovations == "historical" else factor)
                    * step.z[None, :], axis=-1)
    k = (m - j).astype(target.dtype)
    inc = (target - done) / k + jnp.sqrt(var / m * (k - 1.0) / k) * noise
    v2_next = v2 if garch is None else jnp.where(j == m - 1, v2_end, v2)
    return inc + step.jump, v2_next, BarState(target, done + inc, var, v2_end)
